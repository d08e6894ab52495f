"""Every comparison the report makes, judged by the project's one rule (bench/comparison_rule.py).

A comparison is a case against its reference twin (the case of the same suite whose other
settings are equal): its speedup against eager, fp32, the suite's first optimizer or full
fine-tuning (step time), its samples/s against the smallest batch, and its scaling efficiency
(samples/s with N processes against N times the one-process twin's). Each side is one value per
repeat (the repeat's median step time, or its samples/s), as ``bench run``'s warning compares
them; the rule gives the 95% interval and calls the difference a change (``improved`` or
``regressed``) only when the whole interval lies beyond its 5% threshold and its test agrees.

Which interval: cases of one run are measured in rounds (bench/run/sweep.py, ``schedule``:
round k runs every case's repeat k, in the suite's order or shuffled within the round), so two
cases of one run are paired round by round (``interleaved``: the drift of the machine lands on
both sides of a round and cancels; no noise floor). Cases from different runs are separate
runs: unpaired, with the recorded A/A drift as their noise floor (``recorded_floor``); the
report has no machine calibration to hand (that is ``bench compare``'s, in bench/gate).
"""

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.comparison_rule import (
    DEFAULT_THRESHOLD,
    SampleComparison,
    Verdict,
    compare_samples,
    recorded_floor,
)
from bench.report.frame import reference_values

THRESHOLD = DEFAULT_THRESHOLD
ROUNDS_STEP = "rounds_step_time_s"
ROUNDS_RATE = "rounds_samples_per_s"


def first_value(column: str):
    """The suite's first value of ``column`` (its first optimizer): a reference."""
    return lambda cases: next((v for v in cases[column] if isinstance(v, str)), None)


def smallest_batch(cases: pd.DataFrame) -> Any:
    """The suite's smallest numeric batch size ("max" aside): a reference."""
    return _smallest(cases, "batch_size")


def _smallest(cases: pd.DataFrame, column: str) -> int | None:
    numeric = [v for v in cases[column] if isinstance(v, int | float) and v == v]
    return int(min(numeric)) if numeric else None


# Axis -> the suite's reference value (or how to find it) and what is compared: the step time
# (same batch: a speedup) or samples/s (different batches).
REFERENCES: list[tuple[str, Any, str]] = [
    ("compile", "eager", "step"),
    ("precision", "fp32", "step"),
    ("optimizer", first_value("optimizer"), "step"),
    ("batch_size", smallest_batch, "rate"),
    ("finetune", "full", "step"),
    ("num_workers", lambda cases: _smallest(cases, "num_workers"), "step"),
]
EFFICIENCY = "scaling efficiency"
# How a numeric reference is named: "speedup vs num_workers 0", "samples/s vs batch 64".
NUMBER_NAMES = {"batch_size": "batch"}


@dataclass(frozen=True)
class Comparison:
    """One case against its reference, as the report shows it."""

    value: float
    """The figure shown: a speedup (reference step time / the case's), a ratio of samples/s,
    or a scaling efficiency."""
    low: float
    high: float
    """Its 95% interval (widened by the noise floor for separate runs)."""
    rule: SampleComparison
    """The rule's verdict and every number it rests on (CAND = the case, BASE = the reference)."""
    reference: str
    """What it is compared with, in words: "eager", "batch 64", "perfect scaling"."""
    axis: str
    """The setting the case and its reference differ in: "compile", "batch_size", "nproc"."""

    @property
    def verdict(self) -> Verdict:
        return self.rule.verdict

    @property
    def resolved(self) -> bool:
        """The rule calls it a change: the case is better or worse than its reference."""
        return self.rule.verdict in ("improved", "regressed")

    @property
    def better(self) -> bool:
        """Faster, more samples/s, above perfect scaling (meaningful where resolved)."""
        return self.rule.verdict == "improved"


def compare_rounds(
    base: dict[str, float],
    cand: dict[str, float],
    *,
    lower_is_better: bool,
    metric: str,
    scale_base: float = 1.0,
) -> SampleComparison:
    """The rule on two cases' values per round ("run_id/repeat" -> value): paired on the rounds
    they share (one run: interleaved), else separate runs with the recorded A/A drift."""
    common = [key for key in cand if key in base]
    if common:
        return compare_samples(
            [[base[k] * scale_base] for k in common],
            [[cand[k]] for k in common],
            lower_is_better=lower_is_better,
            threshold=THRESHOLD,
            interleaved=True,
        )
    return compare_samples(
        [[v * scale_base] for v in base.values()],
        [[v] for v in cand.values()],
        lower_is_better=lower_is_better,
        threshold=THRESHOLD,
        interleaved=False,
        noise_floor=recorded_floor(metric),
    )


