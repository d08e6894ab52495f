"""``torch.compile`` around the training module, and what dynamo did, read from its counters."""

from typing import Any

import torch
from torch import nn
from torch._dynamo.utils import counters


def wrap(module: nn.Module, mode: str) -> nn.Module:
    """The module to train with: itself in eager, else ``torch.compile(module, mode=mode)``."""
    if mode == "eager":
        return module
    return torch.compile(module, mode=mode)  # type: ignore[return-value]


def frames_compiled() -> int:
    """Frames dynamo has compiled in this process so far (a new one after the first step is a
    recompile: a guard failed, e.g. on a new shape)."""
    return counters["frames"]["total"]


def stats(mode: str, frames_after_first_step: int) -> dict[str, Any]:
    """What compilation did in this process, for the record's ``runtime.compile``."""
    if mode == "eager":
        return {"mode": mode, "cache": None}
    breaks = dict(counters["graph_break"])
    hits = counters["inductor"]["fxgraph_cache_hit"]
    misses = counters["inductor"]["fxgraph_cache_miss"]
    return {
        "mode": mode,
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
