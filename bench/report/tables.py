"""Per-suite tables of aggregated cases, for the terminal (rich) and for Markdown.

Both renderers draw the same :class:`TableView`s, so the terminal and ``report.md`` never
disagree. Columns follow the suite: its varying axes first, then figures; a figure column is
shown only where some case of the suite has a value for it.
"""

import html
from dataclasses import dataclass
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bench.report.comparisons import (
    EFFICIENCY,
    THRESHOLD,
    break_even,
    case_comparisons,
    format_break_even,
    format_comparison,
)
from bench.report.format import (
    format_count,
    format_metric,
    format_mib,
    format_number,
    format_rate,
    format_reason,
    format_setting,
    format_status,
    format_step_time,
)
from bench.report.frame import (
    eval_before_columns,
    eval_columns,
    peak_memory_bytes,
    varying_axes,
)
from bench.report.numerics import FLAG as NUMERICS_FLAG
from bench.report.numerics import LOSS_TOLERANCE, LossAgreement, format_agreement, loss_agreement

_COMPARISON_FORMAT = {EFFICIENCY: (".2f", "")}

STEP_TIME_NOTE = (
    "step time: median over repeats of each repeat's median step time; ± is half the range of "
    "the repeats' medians, as % of the median (none with a single ok repeat)."
)
MEMORY_NOTE = (
    "peak MiB: CUDA allocator peak on cuda; on cpu the rise of the worker's RSS over the window "
    "above its RSS before the model was built (the peak RSS itself in older records)."
)
NUMERICS_NOTE = (
    "loss vs fp32 eager: the largest relative difference of the mean training loss over the "
    "same window steps against the case's fp32 eager twin (same seed, data and other settings), "
    "and the step where it is; tolerance per precision: "
    + ", ".join(f"{p} {t:.0%}" for p, t in LOSS_TOLERANCE.items())
    + "; beyond it the case is flagged loss_beyond_tolerance (by the report, not the record)."
)
QUALITY_NOTE = (
    "The held-out figures are NOT comparable across these cases: they trained different numbers "
    "of steps (steps trained); set min_steps = max_steps to compare quality at equal training."
)
CACHE_NOTE = (
    "compile s: the compiled case's first step less its steady step, less the same excess of "
    "its eager twin's first step (first-call costs eager pays too); as recorded where there is "
    "no eager twin. compile cache: warm when inductor's on-disk cache served the compile (the "
    "usual case after a first run), cold when it compiled from scratch; compile_cache = 'cold' "
    "forces the latter."
)
COMPARISON_NOTE = (
    "speedup vs X: X's step time / this case's, all other settings equal; samples/s vs batch B: "
    "this case's samples/s / batch B's; [low, high]: the 95% interval of the comparison rule "
    "(bench/comparison_rule.py, as bench compare and bench gate judge), each repeat's value "
    "paired with the reference's of the same round (cases of one run are measured in rounds: "
    "no noise floor), the ratio the geometric mean of the rounds' ratios (so it can differ "
    "from the ratio of the step-time column's medians where rounds drift); cases from separate "
    "runs are unpaired and widened by the recorded drift. "
    f"'not resolved': the rule does not call it a change (the interval reaches within "
    f"±{THRESHOLD:.0%} of no difference, or its test is not significant, or one repeat a side); "
    f"'within ±{THRESHOLD:.0%}': the whole interval lies within the threshold."
)
SCALING_NOTE = (
    "scaling efficiency: samples/s with N processes / (N × samples/s of the one-process case "
    "with the same other settings), judged against perfect scaling (1); peak memory per rank: "
    "the largest rank's."
)
TARGET_NOTE = (
    "time/steps to target: until the suite's target metric was reached (metrics.target); "
    "target reached %: the share of the case's ok repeats that reached it."
)
BREAK_EVEN_NOTE = (
    "break-even steps: compile s / step time saved against eager, the steps after which "
    "compiling pays off, with the interval the speedup's carries; only where the rule resolves "
    "the compiled step as faster ('never' where it resolves it as slower, 'not resolved' else)."
)


