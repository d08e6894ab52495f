"""bench compare, baseline, gate and export as CI meets them: exit codes, files, one-line errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY_SUITE, write_suite

FIXTURES = ROOT / "tests" / "fixtures" / "compare"
GPT = "8192be98f411"  # the fixture's tiny GPT case


@pytest.fixture
def runs(tmp_path) -> Path:
    """tmp_path/run1 and run2: copies of the fixture runs (real records)."""
    for run in ("run1", "run2"):
        shutil.copytree(FIXTURES / run, tmp_path / run)
    return tmp_path


def rewrite(path: Path, edit) -> None:
    """Pass every record of ``path`` through ``edit`` (None drops the record)."""
    records = [json.loads(line) for line in path.open()]
    path.write_text("".join(json.dumps(r) + "\n" for r in map(edit, records) if r is not None))


def test_a_status_regression_fails_with_exit_1(runs, bench):
    def crash(record):
        if record["case_id"] != GPT or record["repeat"] != 1:
            return record
        reason = "Traceback (most recent call last):\nRuntimeError: CUDA error: out of bounds"
        return {**record, "status": "error", "reason": reason, "metrics": {}, "samples": {}}

    rewrite(runs / "run2" / "records.jsonl", crash)
    done = bench("compare", "run1", "run2", "--json", "verdicts.json")
    assert done.returncode == 1, done.stderr
    assert "broken" in done.stdout and "FAIL: 2 cases: 1 broken" in done.stdout
    verdicts = json.loads((runs / "verdicts.json").read_text())
    assert verdicts["failed"] is True
    case = next(c for c in verdicts["cases"] if c["case_id"] == GPT)
    assert case["verdict"] == "broken"
    assert case["note"] == "error in CAND: RuntimeError: CUDA error: out of bounds"
    assert (case["base_status"], case["cand_status"]) == ("3 ok", "1 error, 2 ok")


def test_new_and_missing_cases_are_reported(runs, bench):
    def renamed(record):
        if record["case_id"] == GPT:
            return {**record, "case_id": "0123456789ab", "config": {**record["config"], "lr": 0.5}}
        return record

    rewrite(runs / "run2" / "records.jsonl", renamed)
    done = bench("compare", "run1", "run2", "--markdown", "summary.md")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = (runs / "summary.md").read_text()
    for text in (done.stdout, summary):
        assert f"({GPT})" in text and "missing" in text and "only in BASE" in text
        assert "(0123456789ab)" in text and "new" in text and "only in CAND" in text
    assert summary.startswith("## bench compare\n\n**PASS: 3 cases")


def test_nothing_in_common_is_bad_input(runs, bench):
    rewrite(runs / "run2" / "records.jsonl", lambda r: {**r, "case_id": "f" + r["case_id"][1:]})
    done = bench("compare", "run1", "run2")
    assert done.returncode == 2
    assert "have no case in common" in done.stderr


BAD_INPUTS = [
    (["compare", "run1", "corrupt"], "corrupt/records.jsonl:3: not valid JSON"),
    (["compare", "run1", "nightly"], "nightly: not a run directory, records file or baseline"),
    (["compare", "run1", "run2", "--threshold", "5"], "--threshold '5': expected a percentage"),
    (["compare", "run1", "run2", "--threshold", "speed=5%"], "unknown metric 'speed'"),
    (["compare", "run1", "run2", "--markdown", "no/such/dir/s.md"], "no such directory no/such"),
    (["compare", "run1", "run2", "--resamples", "10"], "--resamples 10: use at least 100"),
    (["baseline", "save", "../up", "run1"], "baseline name '../up': use letters"),
    (["baseline", "save", "main", "corrupt"], "corrupt/records.jsonl:3: not valid JSON"),
    (["gate", "suite.toml", "--baseline", "nightly"], "nightly: not a run directory"),
    (
        ["ab", "suite.toml", "--base-ref", "no-such-ref", "--device", "cpu"],
        "--base-ref no-such-ref",
    ),
    (["export", "corrupt", "--format", "pytest-benchmark", "-o", "x.json"], "records.jsonl:3"),
    (["export", "run1", "--format", "csv", "-o", "x.json"], "invalid choice: 'csv'"),
]


@pytest.mark.parametrize(("argv", "expected"), BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(runs, bench, argv, expected):
    corrupt = runs / "corrupt"
    shutil.copytree(runs / "run1", corrupt)
    lines = (corrupt / "records.jsonl").read_bytes().split(b"\n")
    lines[2] = lines[2][: len(lines[2]) // 2]  # a record cut in the middle of the file
    (corrupt / "records.jsonl").write_bytes(b"\n".join(lines))
    write_suite(runs, "suite", "[base]\nmodel_size = 'tiny'\n")
    before = {p: p.read_bytes() for p in runs.rglob("*") if p.is_file()}
    done = bench(*argv)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("bench: error: ") and done.stderr.count("\n") == 1
    assert expected in done.stderr
    assert {p: p.read_bytes() for p in runs.rglob("*") if p.is_file()} == before


def test_baseline_save_list_and_compare_by_name(runs, bench):
    done = bench("baseline", "save", "main", "run1")
    assert done.returncode == 0, done.stderr
    saved = runs / "results" / "baselines" / "main"
    assert sorted(p.name for p in saved.iterdir()) == ["baseline.json", "env.json", "records.jsonl"]
    records = [json.loads(line) for line in (saved / "records.jsonl").open()]
    assert len(records) == 6 and all(list(r["samples"]) == ["step_time_s"] for r in records)
    original = [json.loads(line) for line in (runs / "run1" / "records.jsonl").open()]
    assert [r["samples"]["step_time_s"] for r in records] == [
        r["samples"]["step_time_s"] for r in original
    ]
    manifest = json.loads((saved / "baseline.json").read_text())
    assert manifest["num_cases"] == 2 and manifest["statuses"] == {"ok": 6}
    assert manifest["source_run"] == "run1" and manifest["git"]["commit"]

    again = bench("baseline", "save", "main", "run2")
    assert again.returncode == 2 and "give --force to replace it" in again.stderr
    assert (saved / "records.jsonl").read_text().count("\n") == 6

    listing = bench("baseline", "list", "--json")
    assert [e["name"] for e in json.loads(listing.stdout)] == ["main"]

    compared = bench("compare", "main", "run1", "--json", "out.json")
    assert compared.returncode == 0, compared.stderr
    verdicts = json.loads((runs / "out.json").read_text())
    assert verdicts["base"]["source"] == "main" and not verdicts["failed"]
    assert verdicts["base"]["path"] == str(Path("results/baselines/main/records.jsonl"))

    replaced = bench("baseline", "save", "main", "run2", "--force")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads((saved / "baseline.json").read_text())["source_run"] == "run2"
    assert not list(saved.parent.glob(".main*"))  # no staging left behind


def test_export_is_read_by_pytest_benchmark_compare(runs, bench):
    done = bench("export", "run1", "--format", "pytest-benchmark", "-o", "run1.json")
    assert done.returncode == 0, done.stderr
    document = json.loads((runs / "run1.json").read_text())
    mlp, gpt = document["benchmarks"]
    assert mlp["params"] == {
        "workload": "mlp",
        "model_size": "base",
        "batch_size": 64,
        "data": "digits",
    }
    assert mlp["name"] == "compare_fixture[mlp-base-64-digits]"
    steps = sorted(
        t
        for line in (runs / "run1" / "records.jsonl").open()
        if (r := json.loads(line))["case_id"] == mlp["extra_info"]["case_id"]
        for t in r["samples"]["step_time_s"]
    )
    assert mlp["stats"]["rounds"] == len(steps) == 900
    assert mlp["stats"]["median"] == pytest.approx((steps[449] + steps[450]) / 2)
    for key in ("samples_per_s", "mfu", "peak_rss_bytes", "energy_per_sample_j"):
        assert key in mlp["extra_info"]
    assert gpt["extra_info"]["tokens_per_s"] > 0
    assert document["machine_info"]["cpu"]["brand_raw"] and document["machine_info"]["node"]
    assert len(document["commit_info"]["id"]) == 40

    listed = subprocess.run(
        [str(Path(sys.executable).parent / "pytest-benchmark"), "compare", "run1.json"],
        cwd=runs,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert "Failed to load" not in listed.stdout + listed.stderr
    assert "compare_fixture[mlp-base-64-digits]" in listed.stdout
    assert "compare_fixture[gpt-tiny-8-auto]" in listed.stdout


def test_gate_runs_the_suite_and_compares_with_the_baseline(tmp_path, bench):
    from bench.spec import suite as suites

    write_suite(tmp_path, "tiny", TINY_SUITE)
    (case,) = suites.expand(suites.load(str(tmp_path / "tiny.toml")), "cpu", {})
    # The baseline: the fixture's real MLP records, as if measured for this suite's case (one
    # real run in this test, not two; the rule itself is tested in test_compare.py).
    run = tmp_path / "earlier"
    shutil.copytree(FIXTURES / "run1", run)
    rewrite(
        run / "records.jsonl",
        lambda r: (
            {**r, "case_id": case.id, "config": case.to_dict()} if r["case_id"] != GPT else None
        ),
    )
    assert bench("baseline", "save", "nightly", "earlier").returncode == 0
    # Runs minutes apart on a shared machine differ by its drift; a wide threshold keeps this
    # test about the gate's mechanics.
    done = bench("gate", "tiny", "--baseline", "nightly", "--device", "cpu", "--threshold", "90%")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gate: run results/tiny/" in done.stdout and "PASS: 1 cases" in done.stdout
    assert f"({case.id})" in done.stdout
    assert len(list((tmp_path / "results" / "tiny").iterdir())) == 1

    other = bench("gate", "tiny", "--baseline", "nightly", "--set", "lr=0.5", "--device", "cpu")
    assert other.returncode == 2 and "no case in common with baseline 'nightly'" in other.stderr
    assert len(list((tmp_path / "results" / "tiny").iterdir())) == 1  # nothing ran


@pytest.mark.parametrize(("name", "code"), [("INT", 130), ("TERM", 143)])
def test_a_stopped_gate_exits_with_the_stop_and_writes_no_verdict(tmp_path, bench_env, name, code):
    from bench.spec import suite as suites

    write_suite(tmp_path, "tiny", TINY_SUITE)
    (case,) = suites.expand(suites.load(str(tmp_path / "tiny.toml")), "cpu", {})
    baseline = tmp_path / "results" / "baselines" / "nightly"
    shutil.copytree(FIXTURES / "run1", baseline)
    rewrite(
        baseline / "records.jsonl",
        lambda r: (
            {**r, "case_id": case.id, "config": case.to_dict()} if r["case_id"] != GPT else None
        ),
    )
    # Stopped after the first of the case's two repeats, as a cancelled CI job stops it: the
    # second repeat would be missing, and missing does not fail.
    hook = {"BENCH_TEST_SIGNAL_AT": "between:1", "BENCH_TEST_SIGNAL": name}
    done = subprocess.run(
        [sys.executable, "-m", "bench.cli", "gate", "tiny", "--baseline", "nightly"]
        + ["--device", "cpu", "--markdown", "gate.md", "--json", "gate.json"],
        cwd=tmp_path,
        env=bench_env | hook,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == code, done.stdout + done.stderr
    assert "gate stopped before the comparison: no verdict" in done.stderr
    assert "PASS" not in done.stdout and "FAIL" not in done.stdout
    assert not (tmp_path / "gate.md").exists() and not (tmp_path / "gate.json").exists()


def test_comparing_imports_scipy_only_when_it_is_used():
    modules = (
        "bench.comparison_rule, bench.significance, bench.gate.compare, bench.gate.compare_output, "
        "bench.gate.verdict, bench.gate.metrics, bench.gate.calibration, bench.gate.baseline, "
        "bench.gate.ab, bench.results.export, bench.cli.calibrate"
    )
    code = (
        f"import sys\nimport {modules}\nassert 'torch' not in sys.modules\n"
        "assert 'scipy' not in sys.modules, 'scipy imported at start'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
