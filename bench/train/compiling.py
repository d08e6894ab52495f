"""``torch.compile`` with the case's mode and options, and what dynamo did, from its counters."""

import logging
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch._dynamo.utils import counters

from bench.run.launcher import cold_cache_prefix
from bench.spec.case import Case


def use_cold_cache() -> str:
    """Point inductor at a fresh, empty cache directory, so that the first step pays the whole
    compile. Must run before the first compile of the process; returns the directory, named for
    this process (the launcher removes it after the process, however it ended)."""
    directory = tempfile.mkdtemp(prefix=cold_cache_prefix(os.getpid()))
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = directory
    return directory


F = TypeVar("F", bound=Callable[..., Any])


def wrap(target: F, case: Case) -> F:
    """``target`` as the case trains it: itself in eager, else compiled with the case's mode,
    ``fullgraph`` and ``dynamic``."""
    if case.compile == "eager":
        return target
    watch_recompiles()
    return torch.compile(  # type: ignore[return-value]
        target, mode=case.compile, fullgraph=bool(case.fullgraph), dynamic=case.dynamic
    )


# Dynamo's guard failures, one line each, as its "recompiles" log reports them.
_RECOMPILE_LOG = "torch._dynamo.guards.__recompiles"
_recompile_reasons: Counter[str] = Counter()


class _RecompileReasons(logging.Handler):
    """Collects the reasons of each recompile from dynamo's message: ``Recompiling function f in
    file:line`` then ``triggered by the following guard failure(s):`` and a ``- reason`` line
    per failed guard."""

    def emit(self, record: logging.LogRecord) -> None:
        for line in record.getMessage().splitlines():
            if line.strip().startswith("- "):
                # "- 0/0: tensor 'x' size mismatch ...": the frame's compile id is dropped.
                _recompile_reasons[re.sub(r"^\d+/\d+: ", "", line.strip()[2:])] += 1


def watch_recompiles() -> None:
    """Turn on dynamo's recompile reporting (torch._logging's ``recompiles`` artifact, also
    printed to the case's log) and collect its reasons in this process; idempotent."""
    logger = logging.getLogger(_RECOMPILE_LOG)
    if not any(isinstance(h, _RecompileReasons) for h in logger.handlers):
        torch._logging.set_logs(recompiles=True)
        logger.addHandler(_RecompileReasons())


def frames_compiled() -> int:
    """Frames dynamo has compiled in this process so far (a new one after the first step is a
    recompile: a guard failed, e.g. on a new shape)."""
    return counters["frames"]["total"]


def stats(case: Case, frames_after_first_step: int) -> dict[str, Any]:
    """What compilation did in this process, for the record's ``runtime.compile``."""
    if case.compile == "eager":
        return {"mode": "eager", "cache": None}
    breaks: Counter[str] = Counter()
    for reason, count in counters["graph_break"].items():
        # Only the first line of each reason: the rest is dynamo's hints and debug context.
        breaks[reason.splitlines()[0]] += count
    hits = counters["inductor"]["fxgraph_cache_hit"]
    misses = counters["inductor"]["fxgraph_cache_miss"]
    return {
        "mode": case.compile,
        "scope": case.compile_scope,
        "num_graphs": counters["stats"]["unique_graphs"],
        "num_graph_breaks": sum(breaks.values()),
        "graph_break_reasons": sorted(breaks),
        "graph_break_counts": dict(breaks.most_common()),
        "num_recompiles": frames_compiled() - frames_after_first_step,
        "recompile_reasons": dict(_recompile_reasons.most_common()),
        # Warm when inductor's FX graph cache (on disk, shared across processes) served every
        # graph it was asked for; cold when it had to compile any.
        "cache": "warm" if hits and not misses else "cold",
        "fxgraph_cache_hits": hits,
        "fxgraph_cache_misses": misses,
    }
