"""Compare two result sets case by case: a verdict per case and per metric, for CI gating.

Cases are matched by case id. Each metric of a case ok on both sides gets its verdict from the
rule in :mod:`bench.comparison_rule` (docs/GATING.md); a case takes the worst verdict of its
metrics, or one from its records' status: ``broken`` (ok in BASE, oom/error/timeout in CAND),
``new``, ``missing``. Pure: no torch; the CLI prints what this returns
(:mod:`bench.gate.compare_output`).
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.comparison_rule import (
    ALPHA,
    CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_THRESHOLD,
    NoiseFloor,
    recorded_floor,
)
from bench.errors import UserError
from bench.gate.metrics import METRIC_NAMES, METRICS, Metric
from bench.gate.verdict import NOT_APPLICABLE, MetricResult, compare_groups
from bench.results.metrics import metric_value
from bench.results.store import (
    ENV,
    MANIFEST,
    PROBE_FLAG,
    RECORDS,
    read_json,
    read_records,
    status_summary,
)
from bench.spec.labels import case_labels

if TYPE_CHECKING:
    from bench.gate.calibration import Calibration

FAILED = ("oom", "error", "timeout")
# Verdicts of a case, worst first: a case takes the worst verdict of its metrics.
CASE_VERDICTS = ("broken", "regressed", "inconclusive", "improved", "unchanged", "new", "missing")
FAILING = ("broken", "regressed")  # the verdicts that fail a CI gate (exit code 1)


@dataclass(frozen=True)
class Side:
    """One side of a comparison: the records of a run directory, a records file or a baseline."""

    label: str
    path: Path
    records: list[dict[str, Any]]
    env: dict[str, Any] = field(default_factory=dict)
    ab: dict[str, Any] | None = None
    """``bench ab``'s note in the run's run.json: the job and side of interleaved rounds."""

    def describe(self) -> dict[str, Any]:
        suites = sorted({str(r.get("suite")) for r in self.records})
        git = self.env.get("git") or {}
        return {
            "source": self.label,
            "path": str(self.path),
            "suites": suites,
            "commit": git.get("commit"),
            "dirty": git.get("dirty"),
        }


def load_side(arg: str, results: Path) -> Side:
    """BASE or CAND as given: a run directory, a records file, or a baseline's name."""
    from bench.gate.baseline import baseline_dir, baseline_names
    from bench.names import is_path_name

    path = Path(arg)
    if path.is_dir() and not (path / RECORDS).is_file():
        raise UserError(f"{arg}: a directory without {RECORDS}: not a run directory or baseline")
    if not path.exists():
        # A baseline's name is one path component: never a way out of results/baselines/.
        if not is_path_name(arg) or not baseline_dir(results, arg).is_dir():
            names = ", ".join(baseline_names(results)) or "none"
            raise UserError(
                f"{arg}: not a run directory, records file or baseline "
                f"(baselines in {results}/baselines: {names})"
            )
        path = baseline_dir(results, arg)
    file = path / RECORDS if path.is_dir() else path
    # A batch-size search's probes are summarised by its result record, which is compared.
    records = [r for r in read_records(file) if PROBE_FLAG not in (r.get("flags") or [])]
    if not records:
        raise UserError(f"{file}: no records")
    env_file, manifest_file = file.parent / ENV, file.parent / MANIFEST
    env = read_json(env_file) if env_file.is_file() else {}
    manifest = read_json(manifest_file) if manifest_file.is_file() else {}
    ab = manifest.get("ab") if isinstance(manifest, dict) else None
    return Side(arg, file, records, env if isinstance(env, dict) else {}, ab)


def interleaved(base: Side, cand: Side) -> bool:
    """Whether BASE and CAND are the two sides of one ``bench ab`` job: measured in the same
    rounds, next to each other in time (round k of each is its repeat k)."""
    if not base.ab or not cand.ab:
        return False
    same_job = base.ab.get("job") is not None and base.ab.get("job") == cand.ab.get("job")
    return same_job and (base.ab.get("side"), cand.ab.get("side")) == ("base", "cand")


