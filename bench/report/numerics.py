"""Numerics next to speed: each compiled or reduced-precision case's training loss against its
fp32 eager twin's over the same steps (same suite, seed, data and every other setting).

A record's loss readings (``samples.loss``) are the mean loss of each block of window steps,
and blocks differ between cases (the stop rule sizes them from the step time), so the readings
are compared over spans both cases cover whole: between consecutive block ends the two cases
share, each side's mean loss over the span is the step-weighted mean of its blocks there. A
case is beyond tolerance when any span's mean differs from the twin's by more than the
precision's relative tolerance (:data:`LOSS_TOLERANCE`). A report-side check of the recorded
curves: the worker does not write it into the record; the report flags the case
(``loss_beyond_tolerance``) and names it in the findings.
"""

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.report.frame import axis_keys
from bench.results.store import PROBE_FLAG
from bench.spec.choices import COMPILE_ONLY_KEYS

# The largest relative difference of the mean training loss over the same steps that still
# counts as the same training, per precision of the case (its twin is fp32 eager). fp32 and
# tf32 (compile alone): inductor reorders float32 reductions, which moves a loss in its 6th-7th
# digit at first and the drift grows over training: 2%. AMP keeps fp32 weights and rounds the
# matmuls' inputs (fp16: 11 significant bits, relative rounding 2^-11 = 4.9e-4; bf16: 8 bits,
# 2^-8 = 3.9e-3): 3% and 5%. bf16 also stores the weights and the optimizer's state in bf16,
# whose updates lose the low bits of small steps: 10%.
LOSS_TOLERANCE = {"fp32": 0.02, "tf32": 0.02, "amp-fp16": 0.03, "amp-bf16": 0.05, "bf16": 0.10}
FLAG = "loss_beyond_tolerance"
TWIN_AXES = ("compile", "precision", *COMPILE_ONLY_KEYS)


@dataclass(frozen=True)
class LossAgreement:
    """One case's loss against its fp32 eager twin's."""

    twin_id: str
    num_spans: int
    """Spans both cases cover whole (0 where they share none)."""
    last_step: int
    """The window step the compared spans reach."""
    max_rel_diff: float
    """The largest |case - twin| / |twin| of a span's mean loss (inf for a non-finite loss)."""
    at_step: int
    """The end of that span."""
    tolerance: float

    @property
    def beyond(self) -> bool:
        return self.num_spans > 0 and not self.max_rel_diff <= self.tolerance


def loss_agreement(cases: pd.DataFrame, records: list[dict[str, Any]]) -> dict[str, LossAgreement]:
    """Per case id of ``cases`` (aggregate rows) that is compiled or not fp32, and has an ok
    fp32 eager twin: how far its loss readings are from the twin's."""
    if "compile" not in cases and "precision" not in cases:
        return {}
    readings = _readings(records)
    others = [k for k in axis_keys(cases) if k not in TWIN_AXES]
    compile_ = cases["compile"] if "compile" in cases else pd.Series("eager", index=cases.index)
    precision = cases["precision"] if "precision" in cases else pd.Series("fp32", cases.index)
    twins = {}
    for index, case in cases.iterrows():
        if compile_[index] == "eager" and precision[index] == "fp32":
            twins[_key(case, others)] = case["case_id"]
    out = {}
    for index, case in cases.iterrows():
        if compile_[index] == "eager" and precision[index] == "fp32":
            continue
        twin = twins.get(_key(case, others))
        tolerance = LOSS_TOLERANCE.get(str(precision[index]))
        if twin is None or tolerance is None:
            continue
        mine, theirs = readings.get(case["case_id"]), readings.get(twin)
        if not mine or not theirs:
            continue
        out[case["case_id"]] = _agreement(mine, theirs, twin, tolerance)
    return out


def _key(case: pd.Series, others: list[str]) -> tuple[Any, ...]:
    return (case["suite"], *(None if pd.isna(case[k]) else case[k] for k in others))


def _readings(records: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """Per case: its first ok repeat's readings (the same seed and data in every repeat)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        if record.get("status") != "ok" or PROBE_FLAG in (record.get("flags") or []):
            continue
        loss = (record.get("samples") or {}).get("loss") or []
        if loss and record["case_id"] not in out:
            out[record["case_id"]] = [
                (int(step), math.inf if value is None else float(value)) for step, value in loss
            ]
    return out


def span_means(readings: list[tuple[int, float]], ends: list[int]) -> list[float]:
    """The mean loss over each span between consecutive ``ends`` (0 first), from block means:
    each block's mean weighted by its steps. Every end must be a block end of ``readings``."""
    sums, previous, total = {}, 0, 0.0
    for step, value in readings:
        total += value * (step - previous)
        previous = step
        sums[step] = total
    sums[0] = 0.0
    return [(sums[b] - sums[a]) / (b - a) for a, b in zip([0, *ends], ends)]


def _agreement(
    mine: list[tuple[int, float]], theirs: list[tuple[int, float]], twin: str, tolerance: float
) -> LossAgreement:
    ends = sorted({s for s, _ in mine} & {s for s, _ in theirs})
    if not ends:
        return LossAgreement(twin, 0, 0, math.nan, 0, tolerance)
    diffs = [
        abs(a - b) / abs(b) if math.isfinite(a) and math.isfinite(b) and b else math.inf
        for a, b in zip(span_means(mine, ends), span_means(theirs, ends))
    ]
    worst = max(range(len(diffs)), key=lambda i: diffs[i])
    return LossAgreement(twin, len(ends), ends[-1], diffs[worst], ends[worst], tolerance)


def format_agreement(agreement: LossAgreement | None) -> str:
    """``+0.4% (tol 5%)``, ``12.1% at step 40: beyond 5%``, or — without a twin."""
    if agreement is None or agreement.num_spans == 0:
        return "—"
    a = agreement
    text = f"{a.max_rel_diff:.2%}" if math.isfinite(a.max_rel_diff) else "not finite"
    if a.max_rel_diff < 5e-5:
        text = "below 0.01%"
    if a.beyond:
        return f"{text} at step {a.at_step}: beyond {a.tolerance:.0%}"
    return f"{text} (tol {a.tolerance:.0%})"
