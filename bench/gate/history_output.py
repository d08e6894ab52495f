"""A history as people and CI read it: a rich table of the change points and of the newest runs'
verdict per series, Markdown (a CI job summary) and JSON, drawn from the same rows as
``bench compare``'s (:mod:`bench.gate.compare_output`)."""

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bench import atomic
from bench.comparison_rule import ALPHA
from bench.gate import change_points as cp
from bench.gate.compare_output import STYLES, format_value
from bench.gate.history import Change, FoundChange, History, Series

HEADERS = [
    "series",
    "metric",
    "at run",
    "commit",
    "before",
    "after",
    "change [95% CI]",
    "p",
    "runs",
    "verdict",
    "what changed there",
]
VERDICT = HEADERS.index("verdict")


def _change_cells(change: Change, unit: str) -> list[str]:
    return [
        format_value(change.base_median, unit),
        format_value(change.cand_median, unit),
        f"{change.ratio - 1:+.1%} [{change.ci_low - 1:+.1%}, {change.ci_high - 1:+.1%}]",
    ]


def _changes(changed: dict[str, list]) -> str:
    parts = []
    for key, (old, new) in changed.items():
        if key == "commit":
            old, new = (str(old or "none")[:10], str(new or "none")[:10])
        parts.append(f"{key} {old} -> {new}")
    return ", ".join(parts)


def _changed_text(c: FoundChange) -> str:
    """What changed at the change point's run, else at the runs next to it."""
    if c.changed:
        return _changes(c.changed)
    near = [
        f"at run {n['index'] + 1} ({n['index'] - c.index:+d}): {_changes(n['changed'])}"
        for n in c.nearby
    ]
    return "nothing at this run; " + "; ".join(near) if near else "nothing recorded nearby"


def _p(p: float) -> str:
    return f"{p:.2g}" if p > 0 else "<1e-300"  # a p that underflowed is not zero


def series_label(s: Series) -> str:
    return f"{s.label} ({s.case_id}) on {s.machine}"


def rows(hist: History) -> list[list[str]]:
    """One row per kept change point, then one for the newest runs of each series."""
    table = []
    for s in hist.series:
        label = series_label(s)
        for c in s.change_points:
            table.append(
                [
                    label,
                    s.metric,
                    f"{c.index + 1}: {c.run_id}",
                    (c.commit or "unknown")[:10],
                    *_change_cells(c.change, s.unit),
                    f"{_p(c.p_value)} (rule {_p(c.change.p_value)})",
                    f"{c.change.num_runs_base} vs {c.change.num_runs_cand}",
                    f"change point: {c.change.verdict}",
                    _changed_text(c),
                ]
            )
        newest = s.newest
        if newest is None:
            table.append(
                [
                    label,
                    s.metric,
                    f"newest {hist.last}",
                    "",
                    "",
                    "",
                    "",
                    "",
                    str(len(s.points)),
                    "n/a",
                    f"too few runs to judge the newest {hist.last} (need {hist.last + 3})",
                ]
            )
            continue
        last = s.points[-1]
        table.append(
            [
                label,
                s.metric,
                f"newest {hist.last}: to {last.run_id}",
                (last.commit or "unknown")[:10],
                *_change_cells(newest, s.unit),
                _p(newest.p_value),
                f"{newest.num_runs_base} vs {newest.num_runs_cand}",
                newest.verdict,
                newest.note,
            ]
        )
    return table


def headline(hist: History) -> str:
    found = sum(len(s.change_points) for s in hist.series)
    alerts = sum(s.alert for s in hist.series)
    outcome = "FAIL" if hist.failed else "PASS"
    return (
        f"{outcome}: {hist.runs} runs, {len(hist.series)} series, {found} change points, "
        f"newest {hist.last} runs regressed in {alerts} series"
    )


def _thresholds(hist: History) -> str:
    return ", ".join(f"{name} ±{t * 100:g}%" for name, t in hist.thresholds.items())


def notes(hist: History) -> list[str]:
    lines = []
    if len(hist.machines) > 1:
        lines.append(
            f"{len(hist.machines)} machines, never mixed in one series: " + "; ".join(hist.machines)
        )
    below = sum(len(s.below_threshold) for s in hist.series)
    if below:
        lines.append(
            f"{below} change points found by E-Divisive were not kept: the rule did not resolve "
            f"their change beyond the threshold ({_thresholds(hist)})"
        )
    lines.append(
        f"method: E-Divisive means (Matteson & James 2014) on the log of the per-run medians, "
        f"permutation test at p <= {cp.ALPHA} ({cp.PERMUTATIONS} permutations), each change kept "
        f"when the whole 95% bootstrap interval of the segments' ratio lies beyond "
        f"the threshold ({_thresholds(hist)}) and a one-sided Mann-Whitney test has p <= {ALPHA}"
    )
    if hist.failed:
        lines.append(f"exit code 1: the newest {hist.last} runs regressed in a series")
    return lines


def render_terminal(hist: History, console: Console) -> None:
    title = f"bench history: {', '.join(hist.suites)}" + (
        f" since {hist.since}" if hist.since else ""
    )
    table = Table(title=title)
    for header in HEADERS:
        table.add_column(header, overflow="fold")
    for row in rows(hist):
        cells = [Text(cell) for cell in row]
        verdict = row[VERDICT].removeprefix("change point: ")
        cells[VERDICT].stylize(STYLES.get(verdict, ""))
        table.add_row(*cells)
    console.print(table)
    console.print(Text(headline(hist), style="bold red" if hist.failed else "bold green"))
    for line in notes(hist):
        console.print(line)


def render_markdown(hist: History) -> str:
    lines = [
        "## bench history",
        "",
        f"**{headline(hist)}**",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" for _ in HEADERS) + "|",
    ]
    for row in rows(hist):
        cells = [cell.replace("|", "\\|").replace("\n", " ") for cell in row]
        if "regressed" in row[VERDICT]:
            cells[VERDICT] = f"**{cells[VERDICT]}**"
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {line}" for line in notes(hist)]
    return "\n".join(lines).rstrip() + "\n"


def write_outputs(hist: History, markdown: Path | None, json_path: Path | None) -> None:
    if markdown is not None:
        atomic.write_text(markdown, render_markdown(hist))
    if json_path is not None:
        atomic.write_text(json_path, json.dumps(hist.to_dict(), indent=2) + "\n")
