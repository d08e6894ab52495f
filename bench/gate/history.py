"""``bench history``: each case's metric over many runs, its change points, and whether the
newest runs differ from the segment before them (docs/HISTORY.md).

A series is one (machine, case, metric): per run, the median of the case's values over its ok
repeats (every measured step's time for step time), with the median's 95% interval. Runs on
another machine (CPU model, GPU name and count) make another series; software versions only
annotate the runs. Change points come from E-Divisive means (:mod:`bench.gate.change_points`);
each is kept when the project's one rule (:mod:`bench.comparison_rule`) also resolves the change
between the segments on either side of it beyond the threshold. The newest ``last`` runs are
judged against the segment before them by the same rule: that is the nightly job's exit code.

The rule sees each run as one group of values (a side's runs are resampled, then each run's
values), so a side of several runs carries the drift between runs in its own spread: no noise
floor is added (:data:`RUNS_FLOOR`). Torch-free.
"""

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from bench.comparison_rule import (
    ALPHA,
    CONFIDENCE,
    DEFAULT_THRESHOLD,
    NoiseFloor,
    SampleComparison,
    compare_samples,
)
from bench.gate import change_points as cp
from bench.gate.history_runs import Run
from bench.gate.metrics import METRIC, Metric
from bench.spec.labels import case_labels
from bench.statistics import median, summarize

RUNS_FLOOR = NoiseFloor(0.0, "none: each side is several runs, whose spread holds their drift")
DEFAULT_LAST = cp.MIN_SIZE
NEARBY = cp.MIN_SIZE  # a change point lands up to a segment's fewest runs off, in noise
RESAMPLES = 1000


@dataclass(frozen=True)
class Point:
    """One run of a series."""

    run_id: str
    path: str
    started_at: str
    commit: str | None
    dirty: bool | None
    software: dict[str, Any]
    median: float
    ci_low: float | None
    ci_high: float | None
    num_values: int
    values: list[float] = field(repr=False)


@dataclass(frozen=True)
class Change:
    """A comparison of two stretches of a series by the project's rule."""

    verdict: str
    base_median: float
    cand_median: float
    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    num_runs_base: int
    num_runs_cand: int
    note: str


@dataclass(frozen=True)
class FoundChange:
    """A change point of a series: where it is, how sure, what else changed there."""

    index: int
    run_id: str
    started_at: str
    commit: str | None
    q: float
    p_value: float
    """E-Divisive's permutation p of the split."""
    change: Change
    """The segment after the change point against the segment before it."""
    changed: dict[str, list[Any]]
    """What else differs between the run before and this run: commit, dirty, versions."""
    nearby: list[dict[str, Any]]
    """What changed between neighbouring runs up to :data:`NEARBY` runs either side (a change
    point may land runs off where noisy runs border the change): index, run, changes."""


@dataclass(frozen=True)
class Series:
    machine: str
    case_id: str
    label: str
    metric: str
    unit: str
    lower_is_better: bool
    points: list[Point]
    change_points: list[FoundChange]
    below_threshold: list[int]
    """Indices E-Divisive found whose change the rule did not resolve beyond the threshold."""
    newest: Change | None
    """The newest ``last`` runs against the segment before them (None: too few runs)."""

    @property
    def alert(self) -> bool:
        return self.newest is not None and self.newest.verdict == "regressed"


@dataclass(frozen=True)
class History:
    suites: list[str]
    runs: int
    metrics: list[str]
    thresholds: dict[str, float]
    """The threshold of each metric followed (``--threshold``, as bench compare takes it)."""
    last: int
    since: str | None
    machines: list[str]
    series: list[Series]

    @property
    def failed(self) -> bool:
        return any(s.alert for s in self.series)

    def to_dict(self) -> dict[str, Any]:
        series = []
        for s in self.series:
            entry = asdict(s)
            for point in entry["points"]:
                point.pop("values")
            entry["alert"] = s.alert
            series.append(entry)
        return {
            "schema": 1,
            "suites": self.suites,
            "runs": self.runs,
            "metrics": self.metrics,
            "machines": self.machines,
            "since": self.since,
            "rule": {
                "method": "E-Divisive means (Matteson & James 2014), permutation test",
                "alpha_change_point": cp.ALPHA,
                "permutations": cp.PERMUTATIONS,
                "min_size": cp.MIN_SIZE,
                "thresholds": self.thresholds,
                "confidence": CONFIDENCE,
                "alpha": ALPHA,
                "last": self.last,
            },
            "failed": self.failed,
            "series": series,
        }