@dataclass(frozen=True)
class TableView:
    """A renderer-agnostic table: plain-text cells, numeric columns right-aligned."""

    title: str
    headers: list[str]
    numeric: list[bool]
    rows: list[list[str]]
    caption: str = ""
    folded: bool = False
    """Secondary detail: folded (HTML ``<details>``) until the reader opens it."""
    key_columns: int = 1
    """The leading columns that name a row (a case's settings): repeated beside the columns that
    a page too narrow for the whole table folds away (bench/report/html.py)."""


def suite_tables(agg: pd.DataFrame, records: list[dict[str, Any]] | None = None) -> list[TableView]:
    """For each suite: the table of its cases, then (if any) the table of cases not all ok.
    With ``records``, each compiled or reduced-precision case's loss against its fp32 eager
    twin's (bench/report/numerics.py)."""
    agreements = loss_agreement(agg, records) if records is not None else {}
    views = []
    for suite, cases in agg.groupby("suite", sort=False):
        axes = varying_axes(cases) or ["case_id"]
        run_ids = ", ".join(sorted(cases["run_id"].unique()))
        views.append(_results_table(f"{suite} (run {run_ids})", cases, axes, agreements))
        problems = cases[cases["num_ok"] < cases["num_repeats"]]
        if len(problems):
            views.append(_problems_table(f"{suite}: cases not ok", problems, axes))
    return views


def _results_table(
    title: str, cases: pd.DataFrame, axes: list[str], agreements: dict[str, LossAgreement]
) -> TableView:
    columns: dict[str, list[str]] = {
        axis: [format_setting(v) for v in cases[axis]] for axis in axes
    }
    columns["status"] = [format_status(case) for case in cases.itertuples()]
    columns["step time"] = [format_step_time(case) for case in cases.itertuples()]
    columns["samples/s"] = [format_rate(v) for v in cases["samples_per_s"]]
    notes = [STEP_TIME_NOTE]
    if cases["tokens_per_s"].notna().any():
        columns["tokens/s"] = [format_rate(v) for v in cases["tokens_per_s"]]
    comparisons = case_comparisons(cases)
    for header, series in comparisons.items():
        columns[header] = [
            format_comparison(c, *_COMPARISON_FORMAT.get(header, ())) for c in series
        ]
    if comparisons:
        notes.append(COMPARISON_NOTE)
    if EFFICIENCY in comparisons:
        notes.append(SCALING_NOTE)
    if cases["compile_time_s"].notna().any():
        net = (
            cases["compile_time_net_s"]
            if "compile_time_net_s" in cases
            else cases["compile_time_s"]
        )
        columns["compile s"] = [format_number(v, ".2f") for v in net]
        columns["compile cache"] = [format_setting(v) for v in cases["compile_cache_state"]]
        notes.append(CACHE_NOTE)
    if "speedup vs eager" in comparisons:
        columns["break-even steps"] = [
            format_break_even(b) for b in break_even(cases, comparisons["speedup vs eager"])
        ]
        notes.append(BREAK_EVEN_NOTE)
    memory_header = "peak MiB per rank" if "nproc" in axes else "peak MiB"
    columns[memory_header] = [format_mib(v) for v in peak_memory_bytes(cases)]
    notes.append(MEMORY_NOTE)
    optional = {
        "params": ("num_params", "count"),
        "trainable params": ("trainable_params", "count"),
        "MFU": ("mfu", ".3f"),
        "J/sample": ("energy_per_sample_j", ".3g"),
        "data wait %": ("data_wait_fraction", "percent"),
        "time to target s": ("time_to_target_s", ".3g"),
        "steps to target": ("steps_to_target", ".0f"),
        "target reached %": ("target_reached", "percent"),  # the share of repeats
        "max batch": ("max_batch_size", ".0f"),
        "optimizer state MiB": ("optimizer_state_bytes", "mib"),
        "evals/step": ("function_evals_per_step", ".1f"),
        "amp skipped steps": ("amp_skipped_steps", ".0f"),
    }
    if "optimizer" not in axes:  # the same state everywhere: no news beside peak memory
        del optional["optimizer state MiB"]
    if not {"model_size", "workload", "finetune"} & set(axes):
        del optional["params"]
    if "finetune" not in axes and (cases["trainable_params"] == cases["num_params"]).all():
        del optional["trainable params"]
    for header, (column, spec) in optional.items():
        if column in cases and cases[column].notna().any():
            columns[header] = [_format_figure(v, spec) for v in cases[column]]
    # target_metric and target_value are settings of the case (config columns).
    if "target_metric" in cases and cases["target_metric"].notna().any():
        notes.append(TARGET_NOTE)
    if eval_columns(cases) and cases["steps_trained"].notna().any():
        # Held-out quality depends on how long a case trained: show it beside the eval figures.
        columns["steps trained"] = [format_number(v, ".0f") for v in cases["steps_trained"]]
        if cases["steps_trained"].dropna().nunique() > 1:
            notes.append(QUALITY_NOTE)
    for column in [*eval_before_columns(cases), *eval_columns(cases)]:
        if cases[column].notna().any():
            header = column.replace("_", " ")
            columns[header] = [format_metric(v) for v in cases[column]]
    flags = [
        text if isinstance(text, str) else "" for text in cases.get("flags", [""] * len(cases))
    ]
    mine = [agreements.get(case_id) for case_id in cases["case_id"]]
    if any(mine):
        columns["loss vs fp32 eager"] = [format_agreement(a) for a in mine]
        notes.append(NUMERICS_NOTE)
        # Beyond tolerance: the case learns differently from its twin (report-side flag).
        flags = [
            ", ".join(f for f in (text, NUMERICS_FLAG if a and a.beyond else "") if f)
            for text, a in zip(flags, mine)
        ]
    if any(flags):
        # A flagged number is not the device's own (a recompile in the window, a diverged loss).
        columns["flags"] = flags
    return TableView(
        title=title,
        headers=list(columns),
        numeric=[header not in (*axes, "status", "flags") for header in columns],
        rows=[list(row) for row in zip(*columns.values())],
        caption=" ".join(notes),
        key_columns=len(axes),
    )


