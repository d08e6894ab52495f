"""torchrun's side of a distributed case that the launcher needs without torch: where the
nodes meet, why a case failed, and how to reap every process of it.

A case with more than one rank runs torchrun's agent (bench/worker/distributed.py's ``launch``,
through torch.distributed.run's API) in a process forked from the launcher's fork server. One node:
torchrun's ``--standalone`` rendezvous on a free local port. Several nodes: every node runs the
same sweep, and each case's agent meets the other nodes' at the :class:`Placement`'s endpoint,
under a rendezvous id made of the case id and repeat, which is the same on every node.

A failed case becomes a record whose reason names the rank: a rank that raised leaves its error
(``<job>.rankN.error.json``); one that died (a signal, the OOM killer) is named by the agent.
"""

import json
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psutil

from bench.errors import UserError
from bench.spec.case import Case

RDZV_BACKENDS = ("c10d", "static")
# What a collective raises on a rank whose peer died: gloo (transport/tcp/pair.cc) and NCCL.
_PEER_LOST = (
    "Connection closed by peer",
    "Connection reset by peer",
    "remote process exited",
    "NCCL communicator was aborted",
)
_ENDPOINT = re.compile(r"^\[?[A-Za-z0-9_.:-]+\]?:\d{1,5}$")


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
        if self.rdzv_endpoint is not None and not (
            _ENDPOINT.match(self.rdzv_endpoint)
            and 1 <= int(self.rdzv_endpoint.rsplit(":", 1)[1]) <= 65535
        ):
            raise UserError(
                f"--rdzv-endpoint {self.rdzv_endpoint!r}: give HOST:PORT with a port from 1 to "
                "65535, e.g. node0:29500"
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


def rank_errors(log_dir: Path, job_name: str) -> list[dict[str, Any]]:
    """Errors the ranks of a job wrote as they failed, the first failure first."""
    errors = []
    for path in log_dir.glob(f"{job_name}.rank*.error.json"):
        try:
            errors.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # cut off as the rank was killed: torchrun's summary still names it
    return sorted(errors, key=lambda e: e["failed_at"])


def failure(
    case: Case,
    log_dir: Path,
    job_name: str,
    failures: dict[int, dict[str, Any]],
    first: int,
) -> dict[str, Any]:
    """Status and reason of a case whose ranks failed, naming the rank that failed first.

    ``failures``: the agent's view, rank -> ``exitcode`` and ``signal`` (its name when a signal
    ended the rank); ``first``: the first rank it saw fail. The agent may see only one rank end
    before it stops the others (with SIGTERM), so the ranks' own errors decide when they can:
    the first error that is not a lost peer names the rank; when every error is a lost peer,
    the cause is a rank that left none (killed by a signal)."""
    world = f"of {case.world_size}"
    errors = rank_errors(log_dir, job_name)
    # Ranks that ended on their own without an error file: a signal other than the agent's
    # SIGTERM, or an exit code (os._exit in the model's code, a native library's exit).
    with_error = {e["rank"] for e in errors}
    killed = [
        rank
        for rank, info in sorted(failures.items())
        if info["signal"] not in (None, "SIGTERM")
        or (info["signal"] is None and rank not in with_error)
    ]
    own = [e for e in errors if not _lost_peer(e["reason"])]
    if own and not killed:
        first_error = own[0]
        others = sorted(e["rank"] for e in errors if e is not first_error)
        after = f" (then rank {', '.join(map(str, others))} too)" if others else ""
        return {
            "status": first_error["status"],
            "reason": f"rank {first_error['rank']} {world} failed first{after}:\n"
            f"{first_error['reason']}",
        }
    silent = [r for r in range(case.world_size) if r not in {e["rank"] for e in errors}]
    if killed or not errors or not silent:
        rank = killed[0] if killed else first
        how = failures[rank]["signal"] or f"exit code {failures[rank]['exitcode']}"
        if how == "SIGKILL":
            how += " (by someone else: possibly the kernel's out-of-memory killer)"
        tail = _tail(log_dir / f"{job_name}.rank{rank}.log")
        return {"status": "error", "reason": f"rank {rank} {world} died: {how}\n{tail}".rstrip()}
    names = ", ".join(map(str, silent))
    lost = errors[0]
    last = (lost["reason"].strip().splitlines() or [""])[-1]
    return {
        "status": "error",
        "reason": f"rank {names} {world} died without an error of its own (an exit code or a "
        "signal the agent did not report, as it saw rank "
        f"{first} end first: an os._exit in the model's code, a kill from outside, the kernel's "
        f"out-of-memory killer); rank {lost['rank']} then lost it:\n{last}",
    }


def _lost_peer(reason: str) -> bool:
    """An error that says only that another rank went away (gloo's and NCCL's words for it)."""
    return any(words in reason for words in _PEER_LOST)


def timeout_reason(case: Case, log_dir: Path, job_name: str) -> str:
    """A case that passed ``timeout_s``: no rank failed, so one hung or waited on one that did."""
    logs = [log_dir / f"{job_name}.rank{rank}.log" for rank in range(case.world_size)]
    if not any(log.exists() for log in logs):
        return (
            f"killed after timeout_s = {case.timeout_s:g} s with no rank started: the agent "
            "never got past the rendezvous (the nodes never met) or hung before starting them"
        )
    lines = []
    for rank in range(case.world_size):
        last = _tail(log_dir / f"{job_name}.rank{rank}.log", 1) or "(nothing logged)"
        lines.append(f"rank {rank}: {last}")
    return (
        f"killed after timeout_s = {case.timeout_s:g} s with {case.world_size} ranks: none "
        "failed, so one hung or waited in a collective for one that did; the ranks' last log "
        "lines:\n" + "\n".join(lines)
    )


def kill_tree(pid: int, descendants: bool = True) -> None:
    """SIGKILL a process's group and, with ``descendants`` (only while the process runs: the pid
    of one that exited may belong to another process by now), every descendant's group, for
    children that moved to groups or sessions of their own."""
    try:
        children = psutil.Process(pid).children(recursive=True) if descendants else []
    except psutil.Error:
        children = []
    groups = {pid}
    for child in children:
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
    for child in children:  # one that changed its group again
        try:
            child.kill()
        except psutil.Error:
            pass


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(_read(path).rstrip().splitlines()[-lines:])
