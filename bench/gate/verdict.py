"""The verdict on one metric of one case, for ``bench compare``: the metric's values on each
side, grouped by repeat, judged by the project's one rule (:mod:`bench.comparison_rule`,
docs/GATING.md), and the result as the table and the JSON show it.
"""

from dataclasses import dataclass

from bench.comparison_rule import DEFAULT_RESAMPLES, NoiseFloor, compare_samples
from bench.gate.metrics import Metric

NOT_APPLICABLE = "n/a"


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
    """CAND / BASE (median of pooled values, or of paired rounds), and its 95% interval."""
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    """One-sided test in the direction of the change."""
    interleaved: bool | None = None
    """Whether the sides were measured in interleaved rounds (bench ab) and paired."""
    noise_floor: float | None = None
    """The run-to-run drift the interval was widened by (0 when interleaved)."""
    noise_floor_source: str = ""
    smallest_detectable: float | None = None
    """The smallest change, in the bad direction, this comparison could have found."""
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
    *,
    interleaved: bool = False,
    noise_floor: NoiseFloor | None = None,
) -> MetricResult:
    """The verdict on one metric from its values, grouped by repeat (one group per process);
    interleaved groups are paired by position (round k with round k)."""
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
    values = [x for group in [*base_groups, *cand_groups] for x in group]
    if min(values) <= 0:
        return MetricResult(
            **common, verdict=NOT_APPLICABLE, note="values not all positive: no ratio to take"
        )
    c = compare_samples(
        base_groups,
        cand_groups,
        lower_is_better=metric.lower_is_better,
        threshold=threshold,
        interleaved=interleaved,
        noise_floor=noise_floor,
        resamples=resamples,
        seed=seed,
    )
    return MetricResult(
        **common,
        verdict=c.verdict,
        note=c.note,
        base_median=c.base_median,
        cand_median=c.cand_median,
        ratio=c.ratio,
        ci_low=c.ci_low,
        ci_high=c.ci_high,
        p_value=c.p_value,
        interleaved=c.interleaved,
        noise_floor=c.noise_floor.drift,
        noise_floor_source=c.noise_floor.source,
        smallest_detectable=c.smallest_detectable,
        num_base=c.num_base,
        num_cand=c.num_cand,
        repeats_base=c.repeats_base,
        repeats_cand=c.repeats_cand,
    )
