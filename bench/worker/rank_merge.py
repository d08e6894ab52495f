"""One record from the results of a distributed case's ranks (pure: no torch).

The rules (docs/DISTRIBUTED.md): throughput is summed over ranks (each trains on its own batch);
the step time is the slowest rank's (every rank waits for it at the gradient exchange), with that
rank's raw samples, so that the statistics match the samples they come from; memory is the
largest rank's; GPU telemetry keeps every device; energy adds up. ``metrics.ranks`` keeps each
rank's own figures, and ``samples.rank_step_time_s`` each rank's raw step times.
"""

from typing import Any

# Per-rank peaks: the case needs as much on every rank as on its largest.
_MAX_KEYS = ("peak_alloc_bytes", "peak_reserved_bytes", "peak_rss_bytes", "lifetime_peak_rss_bytes")
_SUM_KEYS = ("samples_per_s", "tokens_per_s")
# What metrics.ranks keeps of each rank (the rest is the same on every rank, or merged).
_RANK_KEYS = (
    "step_time_s",
    "samples_per_s",
    "tokens_per_s",
    "first_step_s",
    "final_train_loss",
    *_MAX_KEYS,
    "param_checksum_start",
    "param_checksum_end",
    "num_alloc_retries",
    "num_ooms",
)


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The case's result from every rank's (in rank order or not)."""
    results = sorted(results, key=lambda r: r["rank"]["rank"])
    first = results[0]
    not_ok = [r for r in results if r["status"] != "ok"]
    if not_ok:
        # The same on every rank (a skip decided before any collective); else name the rank.
        worst = not_ok[0]
        outcome = (worst["status"], worst["reason"])
        same = all((r["status"], r["reason"]) == outcome for r in results)
        reason = worst["reason"] if same else f"rank {worst['rank']['rank']}: {worst['reason']}"
        return {"status": worst["status"], "reason": reason, "timing": _timing(results)}
    metrics = [r["metrics"] for r in results]
    slowest = max(range(len(results)), key=lambda i: metrics[i]["step_time_s"]["median"])
    merged = dict(metrics[0])  # eval, num_params, optimizer, flops base: rank 0's
    median = metrics[slowest]["step_time_s"]["median"]
    merged["step_time_s"] = metrics[slowest]["step_time_s"]
    for key in _SUM_KEYS:
        values = [m.get(key) for m in metrics]
        merged[key] = None if None in values else sum(values)
    for key in _MAX_KEYS:
        values = [m[key] for m in metrics if m.get(key) is not None]
        merged[key] = max(values) if values else None
    merged["first_step_s"] = max(m["first_step_s"] for m in metrics)
    if merged.get("compile_time_s") is not None:
        merged["compile_time_s"] = merged["first_step_s"] - median
    merged["window_s"] = max(m["window_s"] for m in metrics)
    losses = [m["final_train_loss"] for m in metrics]
    merged["final_train_loss"] = None if None in losses else sum(losses) / len(losses)
    merged["optimizer"] = _optimizer(metrics)
    merged["flops"] = _flops(metrics[0].get("flops"), len(results), median)
    if "gpu" in merged:
        merged["gpu"] = _gpu([m["gpu"] for m in metrics], len(results))
    if "host" in merged:
        merged["host"] = _host([m["host"] for m in metrics])
    merged.pop("param_checksum_start", None)
    merged.pop("param_checksum_end", None)
    merged["slowest_rank"] = slowest
    merged["ranks"] = [
        {**r["rank"], **{key: m.get(key) for key in _RANK_KEYS}} for r, m in zip(results, metrics)
    ]
    samples = dict(first["samples"])
    samples["step_time_s"] = results[slowest]["samples"]["step_time_s"]
    samples["loss"] = _mean_losses([r["samples"]["loss"] for r in results])
    samples["rank_step_time_s"] = [r["samples"]["step_time_s"] for r in results]
    samples["telemetry"] = _telemetry([r["samples"].get("telemetry") or {} for r in results])
    runtime = dict(first["runtime"])
    runtime["distributed"] = {
        "world_size": len(results),
        "backend": first["rank"]["backend"],
        "hosts": sorted({r["rank"]["host"] for r in results}),
        "threads_per_rank": [r["runtime"].get("threads") for r in results],
    }
    flags = list(dict.fromkeys(flag for r in results for flag in r.get("flags", [])))
    return {
        "status": "ok",
        "reason": None,
        "runtime": runtime,
        "metrics": merged,
        "samples": samples,
        "flags": flags,
        "timing": _timing(results),
    }


def _timing(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Each phase as long as its slowest rank's: the case waits for it."""
    keys = dict.fromkeys(k for r in results for k in r.get("timing", {}))
    merged = {}
    for key in keys:
        # A phase the case does not have is null on every rank (``pretrain_s`` without one).
        values = [r["timing"][key] for r in results if r.get("timing", {}).get(key) is not None]
        merged[key] = max(values) if values else None
    return merged


