"""Build the report: read runs, aggregate repeats, print tables, write ``report.md``,
``report.html`` and the figures (``figures/<suite>-<view>.png``) under the output directory."""

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.text import Text

from bench import atomic
from bench.errors import UserError
from bench.report.faq import FaqSection, faq_sections
from bench.report.findings import SuiteFindings, suite_findings
from bench.report.findings import render_markdown as findings_markdown
from bench.report.frame import aggregate, missing_figures, records_frame
from bench.report.html import render_html
from bench.report.plots import Plot, suite_plots, write_plots
from bench.report.profiles import compile_table, memory_table, profile_tables
from bench.report.tables import (
    TableView,
    escape_markdown,
    markdown_table,
    print_view,
    render_terminal,
    suite_tables,
)
from bench.results.store import read_records

REPORT_FILE = "report.md"
HTML_FILE = "report.html"
FIGURES_DIR = "figures"


@dataclass
class Report:
    markdown: Path
    html: Path
    figures: list[Path]


def build_report(run_dirs: list[Path], out_dir: Path, console: Console) -> Report:
    """Report on the given run directories; returns the paths written."""
    records = [record for run_dir in run_dirs for record in read_records(run_dir)]
    if not records:
        names = ", ".join(str(run_dir) for run_dir in run_dirs) or "(no run directories)"
        raise UserError(f"no records to report in {names}")
    frame = records_frame(records)
    agg = aggregate(frame)
    render_terminal(agg, console, records)
    for old in (out_dir / FIGURES_DIR).glob("*.png"):  # an earlier report's figures
        old.unlink()
    suites = []
    for suite, cases in agg.groupby("suite", sort=False):
        suite_records = [r for r in records if r.get("suite") == suite]
        plots = suite_plots(cases, frame[frame["suite"] == suite], suite_records)
        write_plots(plots, out_dir / FIGURES_DIR, str(suite))
        diagnostics = [
            compile_table(suite_records),
            *profile_tables(suite_records),
            memory_table(suite_records),
        ]
        diagnostics = [view for view in diagnostics if view is not None]
        for view in diagnostics:
            if not view.folded:  # the top operators are for the page, not the terminal
                print_view(view, console)
        tables = suite_tables(cases, suite_records) + diagnostics
        suites.append((str(suite), tables, plots))
    faq = faq_sections(agg, records)
    findings = suite_findings(agg, records)
    missing = missing_figures(frame)
    _print_faq(faq, console)
    _print_findings(findings, console)
    markdown = write_atomic(
        out_dir / REPORT_FILE, render_markdown_report(suites, faq, missing, findings)
    )
    html = write_atomic(out_dir / HTML_FILE, render_html(suites, faq, missing, findings))
    # Each file once (names are unique per suite and view: plots.safe_name), as written.
    paths = dict.fromkeys(plot.path for _, _, plots in suites for plot in plots if plot.path)
    figures = [path for path in paths if path.is_file()]
    return Report(markdown, html, figures)


def render_markdown_report(
    suites: list[tuple[str, list[TableView], list[Plot]]],
    faq: list[FaqSection],
    missing: list[str],
    findings: list[SuiteFindings] | None = None,
) -> str:
    parts = ["# Benchmark report"]
    if findings:
        parts.append(findings_markdown(findings))
    if missing:
        parts.append("No record here holds: " + "; ".join(missing) + ".")
    for name, tables, plots in suites:
        parts.append(f"## {escape_markdown(name)}")
        parts += [markdown_table(view, level=3) for view in tables]
        for plot in plots:
            assert plot.path is not None
            parts.append(
                f"![{escape_markdown(plot.title)}]({FIGURES_DIR}/{plot.path.name})\n\n"
                f"*{escape_markdown(plot.title)}.* {escape_markdown(plot.caption)}"
            )
    parts.append("## FAQ: answered with this machine's numbers")
    for section in faq:
        parts.append(f"### {escape_markdown(section.question)}")
        parts.append(f"*Method.* {escape_markdown(section.method)}")
        if section.runs:
            parts.append(f"*Runs used:* {escape_markdown(', '.join(section.runs))}")
        parts += [escape_markdown(line) for line in section.lines]
        parts += [markdown_table(view, level=4) for view in section.tables]
        parts += [f"**Not answered here:** run {escape_markdown(m)}." for m in section.missing]
        if section.answer:
            parts.append(f"**Answer.** {escape_markdown(' '.join(section.answer))}")
    return "\n\n".join(parts) + "\n"


def _print_findings(findings: list[SuiteFindings], console: Console) -> None:
    console.print(Text("Findings", style="bold"))
    for f in findings:
        console.print(Text(f"  {f.suite}", style="bold"))
        for line in f.resolved or ["resolved: none" if f.compared else "nothing compared"]:
            console.print(Text(f"    {line}"))
        for prefix, lines in (("no change", f.unchanged), ("not resolved", f.unresolved)):
            for line in lines:
                console.print(Text(f"    {prefix}: {line}"))
        for line in f.numerics:
            console.print(Text(f"    {line}"))


def _print_faq(faq: list[FaqSection], console: Console) -> None:
    for section in faq:
        console.print(Text(section.question, style="bold"))
        for line in section.lines:
            console.print(Text(f"  {line}"))
        for view in section.tables:
            print_view(view, console)
        for what in section.missing:
            console.print(Text(f"  not answered here: run {what}"))
        if section.answer:
            console.print(Text(f"  Answer. {' '.join(section.answer)}"))


def write_atomic(path: Path, text: str) -> Path:
    """Write a report file whole (bench/atomic.py), creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_text(path, text)
