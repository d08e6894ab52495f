"""Process isolation: every (case, repeat) runs in a fresh process, with a timeout.

Processes come from a multiprocessing *fork server* that has imported torch and the worker but
never touched CUDA or compiled anything. Forking from it gives each case a fresh process (its own
allocator, dynamo and inductor in-memory caches, CUDA context and NVML view) for a few tens of
milliseconds instead of the seconds that ``import torch`` costs a new interpreter.

A worker that crashes, runs out of memory or passes its timeout becomes a result with a status and
the last lines of its log; the sweep goes on. This module does not import torch.
"""

import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import forkserver
from pathlib import Path
from typing import Any

from bench import testpoint
from bench.machine.process import die_with_parent
from bench.run import torchrun
from bench.spec.case import Case

LOG_TAIL_LINES = 20
# Phases of a worker that run training steps (or evaluate); the rest of its wall time is fixed cost.
MEASURED_PHASES = ("first_step_s", "warmup_s", "window_s", "eval_s")
# What `bench` turns into a clean stop (bench/cli/main.py).
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
PRELOAD = [
    "bench.worker.fork_server",  # first: SIGINT ignored before torch starts its threads
    "bench.worker.entry",
    "bench.worker.distributed",  # and with it torch.distributed's launcher (torchrun's agent)
    "bench.workloads.mlp",
    "bench.workloads.gpt",
    "bench.workloads.cnn",  # with vit: torchvision.transforms.v2 and the image pipeline
    "bench.workloads.vit",
    "bench.workloads.recsys",
    "bench.workloads.diffusion",
    "sklearn.datasets",  # the offline digits: ~1 s to import
    "torchvision.datasets",  # MNIST, looked for by every mlp case with data = "auto"
]
# What torch.compile imports before it compiles anything, in a sweep with a compiled case: the
# inductor backend with its kernel templates (jinja2, compiled at import), AOTAutograd and dynamo's
# debugging backends. In each case's process they were 1.3-1.8 s of its set-up. Importing them
# compiles nothing and starts no thread or process (tests/test_launcher.py), so no case's compile
# state reaches another: each compiles in its own fresh process as before.
COMPILER_PRELOAD = ["torch._inductor.compile_fx", "torch._dynamo.repro.after_dynamo"]


@dataclass(frozen=True)
class Job:
    case: Case
    repeat: int
    probe: bool = False
    """A probe of a max-batch search: its case may equal a regular case of the suite."""

    @property
    def name(self) -> str:
        """Names the job's log and result files in the run's logs/."""
        return f"{self.case.id}-r{self.repeat}" + ("-probe" if self.probe else "")