def _optimizer(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    optimizer = dict(metrics[0]["optimizer"])
    # Per rank (FSDP shards it): the largest rank's, as for memory.
    optimizer["state_bytes"] = max(m["optimizer"]["state_bytes"] for m in metrics)
    return optimizer


def _flops(flops: dict[str, Any] | None, world_size: int, median_s: float) -> dict | None:
    """The whole step's FLOPs (every rank's batch) at the slowest rank's pace, against the peak
    of all the ranks' devices together."""
    if flops is None or flops.get("per_step") is None:
        return flops
    merged = dict(flops)
    merged["per_step"] = flops["per_step"] * world_size
    if flops.get("analytic_per_step") is not None:
        merged["analytic_per_step"] = flops["analytic_per_step"] * world_size
    merged["achieved_per_s"] = merged["per_step"] / median_s
    if flops.get("peak_per_s"):
        merged["peak_per_s"] = flops["peak_per_s"] * world_size
        merged["mfu"] = merged["achieved_per_s"] / merged["peak_per_s"]
    return merged


def _gpu(summaries: list[dict[str, Any]], world_size: int) -> dict[str, Any]:
    """Every rank's devices; energy summed over them."""
    unavailable = [s for s in summaries if not s["available"]]
    if unavailable:
        return unavailable[0]  # null figures with the reason: no total from part of the devices
    merged = dict(summaries[0])
    merged["devices"] = [d for s in summaries for d in s["devices"]]
    energies = [s["energy_j"] for s in summaries]
    if None in energies:
        for key in ("energy_j", "energy_source", "energy_per_step_j", "energy_per_sample_j"):
            merged[key] = None
    else:
        merged["energy_j"] = sum(energies)
        merged["energy_per_step_j"] = sum(s["energy_per_step_j"] for s in summaries)
        # Every rank trained as many samples per step: the case's samples are world_size times.
        merged["energy_per_sample_j"] = sum(s["energy_per_sample_j"] for s in summaries) / (
            world_size
        )
        sources = {s["energy_source"] for s in summaries}
        merged["energy_source"] = "integrated_power" if "integrated_power" in sources else "counter"
    throttled = [s["throttled_fraction"] for s in summaries if s["throttled_fraction"] is not None]
    merged["throttled_fraction"] = max(throttled) if throttled else None
    return merged


def _host(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The ranks' processes together: CPU time and resident memory add up."""
    merged = dict(summaries[0])
    for key in ("process_cpu_percent_mean", "process_cpu_percent_max", "rss_sampled_peak_bytes"):
        values = [s.get(key) for s in summaries]
        merged[key] = None if None in values else sum(values)
    merged["rss_start_bytes"] = None
    return merged


def _mean_losses(curves: list[list[list[Any]]]) -> list[list[Any]]:
    """Per block (the same blocks on every rank): the ranks' mean loss, i.e. the loss of the
    whole step's batch (every rank's batch has the same size)."""
    merged = []
    for points in zip(*curves):
        values = [loss for _, loss in points]
        merged.append([points[0][0], None if None in values else sum(values) / len(values)])
    return merged


def _telemetry(timelines: list[dict[str, Any]]) -> dict[str, Any]:
    """GPU timelines of every device; the host timeline of rank 0, and of every rank apart."""
    return {
        "host": timelines[0].get("host"),
        "host_per_rank": [t.get("host") for t in timelines],
        "gpu": [g for t in timelines for g in (t.get("gpu") or [])],
    }
