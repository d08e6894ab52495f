"""A sweep stopped by SIGINT or SIGTERM at every moment the launcher has (bench/testpoint.py):
each stop exits 130 or 143, keeps every finished record whole, and ``--resume`` finishes the run
with every (case, repeat) exactly once."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_suite

SUITE = """
[suite]
name = "stops"
[base]
workload = "mlp"
model_size = "tiny"
data = "digits"
repeats = 2
threads = 1
warmup_steps = 2
min_steps = 5
max_steps = 5
min_time_s = 0.0
[matrix]
batch_size = [16, 32]
"""

# (where bench signals itself, how many records the run holds after that stop). The suite has
# 4 jobs; each step resumes the run the step before stopped. The environment's probe is each
# process's first start and first running.
STOPS = [
    ("fork-server", 0),  # the launcher starts the fork server: nothing has run
    ("env", 0),  # the environment is collected: still nothing
    ("start:3", 1),  # the first job of this resume ran; the second is being forked
    ("record:1", 2),  # a record written, not yet fsynced: it is kept
    ("running:2", 2),  # the case running is killed: no record of it
    ("between:1", 3),  # after a record, before the next job
]


def _bench(tmp_path: Path, bench_env: dict, args: list[str], env: dict):
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args],
        cwd=tmp_path,
        env=bench_env | env,
        capture_output=True,
        text=True,
        timeout=300,
        # As a background job of a shell without job control starts it (`make test &`): with
        # SIGINT ignored, which Python keeps ignored unless bench handles it itself.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )


@pytest.mark.parametrize(("name", "code"), [("INT", 130), ("TERM", 143)])
def test_a_stop_at_any_moment_keeps_records_and_resume_finishes(tmp_path, bench_env, name, code):
    path = write_suite(tmp_path, "stops", SUITE)
    args = ["run", str(path), "--out", "res", "--device", "cpu"]
    lines: list[str] = []
    for point, expected in STOPS:
        hook = {"BENCH_TEST_SIGNAL_AT": point, "BENCH_TEST_SIGNAL": name}
        done = _bench(tmp_path, bench_env, args, hook)
        assert done.returncode == code, (point, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, point
        (run_dir,) = (tmp_path / "res" / "stops").iterdir()
        assert f"bench run --resume {run_dir.relative_to(tmp_path)}" in done.stdout, point
        records_file = run_dir / "records.jsonl"
        text = records_file.read_text() if records_file.exists() else ""
        assert text == "" or text.endswith("\n"), point  # no record cut off
        assert text.splitlines()[: len(lines)] == lines, point  # earlier records kept as they were
        lines = text.splitlines()
        assert len(lines) == expected, point
        args = ["run", "--resume", str(run_dir.relative_to(tmp_path))]
    done = _bench(tmp_path, bench_env, ["run", "--resume", str(run_dir)], {})
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in records_file.read_text().splitlines()]
    assert [json.loads(line) for line in lines] == records[:3]
    jobs = sorted((r["config"]["batch_size"], r["repeat"]) for r in records)
    assert jobs == [(16, 0), (16, 1), (32, 0), (32, 1)]
    assert all(r["status"] == "ok" for r in records)


# A max-batch search that probes batch 64 only (mlp's default batch is 64, the limit 64), with the
# run length of its probes (bench/run/maxbatch.py), so that its probe is the very case at 64.
PROBED = """
[suite]
name = "probed"
[base]
workload = "mlp"
model_size = "tiny"
data = "digits"
repeats = 1
threads = 1
warmup_steps = 1
min_steps = 3
max_steps = 3
min_time_s = 0.0
max_batch_limit = 64
[matrix]
batch_size = ["max", 64]
"""


def test_resume_does_not_take_a_probe_for_the_case_at_its_batch_size(tmp_path, bench_env):
    path = write_suite(tmp_path, "probed", PROBED)
    args = ["run", str(path), "--out", "res", "--device", "cpu"]
    hook = {"BENCH_TEST_SIGNAL_AT": "between:1", "BENCH_TEST_SIGNAL": "INT"}  # after the search
    assert _bench(tmp_path, bench_env, args, hook).returncode == 130
    (run_dir,) = (tmp_path / "res" / "probed").iterdir()
    done = _bench(tmp_path, bench_env, ["run", "--resume", str(run_dir)], {})
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    assert [(r["config"]["batch_size"], r["flags"]) for r in records] == [
        (64, ["max_batch_probe"]),
        ("max", []),
        (64, []),
    ]
    assert records[0]["case_id"] == records[2]["case_id"]  # what resume must not take as done


def test_resuming_a_cluster_run_checks_its_software_and_code(tmp_path, bench_env):
    # submitit's local executor: the Slurm path, each job describing its node's environment.
    text = SUITE.replace("[matrix]\nbatch_size = [16, 32]\n", "")
    path = write_suite(tmp_path, "stops", text)
    args = ["run", str(path), "--out", "res", "--device", "cpu", "--executor", "submitit-local"]
    hook = {"BENCH_TEST_SIGNAL_AT": "between:1", "BENCH_TEST_SIGNAL": "INT"}
    assert _bench(tmp_path, bench_env, args, hook).returncode == 130
    (run_dir,) = (tmp_path / "res" / "stops").iterdir()
    env = json.loads((run_dir / "env.json").read_text())
    env["git"]["commit"] = "0" * 40  # as if the code had changed since the run started
    (run_dir / "env.json").write_text(json.dumps(env))
    records = (run_dir / "records.jsonl").read_text()
    done = _bench(tmp_path, bench_env, ["run", "--resume", str(run_dir)], {})
    assert done.returncode == 2, done.stderr
    assert f"git.commit was '{'0' * 40}' when the run started" in done.stderr
    assert (run_dir / "records.jsonl").read_text() == records  # nothing of the other code kept
