"""The tidy frame of records (one row per case x repeat) and its aggregate (one row per case).

Columns of :func:`records_frame`: ``RECORD_COLUMNS``, then every config key the records hold
(keys this version of :class:`Case` does not know included, e.g. from a newer bench), then
``METRIC_COLUMNS`` and ``TEXT_COLUMNS``, then ``eval_<key>`` for each key of ``metrics.eval`` and
``eval_before_<key>`` for each key of ``metrics.eval_before``. Metrics are float64, NaN where a
record has none (every non-ok record, a field an older bench did not write, ``peak_alloc_bytes``
on CPU); :func:`missing_figures` names the figures no record holds.
"""

import json
import math
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

import pandas as pd

from bench.results.metrics import METRIC_PATHS, METRIC_PATHS_AND_RULES, TEXT_PATHS, metric_at
from bench.results.store import PROBE_FLAG
from bench.spec.case import Case
from bench.spec.choices import COMPILE_ONLY_KEYS, RUN_LENGTH_KEYS

RECORD_COLUMNS = ["run_id", "suite", "case_id", "repeat", "status", "reason"]
METRIC_COLUMNS = list(METRIC_PATHS)
TEXT_COLUMNS = list(TEXT_PATHS)
# Figures derived from the record's shape rather than read at a path.
DERIVED_COLUMNS = ["num_ranks", "compile_time_net_s"]
EVAL_PREFIX = "eval_"
EVAL_BEFORE_PREFIX = "eval_before_"
CONFIG_ORDER = [f.name for f in fields(Case)]
# Columns of records_frame and aggregate that are not config keys (config_columns needs them:
# records may hold config keys this Case does not know, and those are axes too).
_NOT_CONFIG = {
    *RECORD_COLUMNS,
    "flags",
    "compile_cache_state",
    *METRIC_COLUMNS,
    *TEXT_COLUMNS,
    *DERIVED_COLUMNS,
    "failed_status",
    "num_ok",
    "num_repeats",
    "step_time_s",
    "repeat_min_s",
    "repeat_max_s",
    "repeat_spread",
    "rounds_step_time_s",
    "rounds_samples_per_s",
}

# How each metric of the ok repeats of a case is reduced to the case's value in `aggregate`.
MEDIAN_OVER_REPEATS = [n for n, f in METRIC_PATHS_AND_RULES.items() if f.over_repeats == "median"]
MAX_OVER_REPEATS = [n for n, f in METRIC_PATHS_AND_RULES.items() if f.over_repeats == "max"]
# The largest batch found may differ between repeats: the smallest is the one that always fit.
MIN_OVER_REPEATS = [n for n, f in METRIC_PATHS_AND_RULES.items() if f.over_repeats == "min"]
MEAN_OVER_REPEATS = [n for n, f in METRIC_PATHS_AND_RULES.items() if f.over_repeats == "mean"]
MEDIAN_OVER_REPEATS.append("num_ranks")

# What each group of figures needs, to say what the records lack: label -> columns (any).
FIGURE_GROUPS: dict[str, tuple[str, ...]] = {
    "MFU (metrics.flops.mfu)": ("mfu",),
    "energy (metrics.gpu.energy_per_step_j)": ("energy_per_step_j",),
    "held-out evaluation (metrics.eval)": (),
    "trainable parameters (metrics.trainable_params)": ("trainable_params",),
    "data-loading stalls (metrics.data_wait_fraction)": ("data_wait_fraction",),
    "time to target (metrics.target)": ("time_to_target_s", "steps_to_target"),
    "per-rank figures (metrics.ranks)": ("num_ranks",),
}


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
            *TEXT_COLUMNS,
            *DERIVED_COLUMNS,
            *eval_keys,
        ],
    )
    numeric = [*METRIC_COLUMNS, *DERIVED_COLUMNS, *eval_keys]
    # A bool (target reached) becomes 0.0 / 1.0, so that its mean is a share of repeats.
    frame[numeric] = frame[numeric].astype("float64")
    return frame


