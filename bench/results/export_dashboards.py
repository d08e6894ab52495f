"""A run for the dashboards CI jobs already feed: github-action-benchmark's custom JSON and
Bencher's Metric Format (BMF). Neither tool is a Python package; the formats are their documented
ones (docs/RESULTS.md, Exports):

- github-action-benchmark (``tool: customSmallerIsBetter`` / ``customBiggerIsBetter``): a JSON
  array of ``{"name", "unit", "value", "range", "extra"}``, one file per direction: step time
  (ms) and peak memory (MiB) are smaller-is-better, throughput (samples/s) bigger-is-better.
- Bencher (``bencher run --adapter json --file FILE``): ``{benchmark: {measure: {"value",
  "lower_value", "upper_value"}}}``; step time as the built-in ``latency`` measure (its unit is
  nanoseconds), samples/s as the built-in ``throughput`` (operations per second), peak memory as
  ``peak-memory`` (bytes).

Each figure of a case is over its ok repeats, pooled: the median step time with its 95%
interval (bench.statistics), throughput from it, the largest peak memory. Torch-free.
"""

from typing import Any

from bench.results.export import RunCases, combine
from bench.results.metrics import METRIC_PATHS
from bench.statistics import summarize

MIB = 2**20


def step_summary(ok: list[dict[str, Any]]):
    return summarize([t for r in ok for t in r["samples"]["step_time_s"]])


def samples_per_step(ok: list[dict[str, Any]]) -> float | None:
    """Samples per step: a record's samples/s times the median step time it came from."""
    for record in ok:
        rate = (record.get("metrics") or {}).get("samples_per_s")
        step = ((record.get("metrics") or {}).get("step_time_s") or {}).get("median")
        if rate and step:
            return rate * step
    return None


def peak_memory(ok: list[dict[str, Any]]) -> float | None:
    for key in ("peak_alloc_bytes", "peak_rss_bytes", "lifetime_peak_rss_bytes"):
        if (value := combine(ok, METRIC_PATHS[key], max)) is not None:
            return value
    return None


def _extra(run: RunCases, case_id: str, ok: list[dict[str, Any]]) -> str:
    git = run.env.get("git") or {}
    commit = (git.get("commit") or "unknown")[:12] + (" (dirty)" if git.get("dirty") else "")
    device = (ok[0].get("runtime") or {}).get("device_name")
    return f"case {case_id}; {len(ok)} repeats; commit {commit}; device {device}"


def github_action_benchmark(run: RunCases) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The customSmallerIsBetter and customBiggerIsBetter arrays of a run."""
    smaller, bigger = [], []
    for case_id, (_, ok) in run.cases.items():
        name, extra = run.name(case_id), _extra(run, case_id, ok)
        steps = step_summary(ok)
        half = None
        if steps.ci95_low is not None and steps.ci95_high is not None:
            half = max(steps.median - steps.ci95_low, steps.ci95_high - steps.median)
        smaller.append(
            {
                "name": f"{name} step time",
                "unit": "ms",
                "value": steps.median * 1e3,
                "range": f"± {half * 1e3:.4g}" if half is not None else "",
                "extra": f"{extra}; median of {steps.n} steps, range: its 95% interval",
            }
        )
        if (memory := peak_memory(ok)) is not None:
            smaller.append(
                {
                    "name": f"{name} peak memory",
                    "unit": "MiB",
                    "value": memory / MIB,
                    "extra": f"{extra}; largest over repeats",
                }
            )
        if (per_step := samples_per_step(ok)) is not None:
            bigger.append(
                {
                    "name": f"{name} throughput",
                    "unit": "samples/s",
                    "value": per_step / steps.median,
                    "extra": f"{extra}; samples per step over the median step time",
                }
            )
    return smaller, bigger


def bencher(run: RunCases) -> dict[str, dict[str, dict[str, float]]]:
    """The run as Bencher Metric Format JSON."""
    document: dict[str, dict[str, dict[str, float]]] = {}
    for case_id, (_, ok) in run.cases.items():
        steps = step_summary(ok)
        latency = {"value": steps.median * 1e9}
        if steps.ci95_low is not None and steps.ci95_high is not None:
            latency |= {"lower_value": steps.ci95_low * 1e9, "upper_value": steps.ci95_high * 1e9}
        measures: dict[str, dict[str, float]] = {"latency": latency}
        if (per_step := samples_per_step(ok)) is not None:
            # The slowest and fastest step times of the interval bound the throughput.
            throughput = {"value": per_step / steps.median}
            if "lower_value" in latency:
                throughput |= {
                    "lower_value": per_step / steps.ci95_high,
                    "upper_value": per_step / steps.ci95_low,
                }
            measures["throughput"] = throughput
        if (memory := peak_memory(ok)) is not None:
            measures["peak-memory"] = {"value": float(memory)}
        document[run.name(case_id)] = measures
    return document
