"""Launching a distributed case through torchrun (torch.distributed.run), and reading its end.

The launcher starts ``python -m torch.distributed.run ... -m bench.distributed ...`` for a case
with more than one rank (bench/distributed.py is the rank side). One node: torchrun's
``--standalone`` rendezvous on a free local port. Several nodes: every node runs the same sweep,
and each case's torchrun meets the others at the :class:`Placement`'s endpoint, with a
rendezvous id made of the case id and repeat, which is the same on every node.

A failed case becomes a record whose reason names the rank: a rank that raised left its error
(``<job>.rankN.error.json``); a rank that died (a signal, the OOM killer) is named by torchrun's
failure summary, which is parsed here. Torch-free.
"""

import json
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psutil

from bench.config import Case
from bench.errors import UserError

RDZV_BACKENDS = ("c10d", "static")
_ENDPOINT = re.compile(r"^\[?[A-Za-z0-9_.:-]+\]?:\d{1,5}$")
# torchrun's failure summary (torch/distributed/elastic/multiprocessing/errors): the root cause
# section lists the first rank that failed, its exit code and, for a signal, its name.
_ROOT_CAUSE = re.compile(
    r"Root Cause \(first observed failure\):.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)"
    r".*?traceback\s*:\s*([^\n]*)",
    re.S,
)


@dataclass(frozen=True)
class Placement:
    """Where the ranks of a multi-node case meet: torchrun's rendezvous. It says where a case
    runs, not what it measures, so it is an option of ``bench run`` and not part of a case."""

    rdzv_endpoint: str | None = None
    """``HOST:PORT`` of the rendezvous (a port free on node 0's host); needed when a case has
    ``nnodes > 1``."""
    rdzv_backend: Literal["c10d", "static"] = "c10d"
    """``c10d`` (torchrun's default: node 0's torchrun hosts the store) or ``static`` (ranks
    fixed by ``node_rank``)."""
    node_rank: int | None = None
    """This node's rank, 0 to nnodes - 1 (``static`` needs it; ``c10d`` orders nodes itself)."""
    rdzv_id: str = "bench"
    """Prefix of each case's rendezvous id (the case id and repeat follow): two sweeps that
    share an endpoint at the same time need different prefixes."""

    def __post_init__(self) -> None:
        if self.rdzv_endpoint is not None and not _ENDPOINT.match(self.rdzv_endpoint):
            raise UserError(
                f"--rdzv-endpoint {self.rdzv_endpoint!r}: give HOST:PORT, e.g. node0:29500"
            )
        if self.rdzv_backend not in RDZV_BACKENDS:
            raise UserError(
                f"--rdzv-backend {self.rdzv_backend!r}: allowed: {', '.join(RDZV_BACKENDS)}"
            )
        if self.node_rank is not None and self.node_rank < 0:
            raise UserError(f"--node-rank {self.node_rank}: must be an integer >= 0")

    def check(self, cases: list[Case]) -> None:
        """Before a run: every multi-node case can meet its other nodes."""
        nnodes = max(case.nnodes for case in cases)
        if nnodes == 1:
            return
        if self.rdzv_endpoint is None:
            raise UserError(
                f"nnodes = {nnodes}: give --rdzv-endpoint HOST:PORT (a free port on node 0's "
                "host, the same on every node; docs/DISTRIBUTED.md)"
            )
        if self.rdzv_backend == "static" and self.node_rank is None:
            raise UserError("--rdzv-backend static: give --node-rank (0 on the endpoint's host)")
        if self.node_rank is not None and self.node_rank >= nnodes:
            raise UserError(f"--node-rank {self.node_rank}: must be below nnodes = {nnodes}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "rdzv_endpoint": self.rdzv_endpoint,
            "rdzv_backend": self.rdzv_backend,
            "node_rank": self.node_rank,
            "rdzv_id": self.rdzv_id,
        }


