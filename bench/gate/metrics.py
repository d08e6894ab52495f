"""What ``bench compare`` compares: each metric's values in a record, and its direction.

Step time and throughput have a value per measured step; the others one value per repeat
(docs/GATING.md, the table of metrics).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.results.metrics import metric_value


@dataclass(frozen=True)
class Metric:
    name: str
    """Key on the command line (``--threshold step_time=3%``) and in the JSON output."""
    label: str
    unit: str
    lower_is_better: bool
    values: Callable[[dict[str, Any]], list[float] | None]
    """The values of one ok record: every step's, or the repeat's one value."""


Values = list[float] | None  # one record's values of a metric; None: not measured


def _per_repeat(*path: str) -> Callable[[dict[str, Any]], Values]:
    """A metric with one value per repeat, at ``metrics[path...]``."""

    def values(record: dict[str, Any]) -> Values:
        value = metric_value(record, *path)
        return None if value is None else [float(value)]

    return values


def _step_times(record: dict[str, Any]) -> Values:
    return (record.get("samples") or {}).get("step_time_s") or None


def _throughput(record: dict[str, Any]) -> Values:
    """Samples/s of every step: the record's samples per step (samples/s times the median step
    time it was computed from) over each step's time."""
    rate = metric_value(record, "samples_per_s")
    median_step = metric_value(record, "step_time_s", "median")
    steps = _step_times(record)
    if rate is None or median_step is None or steps is None:
        return None
    return [rate * median_step / t for t in steps]


def _peak_memory(record: dict[str, Any]) -> Values:
    """The CUDA allocator's peak where there is one, else the worker's peak RSS over the window
    (on a CPU), else its lifetime peak RSS (where the window's could not be reset)."""
    for key in ("peak_alloc_bytes", "peak_rss_bytes", "lifetime_peak_rss_bytes"):
        if (value := metric_value(record, key)) is not None:
            return [float(value)]
    return None


METRICS = (
    Metric("step_time", "step time", "s", True, _step_times),
    Metric("throughput", "throughput", "samples/s", False, _throughput),
    Metric("peak_memory", "peak memory", "B", True, _peak_memory),
    Metric(
        "energy_per_sample",
        "energy per sample",
        "J",
        True,
        _per_repeat("gpu", "energy_per_sample_j"),
    ),
    Metric("compile_time", "compile time", "s", True, _per_repeat("compile_time_s")),
    Metric("final_loss", "final loss", "", True, _per_repeat("final_train_loss")),
    Metric("max_batch_size", "largest batch", "", False, _per_repeat("max_batch_size")),
)
METRIC_NAMES = tuple(m.name for m in METRICS)
METRIC = {m.name: m for m in METRICS}
