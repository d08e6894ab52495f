"""The launcher's isolation on real processes: a hard crash, leftover children, scheduling."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.run.launcher import Launcher
from bench.run.sweep import schedule
from bench.spec.case import Case


def crash_hard(result_path: str, log_path: str, launched_at: float) -> None:
    with open(log_path, "w") as log:
        log.write("about to crash\n")
    os.kill(os.getpid(), signal.SIGSEGV)


def leave_a_child(result_path: str, log_path: str, launched_at: float) -> None:
    """Start a grandchild that would outlive us (as inductor's compile workers can), then exit
    without a result."""
    child = subprocess.Popen(["sleep", "300"])
    Path(log_path).write_text(str(child.pid))


@pytest.fixture
def launcher(tmp_path) -> Launcher:
    (tmp_path / "logs").mkdir()
    return Launcher(tmp_path)


def test_a_worker_killed_by_a_signal_is_an_error_with_its_log_tail(launcher, tmp_path):
    result_path, log_path = tmp_path / "r.json", tmp_path / "crash.log"
    result = launcher._call(
        crash_hard, (str(result_path), str(log_path)), result_path, log_path, 60
    )
    assert result["status"] == "error"
    assert result["reason"] == "worker killed by signal SIGSEGV\nabout to crash"
    assert result["timing"]["wall_s"] > 0


def test_the_workers_process_group_is_reaped(launcher, tmp_path):
    result_path, log_path = tmp_path / "r.json", tmp_path / "child.log"
    result = launcher._call(
        leave_a_child, (str(result_path), str(log_path)), result_path, log_path, 60
    )
    assert result["status"] == "error"
    assert result["reason"].startswith("worker exited with code 0 without a result")
    grandchild = int(log_path.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            return  # gone
        # A zombie is gone too: it only waits for its (dead) parent's reaper.
        state = Path(f"/proc/{grandchild}/stat").read_text().split()[2]
        if state == "Z":
            return
        time.sleep(0.05)
    raise AssertionError(f"grandchild {grandchild} still runs after the case ended")


def test_schedule_interleaves_repeats_and_shuffles_only_within_rounds():
    a = Case.from_dict({"batch_size": 8, "repeats": 2})
    b = Case.from_dict({"batch_size": 16, "repeats": 3})
    c = Case.from_dict({"batch_size": 32, "repeats": 1})
    order = [(job.case.batch_size, job.repeat) for job in schedule([a, b, c], "interleaved", 0)]
    assert order == [(8, 0), (16, 0), (32, 0), (8, 1), (16, 1), (16, 2)]
    shuffled = [(j.case.batch_size, j.repeat) for j in schedule([a, b, c], "random", 3)]
    assert sorted(shuffled[:3]) == [(8, 0), (16, 0), (32, 0)]
    assert sorted(shuffled[3:5]) == [(8, 1), (16, 1)]
    assert shuffled == [(j.case.batch_size, j.repeat) for j in schedule([a, b, c], "random", 3)]
    orders = {tuple(j.case.id for j in schedule([a, b, c], "random", s)[:3]) for s in range(20)}
    assert len(orders) > 1  # the seed changes the order


def test_the_compiler_preload_compiles_nothing_and_starts_no_thread_or_process():
    # What the fork server imports for a sweep that compiles must leave nothing behind that a
    # forked case would inherit: no compiled frame, no thread (fork keeps only the forking one, and
    # any lock another held), no child process.
    code = (
        "import importlib, threading, psutil\n"
        "from bench.run.launcher import COMPILER_PRELOAD, PRELOAD\n"
        "for name in PRELOAD + COMPILER_PRELOAD:\n"
        "    importlib.import_module(name)\n"
        "from torch._dynamo.utils import counters\n"
        "children = psutil.Process().children()\n"
        "print(counters['frames']['total'], threading.active_count(), children)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "1", "[]"]
