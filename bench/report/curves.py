"""Long frames of what a record holds over its window: loss readings and telemetry timelines.

Torch-free, like the rest of the report. ``loss_curves`` places each loss reading
(``samples.loss``: steps done in the window, mean loss of the block ending there) at the window
time those steps took, the sum of the measured step times before it, so that optimizers with
different step times compare on the wall clock. ``time_to_loss`` reads, from those curves, when
each case first reached a loss; ``gpu_timeline`` is a record's NVML timeline.
"""

import itertools
import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from bench.results.store import PROBE_FLAG

CURVE_COLUMNS = ["suite", "run_id", "case_id", "repeat", "step", "window_s", "loss"]


def loss_curves(records: Iterable[dict[str, Any]], axes: list[str]) -> pd.DataFrame:
    """One row per loss reading of every ok record, with the record's values of ``axes``
    (an axis named like a column of the readings, the suite's ``loss``, is left out: the
    column holds the reading)."""
    axes = [axis for axis in axes if axis not in CURVE_COLUMNS]
    rows = []
    for record in records:
        samples = record.get("samples") or {}
        if record.get("status") != "ok" or PROBE_FLAG in (record.get("flags") or []):
            continue
        elapsed = list(itertools.accumulate(samples.get("step_time_s") or []))
        config = record.get("config") or {}
        for step, loss in samples.get("loss") or []:
            if loss is None or not 0 < step <= len(elapsed):
                continue
            rows.append(
                {
                    **{key: record.get(key) for key in ("suite", "run_id", "case_id", "repeat")},
                    "step": step,
                    "window_s": elapsed[step - 1],
                    "loss": float(loss),
                    **{axis: config.get(axis) for axis in axes},
                }
            )
    return pd.DataFrame(rows, columns=[*CURVE_COLUMNS, *axes])


# A common target most cases reach: one that every case must reach is set by the slowest (a case
# of a few steps sets it at its first readings, and the others all reach it at once).
TARGET_SHARE = 2 / 3


def common_loss_target(curves: pd.DataFrame, share: float = TARGET_SHARE) -> float | None:
    """The lowest loss that at least ``share`` of the cases of ``curves`` reached (each case by
    its worst repeat's best reading); ``share = 1`` asks every case. None without curves."""
    if curves.empty:
        return None
    best = curves.groupby(["case_id", "repeat"])["loss"].min().groupby("case_id").max()
    needed = math.ceil(share * len(best))
    value = float(best.sort_values().iloc[needed - 1])
    return value if math.isfinite(value) else None


def time_to_loss(curves: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per case: the median over repeats of the window time and of the steps at the first
    reading at or below ``target``; NaN for a case none of whose repeats reached it, and
    ``reached`` the share of repeats that did."""
    rows = []
    for (case_id, _repeat), curve in curves.groupby(["case_id", "repeat"], sort=False):
        hit = curve[curve["loss"] <= target]
        first = hit.iloc[0] if len(hit) else None
        rows.append(
            {
                "case_id": case_id,
                "time_to_target_s": first["window_s"] if first is not None else math.nan,
                "steps_to_target": first["step"] if first is not None else math.nan,
                "reached": float(first is not None),
            }
        )
    per_repeat = pd.DataFrame(
        rows, columns=["case_id", "time_to_target_s", "steps_to_target", "reached"]
    )
    return per_repeat.groupby("case_id", sort=False).agg(
        time_to_target_s=("time_to_target_s", "median"),
        steps_to_target=("steps_to_target", "median"),
        reached=("reached", "mean"),
    )


TIMELINE_FIGURES = ("gpu_util_percent", "power_w", "sm_clock_mhz")


def gpu_timeline(record: dict[str, Any]) -> pd.DataFrame:
    """The record's NVML timeline, one row per point and device; empty where it has none."""
    timelines = ((record.get("samples") or {}).get("telemetry") or {}).get("gpu") or []
    rows = []
    for device in timelines:
        for index, t_s in enumerate(device.get("t_s") or []):
            row = {"device": device.get("index"), "t_s": t_s}
            for figure in TIMELINE_FIGURES:
                values = device.get(figure) or []
                row[figure] = values[index] if index < len(values) else None
            rows.append(row)
    return pd.DataFrame(rows, columns=["device", "t_s", *TIMELINE_FIGURES])


def timeline_record(records: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The case a telemetry figure shows: of the ok records with a GPU timeline, the one with
    the most samples per device (the longest window), the first such on a tie."""
    best, best_points = None, 0
    for record in records:
        if record.get("status") != "ok":
            continue
        points = len(gpu_timeline(record))
        if points > best_points:
            best, best_points = record, points
    return best
