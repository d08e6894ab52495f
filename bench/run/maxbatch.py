"""``batch_size = "max"``: the largest batch that fits on the device, found by probing.

Doubling from the workload's default batch until a probe runs out of memory (or the case's
``max_batch_limit`` is reached), halving instead when the default itself does not fit, then
bisecting between the largest batch that fitted and the smallest that did not. Each probe is a
short real run (a few training steps) in its own process, so an out-of-memory leaves nothing
behind; every probe becomes a record flagged ``max_batch_probe``. Torch-free: probes run through
the launcher.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

from bench.run.launcher import Job
from bench.spec.case import Case
from bench.spec.catalog import workload_info
from bench.spec.choices import CUDAGRAPH_MODES

# Enough steps to reach the steady state's memory (optimizer state exists after the first step;
# CUDA-graph modes record their graphs in the first two after compiling).
_PROBE_STEPS = 3


def probe_case(case: Case, batch_size: int) -> Case:
    """The case at one batch size, run just long enough to reach its peak memory."""
    warmup = 2 if case.compile in CUDAGRAPH_MODES else 1
    return dataclasses.replace(
        case,
        batch_size=batch_size,
        warmup_steps=warmup,
        min_steps=_PROBE_STEPS,
        max_steps=_PROBE_STEPS,
        min_time_s=0.0,
        max_time_s=min(case.max_time_s, 60.0),
        repeats=1,
    )


def search(
    job: Job,
    run: Callable[[Job], dict[str, Any]],
    on_probe: Callable[[Job, dict[str, Any]], None],
) -> dict[str, Any]:
    """Probe ``job``'s case at batch sizes until the largest that fits is known; returns the
    result of the search, for the "max" case's own record."""
    case = job.case
    limit = case.max_batch_limit
    batch = min(workload_info(case.workload).default_batch_size, limit)
    fits: int | None = None  # the largest batch that ran
    fails: int | None = None  # the smallest batch that ran out of memory
    probes: list[list[Any]] = []
    results: dict[int, dict[str, Any]] = {}
    while True:
        probe = Job(probe_case(case, batch), job.repeat, probe=True)
        result = run(probe)
        on_probe(probe, result)
        probes.append([batch, result["status"]])
        if result["status"] == "ok":
            fits = batch
            results[batch] = result
        elif result["status"] == "oom":
            fails = batch
        else:
            return {
                "status": result["status"],
                "reason": f"probe at batch_size = {batch}: {result.get('reason')}",
                "metrics": {"probes": probes},
            }
        if fails is None:  # everything so far fitted: double, up to the limit
            if batch >= limit:
                break
            batch = min(2 * batch, limit)
        elif fits is None:  # nothing has fitted yet: halve
            if batch == 1:
                break
            batch //= 2
        elif fails - fits <= 1:
            break
        else:
            batch = (fits + fails) // 2
    if fits is None:
        return {
            "status": "oom",
            "reason": "not even batch_size = 1 fits on the device",
            "metrics": {"probes": probes},
        }
    best = results[fits]["metrics"]
    return {
        "status": "ok",
        "reason": None,
        "runtime": results[fits].get("runtime", {}),
        "metrics": {
            "max_batch_size": fits,
            # No probe ran out of memory: the device may hold more than the search's limit.
            "max_batch_capped": fails is None,
            "num_probes": len(probes),
            "probes": probes,
            "num_params": best.get("num_params"),
            "peak_alloc_bytes": best.get("peak_alloc_bytes"),
            "peak_reserved_bytes": best.get("peak_reserved_bytes"),
            "peak_rss_bytes": best.get("peak_rss_bytes"),
            # From the probe's few steps: a rough figure, not a measured window.
            "probe_samples_per_s": best.get("samples_per_s"),
        },
    }
