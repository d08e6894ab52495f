"""A comparison as people and CI read it: a rich table, Markdown (a CI job summary), JSON.

All three draw the same rows, so the terminal, the job summary and the JSON never disagree.
"""

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bench import atomic
from bench.comparison_rule import ALPHA, RERUN
from bench.gate.compare import CaseResult, Comparison
from bench.gate.verdict import NOT_APPLICABLE, MetricResult

HEADERS = [
    "case",
    "metric",
    "BASE",
    "CAND",
    "change [95% CI]",
    "p",
    "repeats",
    "noise floor",
    "verdict",
    "note",
]
VERDICT = HEADERS.index("verdict")
STYLES = {
    "broken": "bold red",
    "regressed": "bold red",
    "inconclusive": "yellow",
    "improved": "green",
    "unchanged": "dim",
    "new": "cyan",
    "missing": "magenta",
    NOT_APPLICABLE: "dim",
}
MIB = 1024 * 1024


def rows(comparison: Comparison) -> list[list[str]]:
    """Table rows: a status row for a case judged on its status, then one row per metric that
    was judged or measured on one side only. A case's label is on its first row."""
    table = []
    for case in comparison.cases:
        case_rows = []
        if not case.metrics or case.verdict in ("broken", "new", "missing"):
            case_rows.append(_status_row(case))
        for metric in case.metrics:
            if metric.verdict != NOT_APPLICABLE or "either side" not in metric.note:
                case_rows.append(_metric_row(metric))
        case_rows[0][0] = f"{case.label} ({case.case_id})"
        table += case_rows
    return table


def _status_row(case: CaseResult) -> list[str]:
    return [
        "",
        "status",
        case.base_status,
        case.cand_status,
        "",
        "",
        "",
        "",
        case.verdict,
        case.note,
    ]


def _metric_row(m: MetricResult) -> list[str]:
    if m.verdict == NOT_APPLICABLE:
        return ["", m.label, *[""] * (VERDICT - 2), m.verdict, m.note]
    assert m.ratio is not None and m.ci_low is not None and m.ci_high is not None
    change = f"{m.ratio - 1:+.1%} [{m.ci_low - 1:+.1%}, {m.ci_high - 1:+.1%}]"
    return [
        "",
        m.label,
        format_value(m.base_median, m.unit),
        format_value(m.cand_median, m.unit),
        change,
        f"{m.p_value:.2g}",
        f"{m.repeats_base} vs {m.repeats_cand}",
        noise_floor_cell(m),
        m.verdict,
        m.note,
    ]


def noise_floor_cell(m: MetricResult) -> str:
    """Which noise floor the verdict used: none for interleaved rounds, else the drift and where
    it comes from (a calibration of this machine, or the project's recorded A/A runs)."""
    if m.interleaved:
        return "none: interleaved"
    assert m.noise_floor is not None
    where = "calibrated" if m.noise_floor_source.startswith("calibrated") else "uncalibrated"
    if m.noise_floor == 0:
        return "none: one run"
    return f"drift ±{m.noise_floor:.1%} ({where})"


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit == "s":
        return f"{value * 1e3:.3g} ms" if value < 1 else f"{value:.3g} s"
    if unit == "B":
        return f"{value / MIB:,.1f} MiB"
    if unit == "samples/s":
        return f"{value:,.0f}/s"
    if not unit and float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.3g} {unit}".rstrip()


def headline(comparison: Comparison) -> str:
    counts = comparison.counts()
    tally = ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
    outcome = "FAIL" if comparison.failed else "PASS"
    return f"{outcome}: {len(comparison.cases)} cases: {tally}"


def advice(comparison: Comparison) -> list[str]:
    lines = []
    detectable = [
        f"{case.label} {m.label} {'+' if m.lower_is_better else '-'}{m.smallest_detectable:.1%}"
        for case in comparison.cases
        for m in case.metrics
        if m.metric in ("step_time", "peak_memory") and m.smallest_detectable is not None
    ]
    if detectable:
        lines.append(
            "smallest change these runs could detect at this spread"
            f"{'' if comparison.interleaved else ' and noise floor'}: " + ", ".join(detectable)
        )
    if "inconclusive" in comparison.counts():
        lines.append(
            "inconclusive: the noise of these runs hides whether the change crosses the "
            f"threshold; {RERUN} (bench run --repeats N, or bench ab, which interleaves both sides)"
        )
    if comparison.failed:
        lines.append("exit code 1: a case regressed or broke")
    return lines


def _side(info: dict[str, Any]) -> str:
    commit = (info.get("commit") or "unknown commit")[:12]
    dirty = " (dirty)" if info.get("dirty") else ""
    return f"{info['source']} ({', '.join(info['suites'])} at {commit}{dirty})"


def title(comparison: Comparison) -> str:
    return f"BASE {_side(comparison.base)} vs CAND {_side(comparison.cand)}: {sides(comparison)}"


def sides(comparison: Comparison) -> str:
    if comparison.interleaved:
        return "interleaved (one bench ab job: paired rounds, no noise floor)"
    if comparison.calibration:
        return f"separate runs (noise floor: the drift calibrated on {comparison.calibration})"
    return (
        "separate runs, no calibration of this machine (noise floor: the largest drift in the "
        "project's recorded A/A runs; run bench calibrate SUITE)"
    )


def thresholds_line(comparison: Comparison) -> str:
    parts = [
        f"{name} {'off' if t is None else f'{t * 100:g}%'}"
        for name, t in comparison.thresholds.items()
    ]
    if comparison.interleaved:
        rule = (
            "rule: regressed when the whole 95% paired bootstrap interval of the rounds' ratios "
            f"CAND/BASE lies beyond the threshold and its one-sided tail has p <= {ALPHA}"
        )
    else:
        rule = (
            "rule: regressed when the whole 95% bootstrap interval of median(CAND)/median(BASE), "
            "widened by the noise floor (run-to-run drift), lies beyond the threshold and a "
            f"one-sided Mann-Whitney U test has p <= {ALPHA}"
        )
    return f"{rule}; thresholds: " + ", ".join(parts)


def render_terminal(comparison: Comparison, console: Console) -> None:
    table = Table(title=title(comparison), caption=thresholds_line(comparison))
    for header in HEADERS:
        table.add_column(header, overflow="fold")
    for row in rows(comparison):
        cells = [Text(cell) for cell in row]
        cells[VERDICT].stylize(STYLES.get(row[VERDICT], ""))
        table.add_row(*cells)
    console.print(table)
    style = "bold red" if comparison.failed else "bold green"
    console.print(Text(headline(comparison), style=style))
    for line in advice(comparison):
        console.print(line)


def render_markdown(comparison: Comparison) -> str:
    lines = [
        "## bench compare",
        "",
        f"**{headline(comparison)}**",
        "",
        _escape(title(comparison)),
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" for _ in HEADERS) + "|",
    ]
    for row in rows(comparison):
        cells = [_escape(cell) for cell in row]
        if row[VERDICT] in ("broken", "regressed"):
            cells[VERDICT] = f"**{cells[VERDICT]}**"
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", _escape(thresholds_line(comparison)), ""]
    lines += [f"- {_escape(line)}" for line in advice(comparison)]
    return "\n".join(lines).rstrip() + "\n"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_outputs(comparison: Comparison, markdown: Path | None, json_path: Path | None) -> None:
    """Write the requested files whole (temporary file, then rename)."""
    if markdown is not None:
        atomic.write_text(markdown, render_markdown(comparison))
    if json_path is not None:
        atomic.write_text(json_path, json.dumps(comparison.to_dict(), indent=2) + "\n")
