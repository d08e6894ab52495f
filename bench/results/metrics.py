"""The figures read from a record's ``metrics`` (docs/RESULTS.md), one table for every reader.

Pandas-free, so that ``bench export`` and the report's frame share it without importing each
other's dependencies. Each figure has a path into ``record["metrics"]`` and the rule that reduces
the ok repeats of a case to one value: ``median``, ``max`` (memory peaks: the worst repeat),
``min`` (the largest batch that fitted in every repeat), ``mean`` (a share of repeats, e.g. how
often a target was reached) or ``rate`` (throughput: recomputed from the case's step time).
"""

from dataclasses import dataclass
from typing import Any, Literal

# The categories of ``metrics.profile.shares``, in the order reports show them
# (bench/measure/profile.py assigns ops to them; docs/METHOD.md, Profiles).
PROFILE_CATEGORIES = (
    "matmul",
    "convolution",
    "attention",
    "normalisation",
    "elementwise",
    "optimizer",
    "data copy",
    "other",
)


@dataclass(frozen=True)
class Figure:
    path: tuple[str, ...]
    over_repeats: Literal["median", "max", "min", "mean", "rate", "step"]


METRIC_PATHS_AND_RULES: dict[str, Figure] = {
    "step_time_median_s": Figure(("step_time_s", "median"), "step"),
    "step_time_iqr_s": Figure(("step_time_s", "iqr"), "median"),
    "step_time_ci95_low_s": Figure(("step_time_s", "ci95_low"), "median"),
    "step_time_ci95_high_s": Figure(("step_time_s", "ci95_high"), "median"),
    "step_time_n": Figure(("step_time_s", "n"), "median"),
    "samples_per_s": Figure(("samples_per_s",), "rate"),
    "tokens_per_s": Figure(("tokens_per_s",), "rate"),
    "compile_time_s": Figure(("compile_time_s",), "median"),
    "first_step_s": Figure(("first_step_s",), "median"),
    "peak_alloc_bytes": Figure(("peak_alloc_bytes",), "max"),
    "peak_reserved_bytes": Figure(("peak_reserved_bytes",), "max"),
    "peak_rss_bytes": Figure(("peak_rss_bytes",), "max"),
    "window_rss_rise_bytes": Figure(("memory", "window_rss_rise_bytes"), "max"),
    "lifetime_peak_rss_bytes": Figure(("lifetime_peak_rss_bytes",), "max"),
    "num_params": Figure(("num_params",), "median"),
    "trainable_params": Figure(("trainable_params",), "median"),
    "final_train_loss": Figure(("final_train_loss",), "median"),
    "optimizer_state_bytes": Figure(("optimizer", "state_bytes"), "max"),
    "final_lr": Figure(("optimizer", "final_lr"), "median"),
    "function_evals_per_step": Figure(("optimizer", "function_evals_per_step"), "median"),
    "amp_skipped_steps": Figure(("amp", "num_skipped_steps"), "max"),
    "amp_num_steps": Figure(("amp", "num_steps"), "max"),
    "max_batch_size": Figure(("max_batch_size",), "min"),
    "max_batch_capped": Figure(("max_batch_capped",), "max"),
    "steps_trained": Figure(("steps_trained",), "median"),
    "flops_per_step": Figure(("flops", "per_step"), "median"),
    "achieved_flops_per_s": Figure(("flops", "achieved_per_s"), "median"),
    "mfu": Figure(("flops", "mfu"), "median"),
    "peak_flops_per_s": Figure(("flops", "peak_per_s"), "median"),
    "energy_per_step_j": Figure(("gpu", "energy_per_step_j"), "median"),
    "energy_per_sample_j": Figure(("gpu", "energy_per_sample_j"), "median"),
    "gpu_throttled_fraction": Figure(("gpu", "throttled_fraction"), "max"),
    "data_wait_fraction": Figure(("data_wait_fraction",), "median"),
    "data_wait_s": Figure(("data_wait_s",), "median"),
    "target_reached": Figure(("target", "reached"), "mean"),
    "time_to_target_s": Figure(("target", "time_to_target_s"), "median"),
    "steps_to_target": Figure(("target", "steps_to_target"), "median"),
}
# Text figures: the same over every repeat of a case (the last ok repeat's is kept).
TEXT_PATHS: dict[str, tuple[str, ...]] = {
    "peak_device": ("flops", "peak_device"),
    "peak_dtype": ("flops", "peak_dtype"),
}
METRIC_PATHS: dict[str, tuple[str, ...]] = {
    name: figure.path for name, figure in METRIC_PATHS_AND_RULES.items()
}


def metric_at(metrics: dict[str, Any] | None, path: tuple[str, ...]) -> Any:
    """``metrics[path...]``, None where any step of the path is absent."""
    value: Any = metrics
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def metric_value(record: dict[str, Any], *path: str) -> Any:
    """``record["metrics"][path...]``, None where any step of the path is absent."""
    return metric_at(record.get("metrics"), path)