def _flatten(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    metrics = record.get("metrics") or {}
    ranks = metrics.get("ranks")
    evals = {EVAL_PREFIX + key: value for key, value in (metrics.get("eval") or {}).items()}
    before = metrics.get("eval_before") or {}
    evals |= {EVAL_BEFORE_PREFIX + key: value for key, value in before.items()}
    return {
        "record": {
            **{key: record.get(key) for key in RECORD_COLUMNS},
            "flags": ", ".join(record.get("flags") or []),
            "compile_cache_state": ((record.get("runtime") or {}).get("compile") or {}).get(
                "cache"
            ),
        },
        # A list or table value (not a plain setting) is compared as its JSON text.
        "config": {
            key: json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value
            for key, value in record["config"].items()
        },
        "metrics": {
            **{column: metric_at(metrics, path) for column, path in METRIC_PATHS.items()},
            **{column: metric_at(metrics, path) for column, path in TEXT_PATHS.items()},
            "num_ranks": len(ranks) if isinstance(ranks, list) else None,
        },
        "eval": {k: v for k, v in evals.items() if isinstance(v, int | float) or v is None},
    }


def _ordered_union(dicts: Iterable[dict[str, Any]]) -> list[str]:
    """Keys of all dicts; the Case's fields first in their own order, then the rest as found."""
    seen = dict.fromkeys(key for d in dicts for key in d)
    return [key for key in CONFIG_ORDER if key in seen] + [k for k in seen if k not in CONFIG_ORDER]


def eval_columns(frame: pd.DataFrame) -> list[str]:
    """The ``eval_<key>`` metric columns (``eval_batches`` is a config key, not a metric)."""
    return [
        c
        for c in frame.columns
        if c.startswith(EVAL_PREFIX)
        and not c.startswith(EVAL_BEFORE_PREFIX)
        and c not in CONFIG_ORDER
    ]


def eval_before_columns(frame: pd.DataFrame) -> list[str]:
    """The ``eval_before_<key>`` columns: held-out quality before fine-tuning."""
    return [c for c in frame.columns if c.startswith(EVAL_BEFORE_PREFIX)]


def config_columns(frame: pd.DataFrame) -> list[str]:
    """The frame's config-key columns, keys this version of :class:`Case` does not know
    included (a record from a newer bench)."""
    return [
        c
        for c in frame.columns
        if c in CONFIG_ORDER or (c not in _NOT_CONFIG and not c.startswith(EVAL_PREFIX))
    ]


def axis_keys(frame: pd.DataFrame) -> list[str]:
    """The config columns that can tell cases apart: all but the run-length keys."""
    return [c for c in config_columns(frame) if c not in RUN_LENGTH_KEYS]


def missing_figures(frame: pd.DataFrame) -> list[str]:
    """The groups of figures that no ok record holds, to say so in the report."""
    ok = frame[frame["status"] == "ok"]
    missing = []
    for label, columns in FIGURE_GROUPS.items():
        present = [c for c in columns if c in ok and ok[c].notna().any()]
        if not columns:  # held-out evaluation: any eval_<key> column
            present = [c for c in eval_columns(ok) if ok[c].notna().any()]
        if not present:
            missing.append(label)
    return missing


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (suite, case_id), reduced over the repeats whose status is ``ok``.

    ``step_time_s`` is the median of the repeats' median step times; ``repeat_min_s`` and
    ``repeat_max_s`` bound those medians and ``repeat_spread`` is (max - min) / median;
    ``step_time_iqr_s`` is the median of the within-repeat IQRs. Throughput, compile time,
    losses and eval metrics are medians over repeats; peak memory is the max over repeats.
    ``rounds_step_time_s`` and ``rounds_samples_per_s`` map each ok repeat's round
    ("run_id/repeat") to its median step time and samples/s: what comparisons pair.
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
    agg = agg[leading + [c for c in agg.columns if c not in leading]]
    if "compile" in agg and "first_step_s" in agg and "compile_time_s" in agg:
        agg["compile_time_net_s"] = compile_time_net_s(agg)
    return agg


def compile_time_net_s(agg: pd.DataFrame) -> pd.Series:
    """What compiling cost up front: the compiled case's first step less its steady step
    (``compile_time_s``), less the same excess of its eager twin's first step (lazy set-up,
    allocator growth, first calls into the kernels: costs eager pays too). Without an eager
    twin, ``compile_time_s`` as recorded."""
    eager_excess = reference_values(agg, "compile", "eager", "first_step_s") - reference_values(
        agg, "compile", "eager"
    )
    return (agg["compile_time_s"] - eager_excess).where(eager_excess.notna(), agg["compile_time_s"])


def _ok_stats(ok: pd.DataFrame) -> pd.DataFrame:
    median_s = "step_time_median_s"
    stats = ok.groupby(["suite", "case_id"], sort=False).agg(
        step_time_s=(median_s, "median"),
        repeat_min_s=(median_s, "min"),
        repeat_max_s=(median_s, "max"),
        **{column: (column, "median") for column in MEDIAN_OVER_REPEATS},
        **{column: (column, "max") for column in MAX_OVER_REPEATS},
        **{column: (column, "min") for column in MIN_OVER_REPEATS},
        **{column: (column, "mean") for column in MEAN_OVER_REPEATS},
        **{column: (column, "last") for column in TEXT_COLUMNS},
        flags=("flags", _union_of_flags),
        **{column: (column, "median") for column in [*eval_columns(ok), *eval_before_columns(ok)]},
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
    # Each repeat's value by its round ("run_id/repeat"): what the comparison rule pairs
    # (bench/report/comparisons.py).
    rounds = ok["run_id"].astype(str) + "/" + ok["repeat"].astype(str)
    for column, source in (
        ("rounds_step_time_s", median_s),
        ("rounds_samples_per_s", "samples_per_s"),
    ):
        stats[column] = (
            ok.assign(round=rounds)
            .groupby(["suite", "case_id"], sort=False)[["round", source]]
            .apply(lambda g, source=source: _rounds(g["round"], g[source]))
        )
    stats["compile_cache_state"] = ok.groupby(["suite", "case_id"], sort=False)[
        "compile_cache_state"
    ].agg(_cache_states)
    return stats.reset_index()


def _rounds(rounds: pd.Series, values: pd.Series) -> dict[str, float]:
    """round -> value, the repeats that measured one (a positive number) only."""
    return {r: float(v) for r, v in zip(rounds, values) if v == v and v > 0}


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
    axes = axis_keys(frame)
    per_suite = frame.groupby("suite", sort=False)[axes].nunique(dropna=True)
    return [key for key in axes if (per_suite[key] > 1).any()]


def workload_bound_axes(cases: pd.DataFrame, axes: list[str]) -> list[str]:
    """The axes (``workload`` aside) that take one value per workload in every suite: in a
    suite of an mlp and a gpt, their model sizes and batch sizes tell nothing that the workload
    does not. Without a ``workload`` column, those that take one value per suite."""
    keys = ["suite", "workload"] if "workload" in cases else ["suite"]
    others = [a for a in axes if a != "workload"]
    if not others:
        return []
    counts = cases.groupby(keys, sort=False, dropna=False)[others].nunique(dropna=False)
    return [a for a in others if (counts[a] <= 1).all()]


def distinguishing_axes(cases: pd.DataFrame, axes: list[str], x: str) -> list[str]:
    """The axes besides ``x`` that, with ``x``, tell every case of ``cases`` apart, so that a
    figure keyed on them draws each case once and averages none: ``x``'s own settings (an
    optimizer's learning rate) and the axes that follow the workload left out where the rest
    still tell the cases apart; every other axis where they do not; the case id at worst."""
    others = [a for a in axes if a != x]
    bound = set(workload_bound_axes(cases, others)) | set(DEPENDENT_KEYS.get(x, ()))
    simple = [a for a in others if a not in bound]
    for chosen in (simple, others):
        if not cases[[x, *chosen]].astype(str).duplicated().any():
            return chosen
    return [*others, "case_id"]


# Settings that exist only beside some values of an axis (compile_scope and the other compile
# options are None in eager; each optimizer has its own default learning rate; a strategy only
# with several processes) cannot tell a case from its reference.
DEPENDENT_KEYS: dict[str, tuple[str, ...]] = {
    "compile": COMPILE_ONLY_KEYS,
    "optimizer": ("lr", "impl", "nesterov"),
    "nproc": ("strategy",),
    "world_size": ("strategy",),  # scaling_efficiency's nproc x nnodes
    "finetune": ("lora_rank", "lora_alpha"),
}


def reference_values(
    agg: pd.DataFrame, axis: str, reference: Any, column: str = "step_time_s"
) -> pd.Series:
    """Per row of ``agg``: ``column`` of its reference twin, the case of the same suite whose
    other settings are equal and whose ``axis`` is the suite's reference value.

    ``reference`` is that value, or a function of one suite's cases that returns it (the first
    optimizer, the smallest batch). NaN where a row has no twin.
    """
    if axis not in agg.columns:  # records that do not have this setting at all
        return pd.Series(math.nan, index=agg.index)
    dependent = [k for k in DEPENDENT_KEYS.get(axis, ()) if k in agg.columns]
    others = [k for k in axis_keys(agg) if k != axis and k not in dependent]
    # A twin with the same dependent settings too (the same strategy at one process, where the
    # runs recorded one) is preferred; else any twin whose other settings match.
    loose = [_match_key(row) for row in agg[["suite", *others]].itertuples(index=False)]
    exact = [_match_key(row) for row in agg[["suite", *others, *dependent]].itertuples(index=False)]
    per_suite = {
        suite: reference(cases) if callable(reference) else reference
        for suite, cases in agg.groupby("suite", sort=False)
    }
    is_reference = [
        _match_key([value])[0] == per_suite[suite] and per_suite[suite] is not None
        for suite, value in zip(agg["suite"], agg[axis])
    ]
    by_loose, by_exact = {}, {}
    for key_loose, key_exact, value, is_ref in zip(loose, exact, agg[column], is_reference):
        if is_ref:
            by_loose.setdefault(key_loose, value)
            by_exact[key_exact] = value
    values = [
        by_exact[key_exact] if key_exact in by_exact else by_loose.get(key_loose, math.nan)
        for key_loose, key_exact in zip(loose, exact)
    ]
    return pd.Series(values, index=agg.index)


def speedup_vs_reference(
    agg: pd.DataFrame, axis: str = "compile", reference: Any = "eager"
) -> pd.Series:
    """Reference step time / case step time, per row of ``agg`` (see :func:`reference_values`);
    NaN where there is no reference twin or either step time is missing."""
    speedup = reference_values(agg, axis, reference) / agg["step_time_s"]
    name = reference if isinstance(reference, str) else "reference"
    return speedup.rename(f"speedup_vs_{name}")


def scaling_efficiency(cases: pd.DataFrame) -> pd.Series:
    """throughput(N) / (N x throughput(1)), N the world size (nproc x nnodes), against the twin
    of world size 1: one process on one node (NaN without one)."""
    if "nproc" not in cases:
        return pd.Series(math.nan, index=cases.index)
    nnodes = cases["nnodes"].fillna(1) if "nnodes" in cases else 1
    world = cases["nproc"].fillna(1) * nnodes
    others = cases.drop(columns=[c for c in ("nproc", "nnodes") if c in cases])
    single = reference_values(others.assign(world_size=world), "world_size", 1, "samples_per_s")
    return (cases["samples_per_s"] / (world * single)).rename("scaling_efficiency")


def peak_memory_bytes(cases: pd.DataFrame) -> pd.Series:
    """The allocator peak on CUDA (what the model needs); on a CPU the rise of the process's
    RSS over its baseline before the model was built, where records hold it (the ~500 MB of an
    imported torch say nothing of the model), else the window's peak RSS."""
    host = cases["peak_rss_bytes"]
    if "window_rss_rise_bytes" in cases.columns:
        host = cases["window_rss_rise_bytes"].fillna(host)
    if "device" not in cases.columns:
        return host
    return cases["peak_alloc_bytes"].where(cases["device"] == "cuda", host)


def _match_key(values: Iterable[Any]) -> tuple[Any, ...]:
    # NaN != NaN, so missing settings are made None before they are compared.
    return tuple(None if pd.isna(value) else value for value in values)