def _values(rounds: Any) -> bool:
    """A side with values to compare: a round -> value mapping that is not empty."""
    return isinstance(rounds, dict) and bool(rounds)


def _widened(rule: SampleComparison) -> tuple[float, float]:
    widen = 1 + rule.noise_floor.drift
    return rule.ci_low / widen, rule.ci_high * widen


def case_comparisons(cases: pd.DataFrame) -> dict[str, pd.Series]:
    """Per comparison column ("speedup vs eager", "samples/s vs batch 64", "scaling
    efficiency"), a Series over ``cases`` (aggregate rows) of :class:`Comparison`, None where
    a row has no twin or is the reference itself. Only columns where some row has one."""
    out: dict[str, pd.Series] = {}
    for suite_cases in (g for _, g in cases.groupby("suite", sort=False)):
        for name, series in _suite_comparisons(suite_cases).items():
            out[name] = pd.concat([out[name], series]) if name in out else series
    # A row of another suite, which has no such column, is None too (not reindex's NaN).
    return {
        name: series.reindex(cases.index).astype(object).where(lambda s: s.notna(), None)
        for name, series in out.items()
    }


def _suite_comparisons(cases: pd.DataFrame) -> dict[str, pd.Series]:
    out = {}
    if ROUNDS_STEP not in cases:
        return out
    for axis, reference, kind in REFERENCES:
        if axis not in cases or cases[axis].nunique(dropna=True) < 2:
            continue
        value = reference(cases) if callable(reference) else reference
        if value is None:
            continue
        column = ROUNDS_STEP if kind == "step" else ROUNDS_RATE
        twins = reference_values(cases, axis, reference, column)
        is_reference = cases[axis] == value
        name = str(value) if isinstance(value, str) else f"{NUMBER_NAMES.get(axis, axis)} {value}"
        items = []
        for index, rounds in cases[column].items():
            base = twins[index]
            if is_reference[index] or not (_values(base) and _values(rounds)):
                items.append(None)
                continue
            if kind == "step":
                rule = compare_rounds(base, rounds, lower_is_better=True, metric="step_time")
                low, high = _widened(rule)
                items.append(Comparison(1 / rule.ratio, 1 / high, 1 / low, rule, name, axis))
            else:
                rule = compare_rounds(base, rounds, lower_is_better=False, metric="throughput")
                low, high = _widened(rule)
                items.append(Comparison(rule.ratio, low, high, rule, name, axis))
        series = pd.Series(items, index=cases.index, dtype=object)
        if series.notna().any():
            label = "samples/s" if kind == "rate" else "speedup"
            out[f"{label} vs {name}"] = series
    if "nproc" in cases and cases["nproc"].nunique(dropna=True) > 1:
        out[EFFICIENCY] = _efficiencies(cases)
    return out


def _efficiencies(cases: pd.DataFrame) -> pd.Series:
    """samples/s with N processes against N times the one-process twin's (frame's
    scaling_efficiency), judged against perfect scaling (1)."""
    nnodes = cases["nnodes"].fillna(1) if "nnodes" in cases else 1
    world = cases["nproc"].fillna(1) * nnodes
    others = cases.drop(columns=[c for c in ("nproc", "nnodes") if c in cases])
    single = reference_values(others.assign(world_size=world), "world_size", 1, ROUNDS_RATE)
    items = []
    for index, rounds in cases[ROUNDS_RATE].items():
        base = single[index]
        if world[index] == 1 or not (_values(base) and _values(rounds)):
            items.append(None)
            continue
        rule = compare_rounds(
            base, rounds, lower_is_better=False, metric="throughput", scale_base=world[index]
        )
        low, high = _widened(rule)
        items.append(Comparison(rule.ratio, low, high, rule, "perfect scaling", "nproc"))
    return pd.Series(items, index=cases.index, dtype=object)


def repeats_to_resolve(rule: SampleComparison, threshold: float = THRESHOLD) -> int | None:
    """About how many repeats (rounds) a side would resolve this difference, if it is what was
    measured: the interval's half-width towards 1 (in logs) shrinks as 1/sqrt(n), and it must
    leave room for the threshold and the noise floor. None where no number of repeats would:
    the difference is within the threshold and floor, or there is no spread between repeats to
    scale (one repeat a side)."""
    n = min(rule.repeats_base, rule.repeats_cand)
    log_ratio = math.log(rule.ratio)
    spread = (
        math.log(rule.ratio / rule.ci_low)
        if log_ratio >= 0
        else math.log(rule.ci_high / rule.ratio)
    )
    margin = abs(log_ratio) - math.log(1 + threshold) - math.log(1 + rule.noise_floor.drift)
    if n < 2 or margin <= 0:
        return None
    return max(n + 1, math.ceil(n * (spread / margin) ** 2))