class Launcher:
    """Runs jobs in processes forked from one fork server (started on first use); a case with
    more than one rank through torchrun (bench/run/torchrun.py), itself started from the fork server
    so that it is isolated and reaped like any worker."""

    def __init__(
        self, run_dir: Path, placement: torchrun.Placement | None = None, compiles: bool = False
    ):
        self.run_dir = run_dir
        self.placement = placement or torchrun.Placement()
        self._context = multiprocessing.get_context("forkserver")
        # Everything a case imports, paid once per sweep instead of once per case; the compiler
        # stack only where a case compiles (about 1.7 s more at the fork server's start).
        self._context.set_forkserver_preload(PRELOAD + (COMPILER_PRELOAD if compiles else []))
        with stops_held():
            testpoint.reached("fork-server")
            forkserver.ensure_running()

    def run(self, job: Job) -> dict[str, Any]:
        """Run one job to its end and return the worker's result, with ``timing`` filled in."""
        # Several nodes share the run directory (a Slurm job on shared storage): each node has
        # its own result and agent log; node 0's result is the record.
        node = self._node_suffix(job.case)
        result_path = self.run_dir / "logs" / f"{job.name}{node}.result.json"
        log_path = self.run_dir / "logs" / f"{job.name}{node}.log"
        if job.case.world_size > 1:
            return self._run_torchrun(job, result_path, log_path)
        args = (job.case.to_dict(), str(result_path), str(log_path))
        return self._call(_run_worker, args, result_path, log_path, job.case.timeout_s)

    def _node_suffix(self, case: Case) -> str:
        if case.nnodes == 1:
            return ""
        if self.placement.node_rank is not None:
            return f".node{self.placement.node_rank}"
        return f".{os.uname().nodename}-{os.getpid()}"  # c10d: the nodes order themselves

    def _run_torchrun(self, job: Job, result_path: Path, log_path: Path) -> dict[str, Any]:
        """torchrun's agent for this node, forked like any worker; it forks the ranks. Its own
        output goes to the job's log, each rank's to ``<job>.rankN.log``."""
        log_dir = result_path.parent

        def explain(result: dict[str, Any], exitcode: int | None) -> dict[str, Any]:
            if result["status"] == "timeout":
                reason = torchrun.timeout_reason(job.case, log_dir, job.name)
                return {"status": "timeout", "reason": reason}
            return result

        args = (
            job.case.to_dict(),
            self.placement.to_dict(),
            job.name,
            str(result_path),
            str(log_path),
        )
        return self._call(_run_agent, args, result_path, log_path, job.case.timeout_s, explain)

    def _call(
        self,
        target: Callable[..., None],
        args: tuple[Any, ...],
        result_path: Path,
        log_path: Path,
        timeout_s: float,
        explain: Callable[[dict[str, Any], int | None], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Run ``target(*args, launched)`` in a forked process; its result file, or a failure.
        ``explain`` rewrites a failure's status and reason (torchrun's, per rank)."""
        # A result left by a worker of an interrupted run (stopped before it was read) is not
        # this worker's.
        result_path.unlink(missing_ok=True)
        launched = time.time()
        # Not daemonic: multiprocessing forbids a daemonic process children of its own, and a
        # case's DataLoader forks its workers (and torchrun's agent its ranks). The finally
        # below reaps the worker and its group whatever happens, and the worker dies with the
        # fork server (_isolated).
        process = self._context.Process(target=_isolated, args=(target, *args, launched))
        try:
            with stops_held():  # a fork server that died is started again, as in __init__
                forkserver.ensure_running()
            server = forkserver._forkserver._forkserver_pid
            # A stop before its pid is known leaves the process to die with the fork server,
            # which exits with bench (_isolated).
            testpoint.reached("start")
            process.start()
            testpoint.reached("running")
            process.join(timeout_s)
            timed_out = process.is_alive()
        finally:
            # Always reap the worker's process group: on a timeout, on Ctrl-C, and after a normal
            # exit too (inductor's compile workers outlive a worker that exits with os._exit);
            # and the groups of its descendants (torchrun's ranks run in sessions of their own).
            if process.pid is not None:
                # Its descendants only while it runs: once it has exited, its pid may be reused.
                torchrun.kill_tree(process.pid, descendants=process.is_alive())
                process.join()
                _remove_cold_caches(process.pid)
        wall_s = time.time() - launched
        from_worker = not timed_out and result_path.exists()
        if timed_out:
            result = {
                "status": "timeout",
                "reason": f"killed after timeout_s = {timeout_s:g} s\n{_tail(log_path)}".rstrip(),
            }
        elif result_path.exists():
            result = json.loads(result_path.read_text())
            result_path.unlink()
        else:
            # 255: multiprocessing's code for a child whose exit status never came from its
            # fork server, which died then (its pipes close just before it is a zombie).
            death = _death_of(server, wait_s=1.0) if process.exitcode == 255 else None
            why = _exit_reason(process.exitcode, log_path, death)
            result = {"status": "error", "reason": why}
        if explain is not None and not from_worker:
            result = explain(result, process.exitcode)
        timing = result.setdefault("timing", {})
        timing["wall_s"] = wall_s
        if all(key in timing for key in MEASURED_PHASES):
            # What the case cost beyond its training steps: process start, set-up, teardown.
            # A fine-tuning case's pretraining phase (timing.pretrain_s) is not fixed cost.
            measured_s = sum(timing[key] for key in MEASURED_PHASES) + (
                timing.get("pretrain_s") or 0
            )
            timing["fixed_s"] = wall_s - measured_s
        return result

    def collect_env(self, repo: Path) -> dict[str, Any]:
        """The environment as a forked worker sees it, so it describes the torch that cases use."""
        result_path = self.run_dir / "logs" / "env.result.json"
        testpoint.reached("env")
        result = self._call(
            _write_env, (str(repo), str(result_path)), result_path, result_path, 120
        )
        result.pop("timing")
        return result


@contextmanager
def stops_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM (blocked, not ignored: one that arrives is delivered on leaving)
    while the fork server is started.

    The fork server inherits the blocked mask through exec, so it imports torch with stops held (a
    Ctrl-C at the terminal reaches its process group, and would end it with a traceback), then
    ignores SIGINT itself; its children unblock them (_isolated). Ignoring SIGINT here instead,
    as before, dropped a Ctrl-C that came meanwhile, and a fork server started again after it
    died was not protected at all.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _isolated(target: Callable[..., None], *args: Any) -> None:
    """First thing in every child: detach it, then run ``target``."""
    fork_server = os.getppid()
    # Own process group: a Ctrl-C at the terminal reaches the launcher only, and the launcher can
    # kill the whole group (inductor's compile workers included).
    os.setpgrp()
    # Out of bench's process group now: SIGINT as Python takes it (ignored until here, as in
    # the fork server: bench/worker/fork_server.py), and the stops the fork server started with
    # held (stops_held) unblocked.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    # Every child of a fork server inherits the write end of its "alive" pipe (multiprocessing
    # passes it with each request): while a child held it, the fork server never saw the
    # launcher go (EOF on that pipe) and outlived a SIGKILLed bench, and the child's PDEATHSIG
    # below never fired. Nothing here uses it: a child that starts a fork server of its own gets
    # a new pipe, and torchrun's ranks and DataLoader workers are forked.
    _drop_fork_server_alive_fd()
    # Die with the fork server, which exits when the launcher does (even by SIGKILL), so that a
    # killed sweep leaves no case running on. Linux only: prctl(PR_SET_PDEATHSIG, SIGKILL).
    die_with_parent(fork_server)
    target(*args)


def _drop_fork_server_alive_fd() -> None:
    server = forkserver._forkserver
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is not None and getattr(server, "_forkserver_pid", None) is None:
        # Inherited, not this process's own fork server's.
        os.close(fd)
        server._forkserver_alive_fd = None


# Process targets. They import the worker inside the child (where the fork server has already
# imported it), so that the launcher's own process never imports torch.
def _run_worker(*args: Any) -> None:
    from bench.worker import entry as worker

    worker.main(*args)


def _run_agent(*args: Any) -> None:
    from bench.worker import distributed

    distributed.launch(*args)


def _write_env(repo: str, result_path: str, launched_at: float) -> None:
    from bench.machine.env import collect
    from bench.results.store import write_json

    write_json(Path(result_path), collect(Path(repo)))


def cold_cache_prefix(pid: int) -> str:
    """The name's start of the inductor cache directory of ``compile_cache = "cold"`` in the
    process ``pid`` (bench/train/compiling.py), in the temporary directory."""
    return f"bench-inductor-cold-{pid}-"


def _remove_cold_caches(pid: int) -> None:
    """The cold caches the process ``pid`` made: gone whether it removed them or was killed."""
    for directory in Path(tempfile.gettempdir()).glob(cold_cache_prefix(pid) + "*"):
        shutil.rmtree(directory, ignore_errors=True)


def _death_of(pid: int | None, wait_s: float) -> str | None:
    """How the fork server ``pid`` ended (``"killed by signal SIGKILL"``), or None if it still
    runs after ``wait_s``. It stays a zombie (WNOWAIT) for ensure_running, which reaps it and
    starts a new one."""
    if pid is None:
        return None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            status = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # not this process's child: reaped already
            return "ended"
        if status is not None or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if status is None:
        return None
    if status.si_code == os.CLD_EXITED:
        return f"exited with code {status.si_status}"
    return f"killed by signal {signal.Signals(status.si_status).name}"


def _exit_reason(exitcode: int | None, log_path: Path, server_death: str | None = None) -> str:
    if server_death is not None:
        why = (
            f"the fork server died while this case ran ({server_death}), and the case's "
            "process with it; the next case starts a new fork server"
        )
    elif exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        why = f"worker killed by signal {name}"
        if name == "SIGKILL":
            why += " (by someone else: possibly the kernel's out-of-memory killer)"
    else:
        why = f"worker exited with code {exitcode} without a result"
    return f"{why}\n{_tail(log_path)}".rstrip()


def _tail(log_path: Path) -> str:
    try:
        lines = log_path.read_text(errors="replace").rstrip().splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-LOG_TAIL_LINES:])