def history(
    runs: list[Run],
    metrics: list[str],
    thresholds: dict[str, float | None] | None = None,
    last: int = DEFAULT_LAST,
    since: datetime | None = None,
) -> History:
    """The series of ``runs`` (ordered by start time) for each metric, analysed; a metric
    whose threshold is None (``step_time=off``) is not followed."""
    given = thresholds or {}
    limits = {m: t for m in metrics if (t := given.get(m, DEFAULT_THRESHOLD)) is not None}
    runs = [run for run in runs if since is None or run.started_at >= since]
    configs = {r["case_id"]: r["config"] for run in runs for r in run.records}
    labels = case_labels(configs)
    machines = list(dict.fromkeys(run.machine for run in runs))
    series = []
    for machine in machines:
        on_machine = [run for run in runs if run.machine == machine]
        case_ids = list(dict.fromkeys(r["case_id"] for run in on_machine for r in run.records))
        for case_id in case_ids:
            for name, threshold in limits.items():
                points = _points(on_machine, case_id, METRIC[name])
                if points:
                    series.append(
                        _analyse(
                            machine, case_id, labels[case_id], METRIC[name], points, threshold, last
                        )
                    )
    suites = sorted({str(r.get("suite")) for run in runs for r in run.records})
    return History(
        suites,
        len(runs),
        list(limits),
        limits,
        last,
        since.isoformat() if since else None,
        machines,
        series,
    )


def _points(runs: list[Run], case_id: str, metric: Metric) -> list[Point]:
    points = []
    for run in runs:
        ok = [r for r in run.records if r["case_id"] == case_id and r["status"] == "ok"]
        values = [x for r in ok for x in (metric.values(r) or [])]
        if not values or min(values) <= 0:
            continue
        summary = summarize(values)
        points.append(
            Point(
                run.run_id,
                str(run.path),
                run.started_at.isoformat(),
                run.commit,
                run.dirty,
                run.software(),
                summary.median,
                summary.ci95_low,
                summary.ci95_high,
                len(values),
                values,
            )
        )
    return points


def judge_stretches(
    before: list[Point], after: list[Point], metric: Metric, threshold: float
) -> Change:
    """The rule on two stretches of a series, each run one group of values."""
    c: SampleComparison = compare_samples(
        [p.values for p in before],
        [p.values for p in after],
        lower_is_better=metric.lower_is_better,
        threshold=threshold,
        interleaved=False,
        noise_floor=RUNS_FLOOR,
        resamples=RESAMPLES,
    )
    return Change(
        c.verdict,
        median([p.median for p in before]),
        median([p.median for p in after]),
        c.ratio,
        c.ci_low,
        c.ci_high,
        c.p_value,
        len(before),
        len(after),
        c.note,
    )


def _analyse(
    machine: str,
    case_id: str,
    label: str,
    metric: Metric,
    points: list[Point],
    threshold: float,
    last: int,
) -> Series:
    found = cp.change_points([p.median for p in points])
    bounds = [0, *(c.index for c in found), len(points)]
    kept, below = [], []
    for k, c in enumerate(found, start=1):
        change = judge_stretches(
            points[bounds[k - 1] : c.index], points[c.index : bounds[k + 1]], metric, threshold
        )
        if change.verdict in ("regressed", "improved"):
            at, previous = points[c.index], points[c.index - 1]
            kept.append(
                FoundChange(
                    c.index,
                    at.run_id,
                    at.started_at,
                    at.commit,
                    c.q,
                    c.p_value,
                    change,
                    what_changed(previous, at),
                    _nearby(points, c.index),
                )
            )
        else:
            below.append(c.index)
    return Series(
        machine,
        case_id,
        label,
        metric.name,
        metric.unit,
        metric.lower_is_better,
        points,
        kept,
        below,
        _newest(points, [c.index for c in kept], metric, threshold, last),
    )


def _newest(
    points: list[Point], kept: list[int], metric: Metric, threshold: float, last: int
) -> Change | None:
    """The newest ``last`` runs against the segment before them: from the last kept change
    point before them. Where fewer than :data:`~bench.gate.change_points.MIN_SIZE` runs of that
    segment come before them (a change a night or two old), against the segment before it."""
    end = len(points) - last
    bounds = [0, *sorted(i for i in kept if i < end)]
    start = bounds[-1]
    if end - start < cp.MIN_SIZE and len(bounds) > 1:
        start, end = bounds[-2], start
    if end - start < cp.MIN_SIZE:
        return None
    return judge_stretches(points[start:end], points[-last:], metric, threshold)


def _nearby(points: list[Point], index: int) -> list[dict[str, Any]]:
    found = []
    for i in range(max(1, index - NEARBY), min(len(points), index + NEARBY + 1)):
        if i != index and (changed := what_changed(points[i - 1], points[i])):
            found.append({"index": i, "run_id": points[i].run_id, "changed": changed})
    return found


def what_changed(before: Point, at: Point) -> dict[str, list[Any]]:
    """``{"commit": [old, new], "torch": [old, new], ...}``: what differs between two runs."""
    changed: dict[str, list[Any]] = {}
    if before.commit != at.commit:
        changed["commit"] = [before.commit, at.commit]
    if before.dirty != at.dirty:
        changed["dirty"] = [before.dirty, at.dirty]
    for key in dict.fromkeys([*before.software, *at.software]):
        if before.software.get(key) != at.software.get(key):
            changed[key] = [before.software.get(key), at.software.get(key)]
    return changed
