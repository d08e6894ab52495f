"""Per-suite tables of aggregated cases, for the terminal (rich) and for Markdown.

Both renderers draw the same :class:`TableView`s, so the terminal and ``report.md`` never
disagree. Columns follow the suite: its varying axes first, then figures; a figure column is
shown only where some case of the suite has a value for it.
"""

import html
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bench.report.frame import (
    break_even_steps,
    eval_columns,
    speedup_vs_reference,
    varying_axes,
)

MIB = 1024 * 1024
MISSING = "—"
REASON_CHARS = 300

STEP_TIME_NOTE = (
    "step time: median over repeats of each repeat's median step time; ± is half the range of "
    "the repeats' medians, as % of the median (none with a single ok repeat)."
)
SPEEDUP_NOTE = "speedup: eager step time / this case's step time, all other settings equal."
MEMORY_NOTE = "peak MiB: CUDA allocator peak on cuda, the worker's peak RSS over the window on cpu."
CACHE_NOTE = (
    "compile cache: warm when inductor's on-disk cache served the compile (the usual case after "
    "a first run), cold when it compiled from scratch; compile_cache = 'cold' forces the latter."
)
BREAK_EVEN_NOTE = (
    "break-even steps: compile time / step time saved against eager, the steps after which "
    "compiling pays off (none where the compiled step is not faster)."
)


@dataclass(frozen=True)
class TableView:
    """A renderer-agnostic table: plain-text cells, numeric columns right-aligned."""

    title: str
    headers: list[str]
    numeric: list[bool]
    rows: list[list[str]]
    caption: str = ""


def suite_tables(agg: pd.DataFrame) -> list[TableView]:
    """For each suite: the table of its cases, then (if any) the table of cases not all ok."""
    speedup = speedup_vs_reference(agg)
    views = []
    for suite, cases in agg.groupby("suite", sort=False):
        axes = varying_axes(cases) or ["case_id"]
        run_ids = ", ".join(sorted(cases["run_id"].unique()))
        views.append(_results_table(f"{suite} (run {run_ids})", cases, axes, speedup))
        problems = cases[cases["num_ok"] < cases["num_repeats"]]
        if len(problems):
            views.append(_problems_table(f"{suite}: cases not ok", problems, axes))
    return views


def _results_table(
    title: str, cases: pd.DataFrame, axes: list[str], speedup: pd.Series
) -> TableView:
    columns: dict[str, list[str]] = {
        axis: [_format_setting(v) for v in cases[axis]] for axis in axes
    }
    columns["status"] = [_format_status(case) for case in cases.itertuples()]
    columns["step time"] = [_format_step_time(case) for case in cases.itertuples()]
    columns["samples/s"] = [_format_rate(v) for v in cases["samples_per_s"]]
    notes = [STEP_TIME_NOTE]
    if cases["tokens_per_s"].notna().any():
        columns["tokens/s"] = [_format_rate(v) for v in cases["tokens_per_s"]]
    if "compile" in axes:
        columns["speedup vs eager"] = [_format_speedup(v) for v in speedup[cases.index]]
        notes.append(SPEEDUP_NOTE)
    if cases["compile_time_s"].notna().any():
        columns["compile s"] = [_format_number(v, ".2f") for v in cases["compile_time_s"]]
        columns["compile cache"] = [_format_setting(v) for v in cases["compile_cache_state"]]
        notes.append(CACHE_NOTE)
    if "compile" in axes:
        breakeven = break_even_steps(cases)
        columns["break-even steps"] = [_format_number(v, ".0f") for v in breakeven]
        notes.append(BREAK_EVEN_NOTE)
    columns["peak MiB"] = [_format_mib(v) for v in _peak_bytes(cases)]
    notes.append(MEMORY_NOTE)
    optional = {
        "max batch": ("max_batch_size", ".0f"),
        "optimizer state MiB": ("optimizer_state_bytes", "mib"),
        "evals/step": ("function_evals_per_step", ".1f"),
        "amp skipped steps": ("amp_skipped_steps", ".0f"),
    }
    if "optimizer" not in axes:  # the same state everywhere: no news beside peak memory
        del optional["optimizer state MiB"]
    for header, (column, spec) in optional.items():
        if column in cases and cases[column].notna().any():
            columns[header] = [
                _format_mib(v) if spec == "mib" else _format_number(v, spec) for v in cases[column]
            ]
    if eval_columns(cases) and cases["steps_trained"].notna().any():
        # Held-out quality depends on how long a case trained: show it beside the eval figures.
        columns["steps trained"] = [_format_number(v, ".0f") for v in cases["steps_trained"]]
    for column in eval_columns(cases):
        if cases[column].notna().any():
            header = column.replace("_", " ", 1)
            columns[header] = [_format_metric(v) for v in cases[column]]
    if "flags" in cases and (cases["flags"].fillna("") != "").any():
        # A flagged number is not the device's own (a recompile in the window, a diverged loss).
        columns["flags"] = [text if isinstance(text, str) else "" for text in cases["flags"]]
    return TableView(
        title=title,
        headers=list(columns),
        numeric=[header not in (*axes, "status", "flags") for header in columns],
        rows=[list(row) for row in zip(*columns.values())],
        caption=" ".join(notes),
    )


