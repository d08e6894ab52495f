"""report.html in a real browser: headless Chromium (Debian's chromium and chromium-driver,
driven by Selenium) opens the page, finds no horizontal overflow at 1,400 pixels and no console
error, and sorts a table by a click on a column's header. .ci/run installs the browser; without
one the test is skipped with the reason."""

import io
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from bench.report.report import build_report

FIXTURES = Path(__file__).parent / "fixtures" / "report" / "results"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no headless browser: apt-get install chromium chromium-driver (as .ci/run does)",
)


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # As root in a sandbox with no network: no sandboxing, no GPU, no background connections.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def _report(tmp_path: Path) -> Path:
    runs = [
        FIXTURES / "compile_vs_eager" / "20261128-101502",
        FIXTURES / "gpt_batch" / "20261128-120000",
    ]
    return build_report(runs, tmp_path / "report", Console(file=io.StringIO())).html


def test_the_page_fits_1400_pixels_has_no_console_error_and_sorts_a_column(tmp_path, browser):
    from selenium.webdriver.common.by import By

    page = _report(tmp_path)
    browser.get(page.as_uri())
    assert browser.title == "Benchmark report"
    width = browser.execute_script("return document.documentElement.scrollWidth")
    viewport = browser.execute_script("return document.documentElement.clientWidth")
    assert width <= viewport <= 1400, f"the page is {width} px wide in a {viewport} px window"
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    screenshot = tmp_path / "report.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # gpt_batch's table: a row per batch size; sort by samples/s, then the other way round.
    table = next(
        t
        for t in browser.find_elements(By.CSS_SELECTOR, "table.sortable")
        if "samples/s" in t.find_element(By.TAG_NAME, "thead").text
        and "batch_size" in t.find_element(By.TAG_NAME, "thead").text
    )
    headers = [th.text for th in table.find_elements(By.TAG_NAME, "th")]
    column = headers.index("samples/s")

    def rates() -> list[float]:
        cells = [
            row.find_elements(By.TAG_NAME, "td")[column].text
            for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")
        ]
        return [float(cell.replace(",", "")) for cell in cells]

    assert len(rates()) >= 2
    header = table.find_elements(By.TAG_NAME, "th")[column]
    header.click()
    assert rates() == sorted(rates()) and header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert rates() == sorted(rates(), reverse=True)
    assert header.get_attribute("aria-sort") == "descending"
