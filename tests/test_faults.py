"""Faults from outside during a sweep: case processes killed at random, the fork server killed
once. The sweep goes on, each killed case is a record that names what killed it, no record is
lost or duplicated, and ``--resume`` has nothing left to add."""

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from conftest import write_suite

SUITE = """
[suite]
name = "faults"
[base]
workload = "mlp"
model_size = "tiny"
data = "digits"
repeats = 4
threads = 1
warmup_steps = 1
min_steps = 5
min_time_s = 1.5
max_time_s = 1.5
[matrix]
batch_size = [16, 32]
"""
NUM_JOBS = 8
# Long enough after a case's log appears that it is building or measuring, well before its
# 1.5 s window ends and it writes its result.
KILL_AFTER_S = 0.5


def _fork_server(bench: psutil.Process) -> psutil.Process | None:
    for child in bench.children():
        if "forkserver" in " ".join(child.cmdline()):
            return child
    return None


def _job_of(process: psutil.Process, logs: Path) -> str | None:
    """The job a case's process runs, from the log it writes (logs/<case id>-r<repeat>.log)."""
    for file in process.open_files():
        path = Path(file.path)
        if path.parent == logs and path.suffix == ".log":
            return path.stem
    return None


def test_killed_cases_and_fork_server_are_records_that_say_so(tmp_path, bench_env):
    path = write_suite(tmp_path, "faults", SUITE)
    rng = random.Random(16)
    *direct, server_victim = rng.sample(range(NUM_JOBS), 4)
    kills = {index: rng.choice([signal.SIGKILL, signal.SIGTERM]) for index in direct}
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "run", str(path), "--out", "res", "--device", "cpu"],
        cwd=tmp_path,
        env=bench_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    bench = psutil.Process(process.pid)
    jobs: dict[int, tuple[int, str, float]] = {}  # pid -> (index, job, first seen)
    killed: dict[str, str] = {}  # job -> what killed it
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        runs = list((tmp_path / "res" / "faults").glob("*/logs"))
        try:
            server = _fork_server(bench) if runs else None
            for case in server.children() if server else []:
                if case.pid not in jobs and (job := _job_of(case, runs[0])) is not None:
                    jobs[case.pid] = (len(jobs), job, time.monotonic())
                index, job, seen = jobs.get(case.pid, (None, None, 0.0))
                if job in killed or time.monotonic() - seen < KILL_AFTER_S:
                    continue
                if index in kills:
                    case.send_signal(kills[index])
                    killed[job] = f"worker killed by signal {kills[index].name}"
                elif index == server_victim:
                    server.kill()
                    killed[job] = (
                        "the fork server died while this case ran (killed by signal SIGKILL)"
                    )
        except psutil.NoSuchProcess:  # a case that ended, or the fork server just killed
            continue
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr  # error records: exit 1, every case run
    assert len(killed) == 4 and len(jobs) == NUM_JOBS, (killed, jobs)
    (run_dir,) = (tmp_path / "res" / "faults").iterdir()
    text = (run_dir / "records.jsonl").read_text()
    records = {f"{r['case_id']}-r{r['repeat']}": r for r in map(json.loads, text.splitlines())}
    assert len(text.splitlines()) == len(records) == NUM_JOBS  # none lost, none twice
    for job, record in records.items():
        if job in killed:
            assert record["status"] == "error", job
            assert record["reason"].startswith(killed[job]), (job, record["reason"])
        else:
            assert record["status"] == "ok", (job, record["reason"])
    # Seed 16 kills the fork server during job 4 of 8 (0-based): the ok records after it ran in
    # a new one.
    assert server_victim < NUM_JOBS - 1
    resumed = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--resume", str(run_dir)],
        cwd=tmp_path,
        env=bench_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 1, resumed.stderr
    assert (run_dir / "records.jsonl").read_text() == text  # nothing added