def _problems_table(title: str, cases: pd.DataFrame, axes: list[str]) -> TableView:
    ids = axes if "case_id" in axes else [*axes, "case_id"]
    headers = [*ids, "status", "reason"]
    rows = [
        [
            *(_format_setting(getattr(case, header)) for header in ids),
            _format_status(case),
            _format_reason(case),
        ]
        for case in cases.itertuples()
    ]
    return TableView(title=title, headers=headers, numeric=[False] * len(headers), rows=rows)


def _peak_bytes(cases: pd.DataFrame) -> pd.Series:
    """The allocator peak on CUDA (what the model needs), the process RSS on CPU."""
    if "device" not in cases.columns:
        return cases["peak_rss_bytes"]
    return cases["peak_alloc_bytes"].where(cases["device"] == "cuda", cases["peak_rss_bytes"])


def _format_status(case: Any) -> str:
    if case.status == "partial":
        return f"partial: {case.num_ok}/{case.num_repeats} ok"
    return str(case.status)


def _format_step_time(case: Any) -> str:
    if _missing(case.step_time_s):
        return MISSING
    text = format_duration(case.step_time_s)
    if case.num_ok < 2:
        return text
    half_range_s = (case.repeat_max_s - case.repeat_min_s) / 2
    return f"{text} ±{100 * half_range_s / case.step_time_s:.1f}%"


def format_duration(seconds: float) -> str:
    """Three significant digits in the unit that keeps the number below 1000: µs, ms or s."""
    for unit, scale in (("µs", 1e-6), ("ms", 1e-3)):
        if seconds < 1000 * scale:
            return f"{_three_digits(seconds / scale)} {unit}"
    return f"{_three_digits(seconds)} s"


def _three_digits(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _format_rate(value: float) -> str:
    if _missing(value):
        return MISSING
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _format_speedup(value: float) -> str:
    return MISSING if _missing(value) else f"{value:.2f}×"


def _format_mib(value: float) -> str:
    return MISSING if _missing(value) else f"{value / MIB:,.0f}"


def _format_number(value: float, spec: str) -> str:
    return MISSING if _missing(value) else format(value, spec)


def _format_metric(value: float) -> str:
    if _missing(value):
        return MISSING
    return f"{value:.3f}" if abs(value) < 100 else f"{value:,.1f}"


def _format_setting(value: object) -> str:
    """Config values as written in a suite: 64 not 64.0 (a column with None turns ints float)."""
    if _missing(value):
        return MISSING
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _format_reason(case: Any) -> str:
    """The last non-empty line of the reason (an error's last line names the exception)."""
    lines = [] if _missing(case.reason) else str(case.reason).strip().splitlines()
    last = lines[-1].strip() if lines else MISSING
    if len(last) > REASON_CHARS:
        last = last[: REASON_CHARS - 1] + "…"
    # A partial case's status says how many repeats failed, not how the last one failed.
    return f"{case.failed_status}: {last}" if case.status == "partial" else last


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def render_terminal(agg: pd.DataFrame, console: Console) -> None:
    """Print each suite's tables. Cells are Text, so brackets in a reason are not rich markup."""
    for view in suite_tables(agg):
        table = Table(
            title=Text(view.title),
            caption=Text(view.caption) if view.caption else None,
            caption_justify="left",
        )
        for header, numeric in zip(view.headers, view.numeric):
            table.add_column(Text(header), justify="right" if numeric else "left", overflow="fold")
        for row in view.rows:
            table.add_row(*(Text(cell) for cell in row))
        console.print(table)


def render_markdown(agg: pd.DataFrame) -> str:
    """The same tables as GitHub-flavoured Markdown pipe tables, one section per table."""
    sections = ["# Benchmark report"]
    for view in suite_tables(agg):
        sections.append(f"## {_escape(view.title)}")
        sections.append(_pipe_table(view))
        if view.caption:
            sections.append(f"*{_escape(view.caption)}*")
    return "\n\n".join(sections) + "\n"


def _pipe_table(view: TableView) -> str:
    lines = [
        _pipe_row(view.headers),
        _pipe_row(["---:" if numeric else "---" for numeric in view.numeric]),
        *(_pipe_row(row) for row in view.rows),
    ]
    return "\n".join(lines)


def _pipe_row(cells: list[str]) -> str:
    return "| " + " | ".join(_escape(cell) for cell in cells) + " |"


def _escape(text: str) -> str:
    """Make text inert inside a Markdown table cell or heading: no HTML, no cell breaks.

    Backslashes are doubled first, so that a ``\\`` in the text cannot un-escape our ``\\|``.
    """
    text = html.escape(text, quote=False).replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.splitlines())
