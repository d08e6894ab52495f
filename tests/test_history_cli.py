"""bench history as a nightly job meets it: the runs it finds, its exit codes, its files, and
one-line errors for bad input (tests/fixtures/history: real runs)."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import ROOT

from bench.cli.main import main
from bench.gate import baseline

RUNS = sorted((ROOT / "tests" / "fixtures" / "history" / "runs").iterdir())
TUTORIAL = "f228b6716027"


@pytest.fixture
def results(tmp_path) -> Path:
    """tmp_path/results/nightly/: the first 25 fixture runs (the 25th: the slower commit)."""
    for run in RUNS[:25]:
        shutil.copytree(run, tmp_path / "results" / "nightly" / run.name)
    return tmp_path / "results"


def test_the_night_of_a_slower_commit_fails_with_its_files(results, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "history",
            "nightly",
            "--results",
            str(results),
            "--json",
            str(tmp_path / "h.json"),
            "--markdown",
            str(tmp_path / "h.md"),
            "--html",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 1, printed
    assert "FAIL: 25 runs, 2 series" in printed
    document = json.loads((tmp_path / "h.json").read_text())
    assert document["failed"] is True and document["runs"] == 25
    alerts = [s["case_id"] for s in document["series"] if s["alert"]]
    assert alerts == [TUTORIAL]
    assert "| series |" in (tmp_path / "h.md").read_text()
    assert len(list((out / "figures").glob("*.png"))) == 2
    assert (out / "history.html").read_text().count("data:image/png;base64,") == 2


def test_a_night_of_unchanged_runs_passes(results, capsys):
    for run in sorted((results / "nightly").iterdir())[20:]:
        shutil.rmtree(run)  # nights 1-20: identical code
    assert main(["history", "nightly", "--results", str(results)]) == 0
    assert "PASS: 20 runs, 2 series, 0 change points" in capsys.readouterr().out


def test_a_baseline_copied_from_a_run_is_counted_once(results, capsys):
    baseline.save(results, "main", sorted((results / "nightly").iterdir())[3])
    main(["history", "nightly", "--results", str(results), "--json", str(results / "h.json")])
    assert json.loads((results / "h.json").read_text())["runs"] == 25


def test_since_keeps_the_later_runs(results, capsys):
    started = json.loads((RUNS[10] / "env.json").read_text())["started_at"]
    main(
        [
            "history",
            "nightly",
            "--results",
            str(results),
            "--since",
            started,
            "--json",
            str(results / "h.json"),
        ]
    )
    assert json.loads((results / "h.json").read_text())["runs"] == 15


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "--since 'yesterday': not a date"),
        (["--metric", "speed"], "invalid choice: 'speed'"),
        (["--last", "0"], "--last 0: must be a positive number of runs"),
        (["--threshold", "150%"], "expected a percentage between 0% and 100%"),
        (["--threshold", "step_time=off"], "step_time set off: no metric left to follow"),
        (["--since", "2099-01-01"], "no ok record with step_time in 0 runs since 2099-01-01"),
    ],
)
def test_bad_options_are_one_line_errors(results, capsys, args, message):
    assert main(["history", "nightly", "--results", str(results), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("other", "other: no run of suite 'other'"),
        ("bad name!", "'bad name!': a suite's name is letters, digits"),
        ("../nightly", "../nightly: no such file or directory"),
    ],
)
def test_unknown_suites_are_one_line_errors(results, capsys, name, message):
    assert main(["history", name, "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