def format_comparison(comparison: Comparison | None, spec: str = ".2f", unit: str = "×") -> str:
    """``1.38× [1.30, 1.45]`` where the rule resolves it; ``not resolved`` after it where not
    (``within ±5%`` where the whole interval lies within the threshold; no interval from one
    repeat a side, which knows nothing of the spread between processes)."""
    if comparison is None:
        return "—"
    c = comparison
    text = interval_text(c, spec, unit)
    if c.resolved:
        return text
    if c.verdict == "unchanged":
        return f"{text} within ±{THRESHOLD:.0%}"
    return f"{text} not resolved"


def unresolved_reason(comparison: Comparison) -> str:
    """Why the rule does not resolve it, and what would: for a report's sentence."""
    return rule_reason(comparison.rule)


def rule_reason(rule: SampleComparison) -> str:
    """Why the rule does not call this a change, and what would (any metric's comparison)."""
    if min(rule.repeats_base, rule.repeats_cand) < 2:
        return "one repeat a side: the spread between processes is unknown; rerun with --repeats 3"
    if rule.verdict == "unchanged":
        return f"the whole interval lies within ±{THRESHOLD:.0%}: no change beyond the threshold"
    needed = repeats_to_resolve(rule)
    if needed is None:
        if not rule.interleaved and rule.noise_floor.drift > 0:
            return (
                f"separate runs drift by up to ±{rule.noise_floor.drift:.0%} here; run both in "
                "one sweep (interleaved) or with bench ab"
            )
        return (
            f"the difference is within the rule's ±{THRESHOLD:.0%} threshold: more repeats would "
            "at best show it unchanged"
        )
    return (
        f"this machine's noise hides it; at this spread about {needed} repeats a side would "
        "resolve a difference this size"
    )


def interval_text(c: "Comparison | BreakEven", spec: str = ".2f", unit: str = "×") -> str:
    """``1.38× [1.30, 1.45]``; ``1.38× (one repeat)`` where a side has one repeat (its
    interval, of one process's value, says nothing of the spread between processes)."""
    if isinstance(c, Comparison) and min(c.rule.repeats_base, c.rule.repeats_cand) < 2:
        return f"{c.value:{spec}}{unit} (one repeat)"
    return f"{c.value:{spec}}{unit} [{c.low:{spec}}, {c.high:{spec}}]"


@dataclass(frozen=True)
class BreakEven:
    """Steps after which compiling pays off, where the rule resolves the compiled step as
    faster: net compile time / step time saved, the saving from the speedup and its interval."""

    value: float
    low: float
    high: float
    resolved = True  # drawn like a resolved comparison (canvas.interval_bars)


def break_even(cases: pd.DataFrame, speedups: pd.Series) -> list[BreakEven | str | None]:
    """Per row of ``cases``: its :class:`BreakEven`; ``"never"`` where the rule resolves the
    compiled step as slower; ``"not resolved"`` where it resolves neither; None where there is
    no comparison (eager, no twin) or no compile time.

    The saving is eager's step time x (1 - 1 / speedup), so the interval of the speedup
    [low, high] carries to [compile / saving(high), compile / saving(low)] (the compile time's
    own spread between repeats is not in it)."""
    eager_s = reference_values(cases, "compile", "eager")
    compile_s = (
        cases["compile_time_net_s"]
        if "compile_time_net_s" in cases
        else cases.get("compile_time_s", pd.Series(math.nan, index=cases.index))
    )
    out: list[BreakEven | str | None] = []
    for index in cases.index:
        c = speedups.get(index)
        if c is None or pd.isna(compile_s[index]) or pd.isna(eager_s[index]):
            out.append(None)
        elif not c.resolved:
            out.append("not resolved")
        elif not c.better:
            out.append("never")
        else:
            steps = [
                compile_s[index] / (eager_s[index] * (1 - 1 / s)) for s in (c.value, c.high, c.low)
            ]
            out.append(BreakEven(*steps))
    return out


def format_break_even(value: BreakEven | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return f"{value.value:,.0f} [{value.low:,.0f}, {value.high:,.0f}]"
