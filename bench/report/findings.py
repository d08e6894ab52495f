"""The report's first section: per suite, each difference the comparison rule resolves, in one
sentence with its interval, then what it does not resolve and what would, then the cases whose
loss left their fp32 eager twin's (bench/report/numerics.py)."""

from dataclasses import dataclass, field
from html import escape
from typing import Any

import pandas as pd

from bench.report.comparisons import (
    EFFICIENCY,
    THRESHOLD,
    BreakEven,
    Comparison,
    break_even,
    case_comparisons,
    format_break_even,
    interval_text,
    unresolved_reason,
)
from bench.report.format import format_setting
from bench.report.frame import distinguishing_axes, varying_axes
from bench.report.numerics import LossAgreement, format_agreement, loss_agreement
from bench.report.tables import escape_markdown

UNCHANGED = f"No change beyond ±{THRESHOLD:.0%} (the whole interval within the rule's threshold)"
UNRESOLVED = "Not resolved (this machine's noise hides it)"


@dataclass
class SuiteFindings:
    suite: str
    resolved: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    """Resolved as no change: the whole interval within the rule's threshold."""
    numerics: list[str] = field(default_factory=list)
    compared: bool = False
    """Some case of the suite has a reference to compare with."""


def case_label(case: pd.Series, cases: pd.DataFrame, axis: str) -> str:
    """``compile=default workload=gpt``: the case's value of ``axis`` and of the axes that,
    with it, tell the suite's cases apart."""
    axes = varying_axes(cases)
    keys = [axis, *distinguishing_axes(cases, axes, axis)] if axis in axes else axes
    return " ".join(f"{k}={format_setting(case[k])}" for k in keys if k != "case_id") or str(
        case["case_id"]
    )


def suite_findings(agg: pd.DataFrame, records: list[dict[str, Any]]) -> list[SuiteFindings]:
    """One :class:`SuiteFindings` per suite of ``agg`` (aggregate rows)."""
    out = []
    for suite, cases in agg.groupby("suite", sort=False):
        found = SuiteFindings(str(suite))
        comparisons = case_comparisons(cases)
        found.compared = bool(comparisons)
        for column, series in comparisons.items():
            paid = break_even(cases, series) if column == "speedup vs eager" else None
            for position, (index, c) in enumerate(series.items()):
                if c is None:
                    continue
                label = case_label(cases.loc[index], cases, c.axis)
                sentence = _sentence(column, c, label)
                if c.resolved:
                    if paid is not None and isinstance(paid[position], BreakEven):
                        sentence += (
                            f"; compiling pays off after {format_break_even(paid[position])} steps"
                        )
                    found.resolved.append(sentence + ".")
                elif c.verdict == "unchanged":
                    found.unchanged.append(sentence + ".")
                else:
                    found.unresolved.append(f"{sentence}: {unresolved_reason(c)}.")
        suite_records = [r for r in records if r.get("suite") == suite]
        agreements = loss_agreement(cases, suite_records)
        within = []
        for case_id, a in agreements.items():
            case = cases[cases["case_id"] == case_id].iloc[0]
            axis = "precision" if "precision" in varying_axes(cases) else "compile"
            label = case_label(case, cases, axis)
            if a.beyond:
                found.numerics.append(_numerics_sentence(label, a))
            elif a.num_spans:
                within.append(f"{label}: {format_agreement(a)}")
        if within:
            found.numerics.append(
                "Training loss within tolerance of the fp32 eager twin's over the same steps: "
                + "; ".join(within)
                + "."
            )
        out.append(found)
    return out


def _sentence(column: str, c: Comparison, label: str) -> str:
    if column == EFFICIENCY:
        where = "above" if c.better else "below"
        text = f"{label}: scaling efficiency {interval_text(c, '.2f', '')}"
        return f"{text}, {where} perfect scaling" if c.resolved else f"{text} against perfect"
    if column.startswith("samples/s"):
        more = "more" if c.better else "fewer"
        text = f"{label}: {interval_text(c)} the samples/s of {c.reference}"
        return f"{text} ({more})" if c.resolved else text
    faster = "faster" if c.better else "slower"
    text = f"{label}: {interval_text(c)} the speed of {c.reference}"
    return f"{text} ({faster})" if c.resolved else text


def _numerics_sentence(label: str, a: LossAgreement) -> str:
    return (
        f"{label}: training loss {format_agreement(a)} of its fp32 eager twin's over the same "
        f"steps (up to step {a.last_step}): it learns differently, so its speed is not a like "
        "for like gain."
    )


def render_markdown(findings: list[SuiteFindings]) -> str:
    """The Findings section as Markdown."""
    parts = ["## Findings"]
    for f in findings:
        parts.append(f"### {escape_markdown(f.suite)}")
        parts += _markdown_list("Resolved", f.resolved or [_none(f)])
        if f.unchanged:
            parts += _markdown_list(UNCHANGED, f.unchanged)
        if f.unresolved:
            parts += _markdown_list(UNRESOLVED, f.unresolved)
        if f.numerics:
            parts += _markdown_list("Numerics against the fp32 eager twin", f.numerics)
    return "\n\n".join(parts)


def _none(f: SuiteFindings) -> str:
    if f.compared:
        return "none: the rule resolves no difference"
    return (
        "nothing compared: the suite varies no setting with a reference (compile, precision, "
        "optimizer, batch_size, finetune, num_workers, nproc)"
    )


def _markdown_list(title: str, items: list[str]) -> list[str]:
    return [f"**{title}:**", "\n".join(f"- {escape_markdown(item)}" for item in items)]


def render_html(findings: list[SuiteFindings]) -> str:
    """The Findings section as HTML."""
    parts = ['<section id="findings"><h2>Findings</h2>']
    for f in findings:
        parts.append(f"<h3>{escape(f.suite)}</h3>")
        lists = [
            ("Resolved", f.resolved or [_none(f)]),
            (UNCHANGED, f.unchanged),
            (UNRESOLVED, f.unresolved),
            ("Numerics against the fp32 eager twin", f.numerics),
        ]
        for title, items in lists:
            if items:
                rows = "".join(f"<li>{escape(item)}</li>" for item in items)
                parts.append(f"<p><b>{escape(title)}:</b></p><ul>{rows}</ul>")
    parts.append("</section>")
    return "".join(parts)