def parse_thresholds(texts: list[str]) -> dict[str, float | None]:
    """``--threshold`` values: ``5%`` (every metric), ``step_time=3%``, ``final_loss=off``.

    A metric set to None (``off``) is not compared."""
    thresholds: dict[str, float | None] = dict.fromkeys(METRIC_NAMES, DEFAULT_THRESHOLD)
    for text in texts:
        name, _, value = text.rpartition("=")
        if name and name not in thresholds:
            raise UserError(
                f"--threshold {text!r}: unknown metric {name!r}; allowed: {', '.join(METRIC_NAMES)}"
            )
        if value == "off" and name:
            thresholds[name] = None
            continue
        number = value.removesuffix("%")
        try:
            fraction = float(number) / 100
        except ValueError:
            fraction = None
        if not value.endswith("%") or fraction is None or not 0 < fraction < 1:
            raise UserError(
                f"--threshold {text!r}: expected a percentage between 0% and 100%, for every "
                "metric (5%) or one (step_time=3%, or step_time=off)"
            )
        for key in [name] if name else METRIC_NAMES:
            thresholds[key] = fraction
    return thresholds


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    label: str
    verdict: str
    note: str
    base_status: str
    cand_status: str
    metrics: list[MetricResult]


@dataclass(frozen=True)
class Comparison:
    base: dict[str, Any]
    cand: dict[str, Any]
    thresholds: dict[str, float | None]
    resamples: int
    seed: int
    cases: list[CaseResult]
    interleaved: bool = False
    """Both sides from one bench ab job (paired rounds), else separate runs."""
    calibration: str | None = None
    """The machine whose calibrated drift separate runs were judged with; None: uncalibrated."""

    @property
    def failed(self) -> bool:
        return any(case.verdict in FAILING for case in self.cases)

    def counts(self) -> dict[str, int]:
        found = [case.verdict for case in self.cases]
        return {verdict: found.count(verdict) for verdict in CASE_VERDICTS if verdict in found}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "base": self.base,
            "cand": self.cand,
            "rule": {
                "thresholds": self.thresholds,
                "confidence": CONFIDENCE,
                "alpha": ALPHA,
                "resamples": self.resamples,
                "seed": self.seed,
                "interleaved": self.interleaved,
                "calibration": self.calibration,
            },
            "counts": self.counts(),
            "failed": self.failed,
            "cases": [asdict(case) for case in self.cases],
        }


def compare(
    base: Side,
    cand: Side,
    thresholds: dict[str, float | None] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    calibration: "Calibration | None" = None,
) -> Comparison:
    """Verdicts for every case of BASE and CAND; an error when they share no case.

    Two sides of one bench ab job are paired round by round; separate runs are judged with
    the drift of ``calibration`` for their case and metric, else with the recorded A/A drift."""
    thresholds = thresholds or parse_thresholds([])
    paired = interleaved(base, cand)
    base_cases, cand_cases = _by_case(base.records), _by_case(cand.records)
    if not set(base_cases) & set(cand_cases):
        raise UserError(
            f"{base.label} ({_suites(base)}, {len(base_cases)} cases) and {cand.label} "
            f"({_suites(cand)}, {len(cand_cases)} cases) have no case in common: compare runs "
            "of the same suite and settings"
        )
    cases = {**base_cases, **cand_cases}
    labels = case_labels({case_id: records[0]["config"] for case_id, records in cases.items()})
    cases = []
    for case_id in [*base_cases, *(c for c in cand_cases if c not in base_cases)]:

        def floor(metric: str, case_id: str = case_id) -> NoiseFloor | None:
            if paired:
                return None
            calibrated = calibration.floor(case_id, metric) if calibration else None
            return calibrated or recorded_floor(metric)

        cases.append(
            _compare_case(
                case_id,
                labels[case_id],
                base_cases.get(case_id, []),
                cand_cases.get(case_id, []),
                thresholds,
                resamples,
                seed,
                floor,
            )
        )
    return Comparison(
        base.describe(),
        cand.describe(),
        thresholds,
        resamples,
        seed,
        cases,
        paired,
        calibration.machine if calibration and not paired else None,
    )


def _suites(side: Side) -> str:
    return "suite " + ", ".join(side.describe()["suites"])


