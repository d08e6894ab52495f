"""The FAQ's closing sentences: what the resolved data says, by the comparison rule
(bench/report/comparisons.py), or that nothing here resolves it and what to run."""

from typing import Any

import pandas as pd

from bench.report.comparisons import (
    BreakEven,
    break_even,
    case_comparisons,
    compare_rounds,
    format_break_even,
    format_comparison,
    rule_reason,
    unresolved_reason,
)
from bench.report.findings import case_label
from bench.report.format import format_metric, format_number, format_setting
from bench.report.frame import varying_axes
from bench.report.numerics import format_agreement, loss_agreement
from bench.results.metrics import METRIC_PATHS, metric_at


def target_rounds(
    records: list[dict[str, Any]],
    own: str | None,
    curves: pd.DataFrame | None,
    target: float | None,
) -> dict[str, dict[str, float]]:
    """Per case: each repeat's time to the target by round ("run_id/repeat"), the repeats
    that reached it only: from metrics.target (the suite's own), else from the loss curves."""
    out: dict[str, dict[str, float]] = {}
    if own is not None:
        for r in records:
            t = metric_at(r.get("metrics") or {}, METRIC_PATHS["time_to_target_s"])
            if r.get("status") == "ok" and isinstance(t, int | float) and t > 0:
                out.setdefault(r["case_id"], {})[f"{r['run_id']}/{r['repeat']}"] = float(t)
        return out
    if curves is None or target is None or curves.empty:
        return out
    for (case_id, run_id, repeat), curve in curves.groupby(["case_id", "run_id", "repeat"]):
        hit = curve[curve["loss"] <= target]
        if len(hit) and hit["window_s"].iloc[0] > 0:
            out.setdefault(case_id, {})[f"{run_id}/{repeat}"] = float(hit["window_s"].iloc[0])
    return out


def optimizer_answer(cases: pd.DataFrame, rounds: dict[str, dict[str, float]], where: str) -> str:
    """Which case reached the target first and by how much against the next, by the rule."""
    label = {case.case_id: format_setting(case.optimizer) for case in cases.itertuples()}
    reached = sorted(
        (c for c in rounds if rounds[c] and c in label),
        key=lambda c: sorted(rounds[c].values())[len(rounds[c]) // 2],
    )
    missed = [
        f"{label[case.case_id]} (final loss {format_metric(case.final_train_loss)} after "
        f"{format_number(case.steps_trained, '.0f')} steps)"
        for case in cases.itertuples()
        if case.case_id not in reached
    ]
    tail = f" Did not reach it: {', '.join(missed)}." if missed else ""
    if len(reached) < 2:
        return (
            f"Fewer than two optimizers reached {where}: nothing here compares them; rerun "
            f"suites/optimizers.toml with a longer window (max_time_s).{tail}"
        )
    first, second = reached[0], reached[1]
    rule = compare_rounds(
        rounds[second], rounds[first], lower_is_better=True, metric="time_to_target"
    )
    widen = 1 + rule.noise_floor.drift
    text = f"{rule.ratio:.2f}× [{rule.ci_low / widen:.2f}, {rule.ci_high * widen:.2f}] its time"
    if min(rule.repeats_base, rule.repeats_cand) < 2:
        text = f"{rule.ratio:.2f}× its time, one repeat"
    if rule.verdict == "improved":
        return (
            f"{label[first]} reached {where} first, in {text} of {label[second]}, the next "
            f"(resolved by the comparison rule).{tail}"
        )
    if rule.verdict == "unchanged":
        return (
            f"{label[first]} and {label[second]} reached {where} in the same time within "
            f"±5% ({text}): pick by memory or final loss.{tail}"
        )
    return (
        f"{label[first]} reached {where} soonest in the median, but against {label[second]} "
        f"({text}) the difference is not resolved: {rule_reason(rule)} "
        f"(suites/optimizers.toml).{tail}"
    )


def evaluation_answer(agg: pd.DataFrame, records: list[dict[str, Any]]) -> str:
    """What a precision or compile mode costs in quality here: its loss against its fp32 eager
    twin's over the same steps (bench/report/numerics.py), with its resolved speedups."""
    beyond, within = [], []
    for _, cases in agg.groupby("suite", sort=False):
        axis = "precision" if "precision" in varying_axes(cases) else "compile"
        for case_id, a in loss_agreement(cases, records).items():
            if a.num_spans == 0:
                continue
            case = cases[cases["case_id"] == case_id].iloc[0]
            label = f"{case['suite']}: {case_label(case, cases, axis)}"
            (beyond if a.beyond else within).append(f"{label}: {format_agreement(a)}")
    if not beyond and not within:
        return (
            "Nothing here compares quality at equal training against an fp32 eager twin: run "
            "suites/precision.toml (fixed steps per case) to see what a precision costs."
        )
    parts = []
    if beyond:
        parts.append(
            "Beyond its precision's tolerance, so learning differently from fp32 eager: "
            + "; ".join(beyond)
            + "."
        )
    if within:
        parts.append(
            "Training loss within tolerance of fp32 eager over the same steps: "
            + "; ".join(within)
            + "."
        )
    return " ".join(parts)


def break_evens(agg: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Per compiled case with an eager twin: its break-even steps where the rule resolves it as
    faster ("compile=default workload=mlp: 120 [95, 160]"), or why there is none."""
    paid, unresolved = [], []
    for _, cases in agg.groupby("suite", sort=False):
        speedups = case_comparisons(cases).get("speedup vs eager")
        if speedups is None:
            continue
        for (index, c), b in zip(speedups.items(), break_even(cases, speedups)):
            if c is None:
                continue
            label = case_label(cases.loc[index], cases, "compile")
            if isinstance(b, BreakEven):
                paid.append(f"{label} {format_break_even(b)}")
            elif not c.resolved:
                why = unresolved_reason(c)
                unresolved.append(f"{label} {format_comparison(c)} ({why})")
            else:
                unresolved.append(f"{label} {format_comparison(c)}: slower, never pays off")
    return paid, unresolved
