"""bench calibrate as a user meets it: an A/A of a suite (or of runs already made) stored in the
machine's cache, then used by bench compare for separate runs; bad input is one line, exit 2."""

import json
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, TINY_SUITE, write_suite

AA = ROOT / "tests" / "fixtures" / "aa" / "r2"


@pytest.fixture
def calibrating(bench_env, tmp_path):
    """``bench ARGS...`` in tmp_path with a cache of its own (the cache holds calibrations)."""
    env = {**bench_env, "BENCH_CACHE_DIR": str(tmp_path / "cache")}
    for run in ("run01", "run02", "run03", "run04", "run05"):
        shutil.copytree(AA / run, tmp_path / run)

    def run(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "bench.cli", *args]
        return subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    return run


def test_calibrate_from_runs_then_compare_uses_the_drift(calibrating, tmp_path):
    done = calibrating("calibrate", "--from", "run01", "run02", "run03")
    assert done.returncode == 0, done.stderr
    assert "run-to-run drift over 3 sequential runs" in done.stdout
    cache = json.loads((tmp_path / "cache" / "calibrations.json").read_text())
    ((machine, cases),) = cache.items()
    assert machine == "vm / AMD EPYC"
    assert cases["440ad314787c"]["step_time"]["runs"] == 3

    done = calibrating("compare", "run04", "run05", "--json", "v.json", "--markdown", "v.md")
    assert done.returncode == 0, done.stderr
    verdicts = json.loads((tmp_path / "v.json").read_text())
    assert verdicts["rule"]["interleaved"] is False
    assert verdicts["rule"]["calibration"] == machine
    step = next(m for m in verdicts["cases"][0]["metrics"] if m["metric"] == "step_time")
    assert step["interleaved"] is False
    assert step["noise_floor"] == pytest.approx(cases[step_case(verdicts)]["step_time"]["drift"])
    assert step["noise_floor_source"].startswith("calibrated: bench calibrate, 3 runs of 2")
    for text in (done.stdout, (tmp_path / "v.md").read_text()):
        assert "noise floor" in text and "(calibrated)" in text
        assert "separate runs (noise floor: the drift calibrated on vm / AMD EPYC)" in text


def step_case(verdicts) -> str:
    return verdicts["cases"][0]["case_id"]


def test_without_a_calibration_compare_says_so(calibrating, tmp_path):
    done = calibrating("compare", "run04", "run05", "--json", "v.json")
    assert done.returncode == 0, done.stderr
    assert "no calibration of this machine" in done.stdout and "(uncalibrated)" in done.stdout
    step = json.loads((tmp_path / "v.json").read_text())["cases"][0]["metrics"][0]
    assert step["noise_floor_source"].startswith("largest drift in the project's recorded A/A")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "run01", "run02"), "at least 3 runs, got 2"),
        ((), "give a SUITE to run, or --from RUN RUN RUN"),
        (("tiny.toml", "--runs", "2"), "--runs 2: use at least 3"),
        (("tiny.toml", "--from", "run01", "run02", "run03"), "give no SUITE"),
        (("--from", "run01", "nowhere", "run03"), "nowhere"),
    ],
)
def test_bad_input_is_one_line_and_nothing_is_written(calibrating, tmp_path, args, message):
    write_suite(tmp_path, "tiny", TINY_SUITE)
    done = calibrating("calibrate", *args)
    assert done.returncode == 2
    assert done.stderr.startswith("bench: error: ") and done.stderr.count("\n") == 1
    assert message in done.stderr
    assert not (tmp_path / "cache" / "calibrations.json").exists()
    assert not (tmp_path / "results").exists()


def test_calibrate_runs_the_suite_sequentially(calibrating, tmp_path):
    write_suite(tmp_path, "tiny", TINY_SUITE)
    done = calibrating("calibrate", "tiny.toml", "--runs", "3", "--device", "cpu")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line[:26] for line in done.stdout.splitlines() if "calibrate: run" in line] == [
        f"calibrate: run {k}/3 results" for k in (1, 2, 3)
    ]
    assert len(list((tmp_path / "results" / "tiny").iterdir())) == 3
    cache = json.loads((tmp_path / "cache" / "calibrations.json").read_text())
    ((case,),) = [list(cases.values()) for cases in cache.values()]
    assert case["step_time"]["runs"] == 3 and case["step_time"]["repeats"] == 2
    assert case["step_time"]["suite"] == "tiny"
