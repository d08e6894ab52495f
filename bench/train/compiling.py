"""``torch.compile`` with the case's mode and options, and what dynamo did, from its counters."""

import os
import tempfile
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch._dynamo.utils import counters

from bench.spec.case import Case


def use_cold_cache() -> str:
    """Point inductor at a fresh, empty cache directory, so that the first step pays the whole
    compile. Must run before the first compile of the process; returns the directory."""
    directory = tempfile.mkdtemp(prefix="bench-inductor-cold-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = directory
    return directory


F = TypeVar("F", bound=Callable[..., Any])


def wrap(target: F, case: Case) -> F:
    """``target`` as the case trains it: itself in eager, else compiled with the case's mode,
    ``fullgraph`` and ``dynamic``."""
    if case.compile == "eager":
        return target
    return torch.compile(  # type: ignore[return-value]
        target, mode=case.compile, fullgraph=bool(case.fullgraph), dynamic=case.dynamic
    )


def frames_compiled() -> int:
    """Frames dynamo has compiled in this process so far (a new one after the first step is a
    recompile: a guard failed, e.g. on a new shape)."""
    return counters["frames"]["total"]


def stats(case: Case, frames_after_first_step: int) -> dict[str, Any]:
    """What compilation did in this process, for the record's ``runtime.compile``."""
    if case.compile == "eager":
        return {"mode": "eager", "cache": None}
    breaks = dict(counters["graph_break"])
    hits = counters["inductor"]["fxgraph_cache_hit"]
    misses = counters["inductor"]["fxgraph_cache_miss"]
    return {
        "mode": case.compile,
        "scope": case.compile_scope,
        "num_graphs": counters["stats"]["unique_graphs"],
        "num_graph_breaks": sum(breaks.values()),
        # Only the first line of each reason: the rest is dynamo's hints and debug context.
        "graph_break_reasons": sorted({reason.splitlines()[0] for reason in breaks}),
        "num_recompiles": frames_compiled() - frames_after_first_step,
        # Warm when inductor's FX graph cache (on disk, shared across processes) served every
        # graph it was asked for; cold when it had to compile any.
        "cache": "warm" if hits and not misses else "cold",
        "fxgraph_cache_hits": hits,
        "fxgraph_cache_misses": misses,
    }