def _format_figure(value: float, spec: str) -> str:
    if spec == "mib":
        return format_mib(value)
    if spec == "count":
        return format_count(value)
    if spec == "percent":
        return format_number(100 * value, ".1f")
    return format_number(value, spec)


def _problems_table(title: str, cases: pd.DataFrame, axes: list[str]) -> TableView:
    ids = axes if "case_id" in axes else [*axes, "case_id"]
    headers = [*ids, "status", "reason"]
    rows = [
        [
            *(format_setting(getattr(case, header)) for header in ids),
            format_status(case),
            format_reason(case),
        ]
        for case in cases.itertuples()
    ]
    return TableView(title=title, headers=headers, numeric=[False] * len(headers), rows=rows)


def render_terminal(
    agg: pd.DataFrame, console: Console, records: list[dict[str, Any]] | None = None
) -> None:
    """Print each suite's tables."""
    for view in suite_tables(agg, records):
        print_view(view, console)


def print_view(view: TableView, console: Console) -> None:
    """One table. Cells are Text, so brackets in a reason are not rich markup."""
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
    sections = ["# Benchmark report", *(markdown_table(view) for view in suite_tables(agg))]
    return "\n\n".join(sections) + "\n"


def markdown_table(view: TableView, level: int = 2) -> str:
    """A table's heading, pipe table and caption."""
    parts = [f"{'#' * level} {escape_markdown(view.title)}", _pipe_table(view)]
    if view.caption:
        parts.append(f"*{escape_markdown(view.caption)}*")
    return "\n\n".join(parts)


def _pipe_table(view: TableView) -> str:
    lines = [
        _pipe_row(view.headers),
        _pipe_row(["---:" if numeric else "---" for numeric in view.numeric]),
        *(_pipe_row(row) for row in view.rows),
    ]
    return "\n".join(lines)


def _pipe_row(cells: list[str]) -> str:
    return "| " + " | ".join(escape_markdown(cell) for cell in cells) + " |"


def escape_markdown(text: str) -> str:
    """Make text inert inside a Markdown table cell or heading: no HTML, no cell breaks.

    Backslashes are doubled first, so that a ``\\`` in the text cannot un-escape our ``\\|``.
    """
    text = html.escape(text, quote=False).replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.splitlines())
