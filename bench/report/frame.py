"""The tidy frame of records (one row per case x repeat) and its aggregate (one row per case).

Columns of :func:`records_frame`: ``RECORD_COLUMNS``, then every config key, then
``METRIC_COLUMNS``, then ``eval_<key>`` for each key of ``metrics.eval``. Metrics are float64,
NaN where a record has none (every non-ok record, and e.g. ``peak_alloc_bytes`` on CPU).
"""

from collections.abc import Iterable
from dataclasses import fields
from typing import Any

import pandas as pd

from bench.config import COMPILE_ONLY_KEYS, RUN_LENGTH_KEYS, Case
from bench.store import PROBE_FLAG

RECORD_COLUMNS = ["run_id", "suite", "case_id", "repeat", "status", "reason"]
# Column name -> path into the record's `metrics` (docs/RESULTS.md).
METRIC_PATHS: dict[str, tuple[str, ...]] = {
    "step_time_median_s": ("step_time_s", "median"),
    "step_time_iqr_s": ("step_time_s", "iqr"),
    "step_time_ci95_low_s": ("step_time_s", "ci95_low"),
    "step_time_ci95_high_s": ("step_time_s", "ci95_high"),
    "step_time_n": ("step_time_s", "n"),
    "samples_per_s": ("samples_per_s",),
    "tokens_per_s": ("tokens_per_s",),
    "compile_time_s": ("compile_time_s",),
    "first_step_s": ("first_step_s",),
    "peak_alloc_bytes": ("peak_alloc_bytes",),
    "peak_reserved_bytes": ("peak_reserved_bytes",),
    "peak_rss_bytes": ("peak_rss_bytes",),
    "num_params": ("num_params",),
    "final_train_loss": ("final_train_loss",),
    "optimizer_state_bytes": ("optimizer", "state_bytes"),
    "final_lr": ("optimizer", "final_lr"),
    "function_evals_per_step": ("optimizer", "function_evals_per_step"),
    "amp_skipped_steps": ("amp", "num_skipped_steps"),
    "max_batch_size": ("max_batch_size",),
    "steps_trained": ("steps_trained",),
}
METRIC_COLUMNS = list(METRIC_PATHS)
EVAL_PREFIX = "eval_"
# The settings that tell cases apart. Run-length keys (how long to measure) are not axes.
AXIS_KEYS = [f.name for f in fields(Case) if f.name not in RUN_LENGTH_KEYS]
CONFIG_ORDER = [f.name for f in fields(Case)]

# How each metric of the ok repeats of a case is reduced to the case's value in `aggregate`.
MEDIAN_OVER_REPEATS = [
    "compile_time_s",
    "first_step_s",
    "num_params",
    "final_train_loss",
    "final_lr",
    "function_evals_per_step",
    "steps_trained",
]
MAX_OVER_REPEATS = [
    "peak_alloc_bytes",
    "peak_reserved_bytes",
    "peak_rss_bytes",
    "optimizer_state_bytes",
    "amp_skipped_steps",
]
# The largest batch found may differ between repeats: the smallest is the one that always fit.
MIN_OVER_REPEATS = ["max_batch_size"]


