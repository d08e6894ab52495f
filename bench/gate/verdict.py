"""The verdict on one metric of one case: the rule of ``bench compare`` (docs/GATING.md).

Given the values of a metric on each side, grouped by repeat (one group per process), the change
is the ratio median(CAND) / median(BASE) with a hierarchical bootstrap 95% interval, and the
evidence is a one-sided Mann-Whitney U test on the pooled values (:mod:`bench.significance`):

- ``regressed`` (``improved``): the whole interval lies beyond the threshold in the bad (good)
  direction, the test is significant at ALPHA, and each side has at least two repeats;
- ``unchanged``: the whole interval lies within the threshold;
- ``inconclusive`` otherwise: rerun with more repeats.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.significance import mann_whitney_p, ratio_of_medians_ci
from bench.statistics import median

ALPHA = 0.05  # one-sided significance level of the rank test
CONFIDENCE = 0.95
DEFAULT_THRESHOLD = 0.05
DEFAULT_RESAMPLES = 2000
NOT_APPLICABLE = "n/a"
RERUN = "rerun with more repeats"


@dataclass(frozen=True)
class Metric:
    name: str
    """Key on the command line (``--threshold step_time=3%``) and in the JSON output."""
    label: str
    unit: str
    lower_is_better: bool
    values: Callable[[dict[str, Any]], list[float] | None]
    """The values of one ok record: every step's, or the repeat's one value."""


@dataclass(frozen=True)
class MetricResult:
    metric: str
    label: str
    unit: str
    lower_is_better: bool
    verdict: str
    """regressed, improved, unchanged, inconclusive, or n/a (not measured on a side)."""
    note: str = ""
    threshold: float | None = None
    base_median: float | None = None
    cand_median: float | None = None
    ratio: float | None = None
    """median(CAND) / median(BASE), and its bootstrap interval."""
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    """One-sided rank test in the direction of the change."""
    num_base: int = 0
    num_cand: int = 0
    repeats_base: int = 0
    repeats_cand: int = 0


def compare_groups(
    metric: Metric,
    base_groups: list[list[float]],
    cand_groups: list[list[float]],
    threshold: float,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> MetricResult:
    """The verdict on one metric from its values, grouped by repeat (one group per process)."""
    common = {
        "metric": metric.name,
        "label": metric.label,
        "unit": metric.unit,
        "lower_is_better": metric.lower_is_better,
        "threshold": threshold,
    }
    if not base_groups or not cand_groups:
        where = "BASE" if cand_groups else "CAND" if base_groups else "either side"
        return MetricResult(**common, verdict=NOT_APPLICABLE, note=f"not measured on {where}")
    base_values = [x for group in base_groups for x in group]
    cand_values = [x for group in cand_groups for x in group]
    if min(base_values) <= 0 or min(cand_values) <= 0:
        return MetricResult(
            **common, verdict=NOT_APPLICABLE, note="values not all positive: no ratio to take"
        )
    ci = ratio_of_medians_ci(
        base_groups, cand_groups, resamples=resamples, confidence=CONFIDENCE, seed=seed
    )
    larger = "greater" if metric.lower_is_better else "less"  # the alternative "CAND is worse"
    smaller = "less" if larger == "greater" else "greater"
    p_worse = mann_whitney_p(cand_values, base_values, larger)
    p_better = mann_whitney_p(cand_values, base_values, smaller)
    repeats = min(len(base_groups), len(cand_groups))
    verdict, note = judge(ci.low, ci.high, p_worse, p_better, threshold, metric, repeats)
    worse = ci.ratio > 1 if metric.lower_is_better else ci.ratio < 1
    return MetricResult(
        **common,
        verdict=verdict,
        note=note,
        base_median=median(base_values),
        cand_median=median(cand_values),
        ratio=ci.ratio,
        ci_low=ci.low,
        ci_high=ci.high,
        p_value=p_worse if worse else p_better,
        num_base=len(base_values),
        num_cand=len(cand_values),
        repeats_base=len(base_groups),
        repeats_cand=len(cand_groups),
    )


def judge(
    low: float,
    high: float,
    p_worse: float,
    p_better: float,
    threshold: float,
    metric: Metric,
    repeats: int,
) -> tuple[str, str]:
    """The verdict on the interval [low, high] of median(CAND) / median(BASE), the one-sided
    rank tests, and the fewest repeats on a side."""
    up, down = low > 1 + threshold, high < 1 - threshold  # the whole interval beyond a side
    bad, good = (up, down) if metric.lower_is_better else (down, up)
    band = f"±{threshold * 100:g}%"
    if bad or good:
        p = p_worse if bad else p_better
        if p > ALPHA:
            return "inconclusive", (
                f"interval beyond {band} but the rank test is not significant (p={p:.2g}): {RERUN}"
            )
        if repeats < 2:
            # One process a side: its steps share that process's state, so the interval knows
            # nothing of how far apart two processes of the same code land.
            return "inconclusive", (
                f"beyond {band}, but from one repeat on a side the spread between processes is "
                f"unknown: {RERUN}"
            )
        return ("regressed" if bad else "improved"), ""
    if low >= 1 - threshold and high <= 1 + threshold:
        return "unchanged", ""
    return "inconclusive", f"95% interval straddles the {band} threshold: {RERUN}"