def command(
    case: Case, placement: Placement, job_name: str, paths: dict[str, Path], launched_at: float
) -> list[str]:
    """torchrun's command line for one (case, repeat)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={case.nproc}"]
    # A failed rank fails the case: a restart would measure a second attempt as the first.
    cmd += ["--max-restarts=0", "--monitor-interval=0.2"]
    if case.nnodes == 1:
        cmd += ["--standalone"]
    else:
        assert placement.rdzv_endpoint is not None, "Placement.check ran before the sweep"
        cmd += [
            f"--nnodes={case.nnodes}",
            f"--rdzv-backend={placement.rdzv_backend}",
            f"--rdzv-endpoint={placement.rdzv_endpoint}",
            f"--rdzv-id={placement.rdzv_id}-{job_name}",
            # Nodes that start a case apart wait for each other up to the case's limit.
            f"--rdzv-conf=join_timeout={int(case.timeout_s)}",
        ]
        if placement.node_rank is not None:
            cmd += [f"--node-rank={placement.node_rank}"]
    cmd += ["-m", "bench.distributed", str(paths["case"]), str(paths["result"])]
    cmd += [str(paths["result"].parent), job_name, repr(launched_at)]
    return cmd


def rank_errors(log_dir: Path, job_name: str) -> list[dict[str, Any]]:
    """Errors the ranks of a job wrote as they failed, the first failure first."""
    errors = []
    for path in log_dir.glob(f"{job_name}.rank*.error.json"):
        try:
            errors.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # cut off as the rank was killed: torchrun's summary still names it
    return sorted(errors, key=lambda e: e["failed_at"])


def failure(case: Case, log_dir: Path, job_name: str, torchrun_log: Path, exitcode: int | None):
    """Status and reason of a case whose torchrun ended without a result."""
    world = f"of {case.world_size}"
    errors = rank_errors(log_dir, job_name)
    if errors:
        first = errors[0]
        others = sorted(e["rank"] for e in errors[1:])
        after = f" (then rank {', '.join(map(str, others))} too)" if others else ""
        return {
            "status": first["status"],
            "reason": f"rank {first['rank']} {world} failed first{after}:\n{first['reason']}",
        }
    summary = _read(torchrun_log)
    if match := _ROOT_CAUSE.search(summary):
        rank, code, detail = int(match[1]), int(match[2]), match[3].strip()
        how = _signal_name(code) if code < 0 else f"exit code {code}"
        if code < 0 and how == "SIGKILL":
            how += " (by someone else: possibly the kernel's out-of-memory killer)"
        tail = _tail(log_dir / f"{job_name}.rank{rank}.log")
        reason = f"rank {rank} {world} died: {how}"
        if detail and not detail.startswith("To enable traceback"):
            reason += f" ({detail})"
        return {"status": "error", "reason": f"{reason}\n{tail}".rstrip()}
    return {
        "status": "error",
        "reason": f"torchrun exited with code {exitcode} without a result\n{_tail(torchrun_log)}",
    }


def timeout_reason(case: Case, log_dir: Path, job_name: str) -> str:
    """A case that passed ``timeout_s``: no rank failed, so one hung or waited on one that did."""
    lines = []
    for rank in range(case.world_size):
        last = _tail(log_dir / f"{job_name}.rank{rank}.log", 1) or "(nothing logged)"
        lines.append(f"rank {rank}: {last}")
    return (
        f"killed after timeout_s = {case.timeout_s:g} s with {case.world_size} ranks: none "
        "failed, so one hung or waited in a collective for one that did; the ranks' last log "
        "lines:\n" + "\n".join(lines)
    )


def kill_tree(pid: int) -> None:
    """SIGKILL a process, its process group and every descendant's group: torchrun starts its
    ranks in sessions of their own, which killing its group alone would miss."""
    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    groups = {pid}
    for child in descendants:
        try:
            groups.add(os.getpgid(child.pid))
        except ProcessLookupError:
            continue
    groups.discard(os.getpgrp())  # never the launcher's own
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for child in descendants:  # one that changed its group again
        try:
            child.kill()
        except psutil.Error:
            pass


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(_read(path).rstrip().splitlines()[-lines:])