def records_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per record (search probes left out): ids, status, flags, every config key,
    flattened metrics."""
    rows = [_flatten(record) for record in records if PROBE_FLAG not in record.get("flags", [])]
    config_keys = _ordered_union(row["config"] for row in rows)
    eval_keys = _ordered_union(row["eval"] for row in rows)
    frame = pd.DataFrame(
        [{**row["record"], **row["config"], **row["metrics"], **row["eval"]} for row in rows],
        columns=[
            *RECORD_COLUMNS,
            "flags",
            "compile_cache_state",
            *config_keys,
            *METRIC_COLUMNS,
            *eval_keys,
        ],
    )
    numeric = [*METRIC_COLUMNS, *eval_keys]
    frame[numeric] = frame[numeric].astype("float64")
    return frame


def _flatten(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    metrics = record.get("metrics") or {}
    return {
        "record": {
            **{key: record.get(key) for key in RECORD_COLUMNS},
            "flags": ", ".join(record.get("flags") or []),
            "compile_cache_state": ((record.get("runtime") or {}).get("compile") or {}).get(
                "cache"
            ),
        },
        "config": record["config"],
        "metrics": {column: _lookup(metrics, path) for column, path in METRIC_PATHS.items()},
        "eval": {EVAL_PREFIX + key: value for key, value in (metrics.get("eval") or {}).items()},
    }


def _lookup(metrics: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = metrics
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _ordered_union(dicts: Iterable[dict[str, Any]]) -> list[str]:
    """Keys of all dicts; the Case's fields first in their own order, then the rest as found."""
    seen = dict.fromkeys(key for d in dicts for key in d)
    return [key for key in CONFIG_ORDER if key in seen] + [k for k in seen if k not in CONFIG_ORDER]


def eval_columns(frame: pd.DataFrame) -> list[str]:
    """The ``eval_<key>`` metric columns (``eval_batches`` is a config key, not a metric)."""
    return [c for c in frame.columns if c.startswith(EVAL_PREFIX) and c not in CONFIG_ORDER]