def _by_case(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    cases: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        cases.setdefault(record["case_id"], []).append(record)
    return cases


def _compare_case(
    case_id: str,
    label: str,
    base: list[dict[str, Any]],
    cand: list[dict[str, Any]],
    thresholds: dict[str, float | None],
    resamples: int,
    seed: int,
    floor: Callable[[str], NoiseFloor | None],
) -> CaseResult:
    base_ok = [r for r in base if r["status"] == "ok"]
    cand_ok = [r for r in cand if r["status"] == "ok"]
    metrics = []
    if base_ok and cand_ok:
        for metric in METRICS:
            if (threshold := thresholds.get(metric.name)) is not None:
                metrics.append(
                    _compare_metric(
                        metric, base_ok, cand_ok, threshold, resamples, seed, floor(metric.name)
                    )
                )
    verdict, note = _case_verdict(base, cand, base_ok, cand_ok, metrics)
    return CaseResult(
        case_id, label, verdict, note, status_summary(base), status_summary(cand), metrics
    )


def _case_verdict(base, cand, base_ok, cand_ok, metrics) -> tuple[str, str]:
    base_failed = [r for r in base if r["status"] in FAILED]
    cand_failed = [r for r in cand if r["status"] in FAILED]
    if not base:
        return "new", "only in CAND"
    if not cand:
        return "missing", "only in BASE"
    if cand_failed and not base_failed:
        return "broken", f"{cand_failed[0]['status']} in CAND: {_last_line(cand_failed[0])}"
    if not base_ok and not cand_ok:
        if base_failed and cand_failed:
            return "unchanged", f"fails on both sides: {_last_line(cand_failed[0])}"
        return "unchanged", f"not run on either side: {_last_line(cand[0])}"
    if not cand_ok:
        return "missing", f"not run in CAND: {_last_line(cand[0])}"
    if not base_ok:
        if base_failed:
            return "improved", f"fixed: {base_failed[0]['status']} in BASE, ok in CAND"
        return "new", f"not run in BASE: {_last_line(base[0])}"
    judged = [m.verdict for m in metrics if m.verdict != NOT_APPLICABLE]
    verdict = next((v for v in CASE_VERDICTS if v in judged), "unchanged")
    note = "; ".join(f"{m.label}: {m.note}" for m in metrics if m.verdict == verdict and m.note)
    if base_failed and cand_failed:
        note = f"fails on both sides in some repeats; {note}".rstrip("; ")
    return verdict, note


def _last_line(record: dict[str, Any]) -> str:
    lines = (record.get("reason") or record["status"]).strip().splitlines()
    return lines[-1] if lines else record["status"]


def _compare_metric(
    metric: Metric,
    base: list[dict[str, Any]],
    cand: list[dict[str, Any]],
    threshold: float,
    resamples: int,
    seed: int,
    floor: NoiseFloor | None,
) -> MetricResult:
    """One metric of a case; ``floor`` None: interleaved sides, paired by round (repeat)."""
    if metric.name == "final_loss" and (unequal := _unequal_training(base, cand)):
        return MetricResult(
            metric=metric.name,
            label=metric.label,
            unit=metric.unit,
            lower_is_better=metric.lower_is_better,
            verdict=NOT_APPLICABLE,
            note=unequal,
            threshold=threshold,
        )
    base_groups: list[list[float]] = []
    cand_groups: list[list[float]] = []
    if floor is None:
        base_rounds = {r.get("repeat"): metric.values(r) for r in base}
        cand_rounds = {r.get("repeat"): metric.values(r) for r in cand}
        rounds = [k for k in base_rounds if base_rounds[k] and cand_rounds.get(k)]
        base_groups = [base_rounds[k] for k in rounds]
        cand_groups = [cand_rounds[k] for k in rounds]
        if not rounds:  # no round ok on both sides: nothing to pair, judged as separate runs
            floor = recorded_floor(metric.name)
    if not base_groups or not cand_groups:
        base_groups = [v for v in map(metric.values, base) if v]
        cand_groups = [v for v in map(metric.values, cand) if v]
    return compare_groups(
        metric,
        base_groups,
        cand_groups,
        threshold,
        resamples,
        seed,
        interleaved=floor is None,
        noise_floor=floor,
    )


def _unequal_training(base: list[dict[str, Any]], cand: list[dict[str, Any]]) -> str | None:
    """Why the final losses of these records say nothing about the code, or None: a loss after
    more steps is lower, and a window that ends on time (``max_time_s``) or on its interval
    (``ci_target``) trains a slower side for fewer steps. So final loss is compared only where
    every repeat of both sides trained the same number of steps."""
    steps = {metric_value(r, "steps_trained") for r in [*base, *cand]}
    if len(steps) <= 1 or None in steps:
        return None
    return (
        f"not compared: the repeats trained {min(steps)} to {max(steps)} steps (the window's stop "
        "rule); a loss is compared at equal steps only (set min_steps = max_steps)"
    )