def config_columns(frame: pd.DataFrame) -> list[str]:
    """The frame's config-key columns that this version of :class:`Case` knows."""
    return [c for c in frame.columns if c in CONFIG_ORDER]


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (suite, case_id), reduced over the repeats whose status is ``ok``.

    ``step_time_s`` is the median of the repeats' median step times; ``repeat_min_s`` and
    ``repeat_max_s`` bound those medians and ``repeat_spread`` is (max - min) / median;
    ``step_time_iqr_s`` is the median of the within-repeat IQRs. Throughput, compile time,
    losses and eval metrics are medians over repeats; peak memory is the max over repeats.
    ``status`` is ``ok`` when every repeat is ok, ``partial`` when some are, else the last
    record's status. ``failed_status`` and ``reason`` are those of the last record that is not
    ok (None when every repeat is ok).
    """
    keys = ["suite", "case_id"]
    cases = frame.drop_duplicates(keys)[keys]
    last = frame.drop_duplicates(keys, keep="last")[[*keys, "run_id", *config_columns(frame)]]
    failed = frame[frame["status"] != "ok"].drop_duplicates(keys, keep="last")
    counts = frame.groupby(keys, sort=False)["status"].agg(
        num_ok=lambda status: int((status == "ok").sum()), num_repeats="size"
    )
    agg = (
        cases.merge(last, on=keys, how="left")
        .merge(counts.reset_index(), on=keys, how="left")
        .merge(_ok_stats(frame[frame["status"] == "ok"]), on=keys, how="left")
        .merge(failed[[*keys, "status", "reason"]], on=keys, how="left")
        .rename(columns={"status": "failed_status"})
    )
    agg["status"] = agg["failed_status"].where(agg["num_ok"] == 0, "partial")
    agg.loc[agg["num_ok"] == agg["num_repeats"], "status"] = "ok"
    leading = [*keys, "run_id", "status", "failed_status", "reason", "num_ok", "num_repeats"]
    return agg[leading + [c for c in agg.columns if c not in leading]]


def _ok_stats(ok: pd.DataFrame) -> pd.DataFrame:
    median_s = "step_time_median_s"
    stats = ok.groupby(["suite", "case_id"], sort=False).agg(
        step_time_s=(median_s, "median"),
        repeat_min_s=(median_s, "min"),
        repeat_max_s=(median_s, "max"),
        step_time_iqr_s=("step_time_iqr_s", "median"),
        **{column: (column, "median") for column in MEDIAN_OVER_REPEATS},
        **{column: (column, "max") for column in MAX_OVER_REPEATS},
        **{column: (column, "min") for column in MIN_OVER_REPEATS},
        flags=("flags", _union_of_flags),
        **{column: (column, "median") for column in eval_columns(ok)},
    )
    stats.insert(
        3, "repeat_spread", (stats["repeat_max_s"] - stats["repeat_min_s"]) / stats["step_time_s"]
    )
    # Throughput from the case's step time, as each record's is from its own: a median of
    # per-repeat rates would not match the step time shown beside it (with two repeats it is
    # their mean, and 1/mean(t) != mean(1/t)).
    per_step = (
        ok.assign(
            samples=ok["samples_per_s"] * ok[median_s], tokens=ok["tokens_per_s"] * ok[median_s]
        )
        .groupby(["suite", "case_id"], sort=False)[["samples", "tokens"]]
        .median()
    )
    stats["samples_per_s"] = per_step["samples"] / stats["step_time_s"]
    stats["tokens_per_s"] = per_step["tokens"] / stats["step_time_s"]
    stats["compile_cache_state"] = ok.groupby(["suite", "case_id"], sort=False)[
        "compile_cache_state"
    ].agg(_cache_states)
    return stats.reset_index()


def _cache_states(states: pd.Series) -> str | None:
    """warm, cold, or "cold, warm" when repeats differ (the first compile fills the cache)."""
    known = sorted({state for state in states if isinstance(state, str)})
    return ", ".join(known) or None


def _union_of_flags(flags: pd.Series) -> str:
    """Every flag any ok repeat of a case carries (a recompile in one repeat taints the case)."""
    return ", ".join(sorted({flag for text in flags if text for flag in text.split(", ")}))


def varying_axes(frame: pd.DataFrame) -> list[str]:
    """Config keys (run length excluded) that take more than one value within some suite.

    Works on :func:`records_frame` and :func:`aggregate` output alike. None and NaN do not count
    as a value: ``seq_len`` is None for every ``mlp`` case, and that tells nothing that the
    ``workload`` column does not.
    """
    axes = [key for key in AXIS_KEYS if key in frame.columns]
    per_suite = frame.groupby("suite", sort=False)[axes].nunique(dropna=True)
    return [key for key in axes if (per_suite[key] > 1).any()]


def speedup_vs_reference(
    agg: pd.DataFrame, axis: str = "compile", reference: str = "eager"
) -> pd.Series:
    """Reference step time / case step time, per row of ``agg``.

    A case's reference is the case of the same suite whose axis settings are identical except
    ``axis == reference``; NaN where there is none or either step time is missing.
    """
    # Settings that exist only beside some values of the axis (compile_scope and the other
    # compile options are None in eager) cannot tell a case from its reference.
    dependent = COMPILE_ONLY_KEYS if axis == "compile" else ()
    others = [k for k in AXIS_KEYS if k in agg.columns and k != axis and k not in dependent]
    match_keys = [_match_key(row) for row in agg[["suite", *others]].itertuples(index=False)]
    is_reference = (agg[axis] == reference).to_numpy()
    reference_s = {
        key: step_s
        for key, step_s, is_ref in zip(match_keys, agg["step_time_s"], is_reference)
        if is_ref
    }
    speedup = [reference_s.get(key, float("nan")) for key in match_keys] / agg["step_time_s"]
    return speedup.rename(f"speedup_vs_{reference}")


def break_even_steps(agg: pd.DataFrame) -> pd.Series:
    """Steps after which compiling pays off: compile time / step time saved against eager.

    NaN where there is no eager twin, no compile time, or the compiled step is not faster (it
    never pays off).
    """
    speedup = speedup_vs_reference(agg)
    eager_s = agg["step_time_s"] * speedup
    saved_s = eager_s - agg["step_time_s"]
    steps = agg["compile_time_s"] / saved_s
    return steps.where(saved_s > 0).rename("break_even_steps")


def _match_key(values: Iterable[Any]) -> tuple[Any, ...]:
    # NaN != NaN, so missing settings are made None before they are compared.
    return tuple(None if pd.isna(value) else value for value in values)
