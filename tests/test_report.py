"""The report layer on hand-written runs in tests/fixtures/report/results.

The `compile_vs_eager` run (mlp, batch 64, cpu) holds, interleaved over 3 repeats:
  eager    ok: medians 0.010, 0.011, 0.012 s; IQRs 0.001, 0.002, 0.003 s; RSS 100, 101, 102 MiB;
           first steps 0.05 s (an excess of 0.05 - 0.011 = 0.039 s over the steady step)
  default  ok: medians 0.008, 0.008, 0.009 s; IQRs 0.0004, 0.0002, 0.0006 s; compile 4.992,
               1.492, 1.391 s (median 1.492; net of eager's first-step excess 1.492 - 0.039 =
               1.453 s); RSS 150, 160, 155 MiB
  reduce-overhead   one skipped record (CUDA graphs on cpu)
  max-autotune-no-cudagraphs   three error records, reasons ending "(repeat 0)" ... "(repeat 2)"
An older run of the same suite, a `gpt_batch` run (batch 8 vs 16) and a decoy under baselines/
with a later run id complete the tree.
"""

import io
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer
from rich.console import Console

from bench.errors import UserError
from bench.report.curves import loss_curves
from bench.report.faq import faq_sections
from bench.report.frame import (
    aggregate,
    config_columns,
    missing_figures,
    records_frame,
    scaling_efficiency,
    speedup_vs_reference,
    varying_axes,
)
from bench.report.html import MAX_COLUMNS, SCRIPT, render_table
from bench.report.plots import (
    batch_figure,
    compile_figure,
    fitted_bytes_per_param,
    model_size_figure,
    precision_figure,
    scaling_figure,
    telemetry_figure,
    write_plots,
)
from bench.report.plots_progress import finetune_figure, optimizer_figure
from bench.report.report import build_report
from bench.report.tables import TableView, render_markdown, render_terminal
from bench.results.store import find_latest_runs, read_records
from bench.spec.case import Case

RESULTS = Path(__file__).parent / "fixtures" / "report" / "results"
COMPILE_RUN = RESULTS / "compile_vs_eager" / "20261128-101502"
GPT_RUN = RESULTS / "gpt_batch" / "20261128-120000"
MIB = 1024 * 1024


@pytest.fixture
def frame() -> pd.DataFrame:
    return records_frame(read_records(COMPILE_RUN) + read_records(GPT_RUN))


def by_compile(agg: pd.DataFrame) -> pd.DataFrame:
    return agg[agg["suite"] == "compile_vs_eager"].set_index("compile")


def write_lines(path: Path, lines: list[str], end: str = "\n") -> Path:
    path.write_text("\n".join(lines) + end)
    return path


def fixture_lines() -> list[str]:
    return (COMPILE_RUN / "records.jsonl").read_text().splitlines()


# --- load -----------------------------------------------------------------------------------


def test_latest_run_of_each_suite_and_baselines_ignored():
    assert find_latest_runs(RESULTS) == [COMPILE_RUN, GPT_RUN]


def test_read_records_from_run_dir_or_file_in_order():
    records = read_records(COMPILE_RUN)
    assert records == read_records(COMPILE_RUN / "records.jsonl")
    assert [(r["config"]["compile"], r["repeat"]) for r in records[:4]] == [
        ("eager", 0),
        ("default", 0),
        ("reduce-overhead", 0),
        ("max-autotune-no-cudagraphs", 0),
    ]
    assert len(records) == 10


def test_bad_json_names_file_and_line(tmp_path):
    path = write_lines(tmp_path / "records.jsonl", [fixture_lines()[0], '{"schema": 1,', "{}"])
    with pytest.raises(UserError) as caught:
        read_records(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:2: not valid JSON")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("[1, 2]", "not a JSON object (got list)"),
        ('{"schema": 2, "case_id": "a", "status": "ok", "config": {}}', "unknown schema version 2"),
        ('{"schema": 1, "status": "ok", "config": {}}', "missing field 'case_id'"),
        ('{"schema": 1, "case_id": "a", "config": {}}', "missing field 'status'"),
        ('{"schema": 1, "case_id": "a", "status": "ok"}', "missing field 'config'"),
    ],
)
def test_invalid_record_names_file_line_and_problem(tmp_path, line, what):
    path = write_lines(tmp_path / "records.jsonl", [fixture_lines()[0], "", line])
    with pytest.raises(UserError) as caught:
        read_records(path)
    assert str(caught.value).startswith(f"{path}:3: {what}")


def test_cut_off_last_line_is_skipped_with_warning(tmp_path):
    lines = fixture_lines()
    path = write_lines(tmp_path / "records.jsonl", [*lines, lines[0][:40]], end="")
    with pytest.warns(UserWarning, match=r"records.jsonl:11: last line has no newline"):
        records = read_records(path)
    assert len(records) == 10


def test_empty_lines_are_skipped(tmp_path):
    path = write_lines(tmp_path / "records.jsonl", ["", fixture_lines()[0], "  ", ""])
    assert [r["repeat"] for r in read_records(path)] == [0]


# --- frame ----------------------------------------------------------------------------------


def test_frame_flattens_config_and_metrics(frame):
    first = frame.iloc[0]
    assert (first["suite"], first["repeat"], first["status"]) == ("compile_vs_eager", 0, "ok")
    assert (first["compile"], first["batch_size"], first["max_steps"]) == ("eager", 64, 5)
    assert first["step_time_median_s"] == 0.010
    assert first["step_time_iqr_s"] == 0.001
    assert first["peak_rss_bytes"] == 100 * MIB
    assert first["eval_accuracy"] == 0.90
    assert math.isnan(first["peak_alloc_bytes"]) and math.isnan(first["eval_perplexity"])
    skipped = frame.iloc[2]
    assert skipped["status"] == "skipped" and "CUDA graphs" in skipped["reason"]
    assert math.isnan(skipped["step_time_median_s"])


def test_aggregate_median_of_repeat_medians_and_spread(frame):
    agg = by_compile(aggregate(frame))
    eager, default = agg.loc["eager"], agg.loc["default"]
    assert eager["step_time_s"] == pytest.approx(0.011)
    assert (eager["repeat_min_s"], eager["repeat_max_s"]) == (0.010, 0.012)
    assert eager["repeat_spread"] == pytest.approx(0.002 / 0.011)
    assert eager["step_time_iqr_s"] == pytest.approx(0.002)
    assert eager["samples_per_s"] == pytest.approx(64 / 0.011, rel=1e-6)
    assert eager["peak_rss_bytes"] == 102 * MIB
    assert eager["eval_accuracy"] == pytest.approx(0.91)
    assert default["step_time_s"] == pytest.approx(0.008)
    assert default["repeat_spread"] == pytest.approx(0.001 / 0.008)
    assert default["step_time_iqr_s"] == pytest.approx(0.0004)
    assert default["compile_time_s"] == pytest.approx(1.492)
    assert default["peak_rss_bytes"] == 160 * MIB
    assert (default["status"], default["num_ok"], default["num_repeats"]) == ("ok", 3, 3)


def test_aggregate_keeps_status_and_reason_of_cases_never_ok(frame):
    agg = by_compile(aggregate(frame))
    skipped, error = agg.loc["reduce-overhead"], agg.loc["max-autotune-no-cudagraphs"]
    assert (skipped["status"], skipped["num_ok"], skipped["num_repeats"]) == ("skipped", 0, 1)
    assert "CUDA graphs" in skipped["reason"]
    assert (error["status"], error["num_ok"], error["num_repeats"]) == ("error", 0, 3)
    assert error["reason"].endswith("inductor failed (repeat 2)")
    assert math.isnan(error["step_time_s"])


def test_aggregate_partial_case_uses_only_ok_repeats(frame):
    first_default = frame.index[(frame["compile"] == "default") & (frame["repeat"] == 0)]
    frame.loc[first_default, ["status", "reason"]] = ["timeout", "killed after 600 s"]
    agg = aggregate(frame)
    default = by_compile(agg).loc["default"]
    assert (default["status"], default["failed_status"]) == ("partial", "timeout")
    assert (default["num_ok"], default["reason"]) == (2, "killed after 600 s")
    assert default["step_time_s"] == pytest.approx(0.0085)  # median of 0.008 and 0.009
    problem_row = "| default | 803445e67fde | partial: 2/3 ok | timeout: killed after 600 s |"
    assert problem_row in render_markdown(agg).splitlines()


def test_speedup_against_eager_by_hand(frame):
    agg = aggregate(frame)
    speedup = speedup_vs_reference(agg).set_axis(agg["compile"] + "/" + agg["suite"])
    assert speedup["eager/compile_vs_eager"] == 1.0
    assert speedup["default/compile_vs_eager"] == pytest.approx(0.011 / 0.008)  # 1.375
    assert math.isnan(speedup["reduce-overhead/compile_vs_eager"])
    # gpt_batch: each batch size is its own eager reference, never the other's.
    assert speedup[agg["suite"].eq("gpt_batch").to_numpy()].tolist() == [1.0, 1.0]


def test_speedup_is_nan_without_reference_case(frame):
    agg = aggregate(frame[frame["compile"] != "eager"])
    assert agg["suite"].tolist() == ["compile_vs_eager"] * 3
    assert speedup_vs_reference(agg).isna().all()


def test_varying_axes_per_suite_without_run_length_keys(frame):
    assert varying_axes(frame) == ["batch_size", "compile"]
    compile_suite = frame[frame["suite"] == "compile_vs_eager"].copy()
    compile_suite.loc[compile_suite.index[0], "max_steps"] = 100
    assert varying_axes(compile_suite) == ["compile"]


def test_an_axis_that_is_none_on_other_workloads_does_not_vary(frame):
    # Like seq_len in a suite crossing mlp (no sequence length) with a single gpt setting.
    mixed = frame[frame["suite"] == "compile_vs_eager"].copy()
    mixed["seq_len"] = None
    mixed.loc[mixed.index[0], "seq_len"] = 64
    assert "seq_len" not in varying_axes(mixed)
    mixed.loc[mixed.index[1], "seq_len"] = 128
    assert "seq_len" in varying_axes(mixed)


# --- tables and report ----------------------------------------------------------------------


def test_markdown_rows_by_hand(frame):
    markdown = render_markdown(aggregate(frame))
    lines = markdown.splitlines()
    assert "## compile_vs_eager (run 20261128-101502)" in lines
    # Spread: half the range of the repeat medians over the median, 0.001 / 0.011 = 9.1%.
    assert "| eager | ok | 11.0 ms ±9.1% | 5,818 | — | — | — | — | 102 | 0.910 | 0.380 |" in lines
    assert (
        # Paired by round: speedups 0.010/0.008 = 1.25, 0.011/0.008 = 1.375, 0.012/0.009 = 1.333,
        # their geometric mean (1.25 x 1.375 x 1.333)^(1/3) = 1.318. The bootstrap draws 3 of the
        # 3 rounds: all three the slowest (or the fastest) one with probability 1/27 > 2.5%, so
        # the interval's ends are the extreme rounds, [1.25, 1.375]: resolved (beyond 1.05).
        # Compile 1.453 s net (1.492 - 0.039); saved: eager's 0.011 s x (1 - 1 / speedup), so
        # break-even 1.453 / (0.011 x (1 - 1/1.318)) = 547, [1.453 / (0.011 x (1 - 1/1.375)),
        # 1.453 / (0.011 x (1 - 1/1.25))] = [484, 660].
        "| default | ok | 8.00 ms ±6.2% | 8,000 | 1.32× [1.25, 1.38] | 1.45 | cold, warm "
        "| 547 [484, 660] | 160 | 0.900 | 0.390 |" in lines
    )
    assert "| max-autotune-no-cudagraphs | error | — | — | — | — | — | — | — | — | — |" in lines
    error_row = (
        "| max-autotune-no-cudagraphs | 1a4b6c25346f | error | RuntimeError: inductor failed"
    )
    assert f"{error_row} (repeat 2) |" in lines
    # A single repeat has no range to show; tokens/s appears for the language model only;
    # samples/s against the smallest batch: 500 / 400 = 1.25, from one repeat: not resolved.
    assert "| 8 | ok | 20.0 ms | 400 | 25,600 | — | 300 | 5.000 | 148.4 |" in lines
    assert (
        "| 16 | ok | 32.0 ms | 500 | 32,000 | 1.25× (one repeat) not resolved | 320 | 4.900 "
        "| 134.3 |" in lines
    )


def test_markdown_escapes_pipes_and_html(frame):
    frame["suite"] = frame["suite"].replace("compile_vs_eager", "a|b<script>x</script>")
    skipped = frame["status"] == "skipped"
    frame.loc[skipped, "reason"] = "no | way <script>alert(1)</script>"
    markdown = render_markdown(aggregate(frame))
    assert "<script>" not in markdown
    assert "## a\\|b&lt;script&gt;x&lt;/script&gt; (run 20261128-101502)" in markdown
    assert "| no \\| way &lt;script&gt;alert(1)&lt;/script&gt; |" in markdown
    for table in markdown.split("\n\n"):
        rows = [line for line in table.splitlines() if line.startswith("|")]
        cell_breaks = {row.count("|") - row.count("\\|") for row in rows}
        assert len(cell_breaks) <= 1, table


def test_terminal_prints_reasons_literally_not_as_markup(frame):
    frame.loc[frame["status"] == "skipped", "reason"] = "bad [/bold] markup [red]x"
    console = Console(file=io.StringIO(), width=200)
    render_terminal(aggregate(frame), console)
    output = console.file.getvalue()
    assert "bad [/bold] markup [red]x" in output
    assert "11.0 ms ±9.1%" in output


def test_build_report_writes_markdown_html_and_figures(tmp_path):
    console = Console(file=io.StringIO(), width=200)
    out_dir = tmp_path / "report"
    report = build_report([COMPILE_RUN, GPT_RUN], out_dir, console)
    assert (report.markdown, report.html) == (out_dir / "report.md", out_dir / "report.html")
    markdown = report.markdown.read_text()
    assert "| 16 | ok | 32.0 ms | 500 | 32,000 | 1.25× (one repeat) not resolved |" in markdown
    # Findings first: before the first suite's table.
    assert markdown.index("## Findings") < markdown.index("## compile_vs_eager")
    names = sorted(path.name for path in report.figures)
    assert names == ["compile_vs_eager-compile.png", "gpt_batch-batch_size.png"]
    for name in names:
        assert f"](figures/{name})" in markdown
    assert sorted(p.name for p in out_dir.iterdir()) == ["figures", "report.html", "report.md"]
    assert "gpt_batch (run 20261128-120000)" in console.file.getvalue()


def test_build_report_without_records_is_a_user_error(tmp_path):
    (tmp_path / "records.jsonl").write_text("\n")
    with pytest.raises(UserError, match="no records to report"):
        build_report([tmp_path], tmp_path / "report", Console(file=io.StringIO()))


def _record(batch, status="ok", flags=(), metrics=None, repeat=0):
    config = Case.from_dict({"workload": "mlp", "batch_size": batch}).to_dict()
    return {
        "schema": 1,
        "run_id": "r1",
        "suite": "batch",
        "case_id": f"c{batch}",
        "repeat": repeat,
        "status": status,
        "reason": None,
        "config": config,
        "metrics": metrics or {},
        "flags": list(flags),
    }


def test_probes_are_left_out_flags_kept_and_max_batch_shown():
    step = {"median": 0.01, "iqr": 0.001, "n": 20}
    records = [
        _record(64, flags=["max_batch_probe"], metrics={"step_time_s": step}),
        _record(128, flags=["max_batch_probe"], metrics={"step_time_s": step}),
        _record("max", metrics={"max_batch_size": 128, "peak_rss_bytes": 2 * 2**20}),
        _record("max", metrics={"max_batch_size": 256, "peak_rss_bytes": 3 * 2**20}, repeat=1),
        _record(32, flags=["recompile_in_window"], metrics={"step_time_s": step}),
        _record(32, metrics={"step_time_s": step}, repeat=1),
    ]
    frame = records_frame(records)
    assert list(frame["batch_size"].astype(str)) == ["max", "max", "32", "32"]
    agg = aggregate(frame).set_index("case_id")
    assert agg.loc["cmax", "max_batch_size"] == 128  # the batch that fitted in every repeat
    assert agg.loc["c32", "flags"] == "recompile_in_window"  # one repeat's flag taints the case
    lines = render_markdown(aggregate(frame)).splitlines()
    header = next(line for line in lines if line.startswith("| batch_size |"))
    assert header.split(" | ")[-2:] == ["max batch", "flags |"]
    max_row = next(line for line in lines if line.startswith("| max |"))
    assert max_row.endswith("| 128 |  |")
    assert any(line.startswith("| 32 |") and "recompile_in_window" in line for line in lines)


def test_throughput_follows_the_case_step_time_with_two_repeats():
    # Repeats at 10 ms and 30 ms with batch 64: the case's step time is their median, 20 ms, so
    # its throughput is 64 / 0.020 = 3,200 samples/s, not the mean of 6,400 and 2,133 (4,267).
    records = [
        _record(64, metrics={"step_time_s": {"median": t}, "samples_per_s": 64 / t}, repeat=r)
        for r, t in enumerate((0.010, 0.030))
    ]
    (case,) = aggregate(records_frame(records)).itertuples()
    assert case.step_time_s == pytest.approx(0.020)
    assert case.samples_per_s == pytest.approx(3200)


def test_speedup_finds_the_eager_twin_of_a_compiled_case_with_compile_options():
    # A compiled case carries compile_scope, fullgraph and compile_cache; eager has them None.
    def record(compile_mode, step_s):
        config = Case.from_dict({"workload": "mlp", "compile": compile_mode}).to_dict()
        metrics = {"step_time_s": {"median": step_s}, "samples_per_s": 64 / step_s}
        return {**_record(64, metrics=metrics), "config": config, "case_id": compile_mode}

    agg = aggregate(records_frame([record("eager", 0.010), record("default", 0.008)]))
    speedup = dict(zip(agg["compile"], speedup_vs_reference(agg)))
    assert speedup == {"eager": pytest.approx(1.0), "default": pytest.approx(1.25)}


# --- fields added by other issues: fine-tuning, scaling, targets, data loading, telemetry ----


def _hand(case_id, config, metrics, repeat=0, suite="hand", samples=None, status="ok"):
    """A record as the worker writes it, with only the fields a test needs."""
    return {
        "schema": 1,
        "run_id": "20261128-130000",
        "suite": suite,
        "case_id": case_id,
        "repeat": repeat,
        "status": status,
        "reason": None if status == "ok" else "CUDA out of memory",
        "config": {"workload": "gpt", "batch_size": 8, "device": "cuda", **config},
        "metrics": metrics,
        "samples": samples or {},
        "flags": [],
    }


def _timed(step_s, batch=8, **metrics):
    return {"step_time_s": {"median": step_s}, "samples_per_s": batch / step_s, **metrics}


def finetune_records():
    # full: 1,000,000 trainable of 1,000,000; frozen: 10,000; lora: 8,192. Eval before/after.
    strategies = {
        "full": (1_000_000, 0.020, 2.0),
        "frozen": (10_000, 0.012, 2.6),
        "lora": (8_192, 0.014, 2.3),
    }
    return [
        _hand(
            name,
            {"finetune": name, "lora_rank": 8 if name == "lora" else None},
            _timed(
                step_s,
                num_params=1_000_000,
                trainable_params=trainable,
                peak_alloc_bytes=100 * MIB,
                eval={"loss": loss_after},
                eval_before={"loss": 3.0},
            ),
            suite="finetune",
        )
        for name, (trainable, step_s, loss_after) in strategies.items()
    ]


def scaling_records():
    # samples/s 100, 180, 320 at 1, 2, 4 processes: efficiency 1.0, 180/200 = 0.9, 320/400 = 0.8.
    rates = {1: 100.0, 2: 180.0, 4: 320.0}
    return [
        _hand(
            f"n{n}",
            {"nproc": n, "strategy": None if n == 1 else "ddp"},
            {
                "step_time_s": {"median": 0.08 * n / (rate / 100)},
                "samples_per_s": rate,
                "peak_alloc_bytes": (200 + n) * MIB,
                "ranks": [{"samples_per_s": rate / n}] * n,
            },
            suite="scaling",
        )
        for n, rate in rates.items()
    ]


def test_frame_picks_up_new_fields_and_unknown_config_keys():
    records = finetune_records() + scaling_records()
    records[0]["metrics"]["target"] = {
        "metric": "loss",
        "value": 2.5,
        "reached": True,
        "time_to_target_s": 4.0,
        "steps_to_target": 200,
    }
    records[0]["config"] |= {"target_metric": "loss", "target_value": 2.5}  # settings of the case
    records[0]["metrics"]["data_wait_fraction"] = 0.25
    frame = records_frame(records)
    full = frame.set_index("case_id").loc["full"]
    assert (full["trainable_params"], full["eval_before_loss"], full["eval_loss"]) == (
        1e6,
        3.0,
        2.0,
    )
    assert (full["time_to_target_s"], full["steps_to_target"], full["target_reached"]) == (
        4.0,
        200,
        1.0,
    )
    assert (full["target_metric"], full["data_wait_fraction"]) == ("loss", 0.25)
    assert frame.set_index("case_id").loc["n4", "num_ranks"] == 4
    assert math.isnan(frame.set_index("case_id").loc["frozen", "time_to_target_s"])
    # finetune, lora_rank, nproc and strategy are not Case fields on this branch: still axes.
    # Not Case fields on this branch, yet config columns; those with two values are axes.
    assert {"finetune", "lora_rank", "nproc", "strategy"} <= set(config_columns(frame))
    assert {"finetune", "nproc"} <= set(varying_axes(frame))


def test_missing_figures_are_named():
    frame = records_frame(finetune_records())
    missing = missing_figures(frame)
    assert "MFU (metrics.flops.mfu)" in missing
    assert "trainable parameters (metrics.trainable_params)" not in missing
    assert "held-out evaluation (metrics.eval)" not in missing


def test_scaling_efficiency_by_hand_next_to_memory_per_rank():
    agg = aggregate(records_frame(scaling_records()))
    assert scaling_efficiency(agg).round(6).tolist() == [1.0, 0.9, 0.8]
    lines = render_markdown(agg).splitlines()
    header = next(line for line in lines if line.startswith("| nproc |"))
    assert "scaling efficiency" in header and "peak MiB per rank" in header
    assert any(
        line.startswith("| 4 | ok |") and "| 0.80 (one repeat) not resolved |" in line
        for line in lines
    )


def test_finetune_table_shows_trainable_params_and_quality_before_after():
    lines = render_markdown(aggregate(records_frame(finetune_records()))).splitlines()
    header = next(line for line in lines if line.startswith("| finetune |"))
    for column in ("trainable params", "eval before loss", "eval loss", "speedup vs full"):
        assert column in header
    # frozen: 20 ms / 12 ms = 1.67x the full fine-tune's speed, 10K of 1M parameters trained.
    row = next(line for line in lines if line.startswith("| frozen |"))
    assert "| 1.67× (one repeat) not resolved |" in row and "| 10K |" in row and "| 1M |" in row
    assert "| 3.000 | 2.600 |" in row


def test_speedup_against_first_optimizer_and_samples_per_s_against_smallest_batch():
    records = [
        _hand("sgd", {"optimizer": "sgd", "lr": 0.01}, _timed(0.010)),
        _hand("adam", {"optimizer": "adam", "lr": 0.001}, _timed(0.020)),
        _hand("b8", {"batch_size": 8}, _timed(0.010), suite="batch"),
        _hand("b32", {"batch_size": 32}, _timed(0.020, batch=32), suite="batch"),
    ]
    lines = render_markdown(aggregate(records_frame(records))).splitlines()
    # adam: sgd's 10 ms / 20 ms = 0.50x (its own lr does not hide the twin).
    unresolved = "(one repeat) not resolved |"
    assert any(
        line.startswith("| adam | 0.001 | ok |") and f"| 0.50× {unresolved}" in line
        for line in lines
    )
    # batch 32: 1,600 samples/s against batch 8's 800: 2.00x.
    assert any(line.startswith("| 32 | ok |") and f"| 2.00× {unresolved}" in line for line in lines)


# --- figures ---------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _written(plot, tmp_path):
    (plot,) = write_plots([plot], tmp_path, "suite")
    data = plot.path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 5_000
    return plot


def _bar_heights(ax):
    """The heights of the bars drawn (NaN bars, for a case without the value, left out)."""
    bars = [bar for c in ax.containers if isinstance(c, BarContainer) for bar in c]
    return [round(bar.get_height(), 6) for bar in bars if not math.isnan(bar.get_height())]


def test_compile_figure_bars_are_speedup_compile_time_and_break_even(tmp_path, frame):
    agg = aggregate(frame)
    cases = agg[agg["suite"] == "compile_vs_eager"]
    plot = compile_figure(cases, ["compile"])
    speedup_ax, compile_ax, break_even_ax = plot.figure.axes
    # default: the geometric mean of the rounds' speedups 1.25, 1.375 and 1.333 (1.318), its
    # error bar the rule's interval [1.25, 1.375] (test_markdown_rows_by_hand).
    speedup = (1.25 * 1.375 * (0.012 / 0.009)) ** (1 / 3)
    assert _bar_heights(speedup_ax) == [round(speedup, 6)]
    ((low, high),) = _error_bar_ends(speedup_ax)
    assert (low, high) == (pytest.approx(1.25), pytest.approx(1.375))
    assert _bar_heights(compile_ax) == [round(1.492 - 0.039, 6)]  # net of eager's excess
    saved = 0.011 * (1 - 1 / speedup)
    assert _bar_heights(break_even_ax) == [round(1.453 / saved, 6)]  # 547 steps
    ((low, high),) = _error_bar_ends(break_even_ax)
    assert low == pytest.approx(1.453 / (0.011 * (1 - 1 / 1.375)))  # 484
    assert high == pytest.approx(1.453 / (0.011 * (1 - 1 / 1.25)))  # 660
    # Modes skipped on this device take no place on any panel (no empty category).
    for ax in plot.figure.axes:
        assert [tick.get_text() for tick in ax.get_xticklabels()] == ["default"]
    assert "95% interval" in plot.caption and "not resolved" in plot.caption
    _written(plot, tmp_path)


def _error_bar_ends(ax):
    """(low, high) of each vertical error bar drawn."""
    ends = []
    for container in ax.containers:
        if isinstance(container, ErrorbarContainer):
            (segments,) = [c.get_segments() for c in container.lines[2]]
            ends += [(seg[0][1], seg[1][1]) for seg in segments]
    return ends


def test_each_view_figure_is_drawn_from_its_records(tmp_path):
    agg = aggregate(records_frame(scaling_records()))
    plot = _written(scaling_figure(agg, ["nproc", "strategy"]), tmp_path)
    # The efficiency curve (the dashed line at 1.0 has two points too, at the axis' ends).
    curves = [list(line.get_ydata()) for line in plot.figure.axes[0].get_lines()]
    assert [round(y, 6) for y in curves[0]] == [1.0, 0.9, 0.8]
    agg = aggregate(records_frame(finetune_records()))
    plot = _written(finetune_figure(agg, ["finetune", "lora_rank"]), tmp_path)
    params_ax, quality_ax = plot.figure.axes
    assert sorted(_bar_heights(params_ax)) == [8_192, 10_000, 1e6, 1e6, 1e6, 1e6]
    assert sorted(_bar_heights(quality_ax)) == [2.0, 2.3, 2.6, 3.0, 3.0, 3.0]


def test_optimizer_figure_time_to_the_loss_every_case_reached(tmp_path):
    # sgd: 10 ms steps, losses 2.0 at step 1, 1.0 at 2, 0.9 at 3; adam: 20 ms, 1.5, 0.5, 0.4.
    # Common target: the larger best loss, 0.9: sgd reaches it at 30 ms, adam (0.5) at 40 ms.
    records = [
        _hand(
            name,
            {"optimizer": name},
            _timed(step, optimizer={"state_bytes": state}),
            suite="opt",
            samples={"step_time_s": [step] * 3, "loss": [[1, a], [2, b], [3, c]]},
        )
        for name, step, state, (a, b, c) in (
            ("sgd", 0.010, 0, (2.0, 1.0, 0.9)),
            ("adam", 0.020, 2 * MIB, (1.5, 0.5, 0.4)),
        )
    ]
    agg = aggregate(records_frame(records))
    plot = _written(optimizer_figure(agg, records, ["optimizer"]), tmp_path)
    curve_ax, time_ax, state_ax = plot.figure.axes
    assert _bar_heights(time_ax) == [0.03, 0.04]
    assert _bar_heights(state_ax) == [0.0, 2.0]
    assert "0.9" in plot.caption


def test_batch_model_size_precision_and_telemetry_figures(tmp_path):
    batch = [
        _hand(f"b{b}", {"batch_size": b}, _timed(0.01 * b / 8, batch=b, peak_alloc_bytes=b * MIB))
        for b in (8, 16, 32)
    ]
    batch.append(
        _hand("bmax", {"batch_size": "max"}, {"max_batch_size": 64, "max_batch_capped": False})
    )
    agg = aggregate(records_frame(batch))
    plot = _written(batch_figure(agg, ["batch_size"]), tmp_path)
    (line,) = [ln for ln in plot.figure.axes[1].get_lines() if len(ln.get_xdata()) == 3]
    assert list(line.get_ydata()) == [8.0, 16.0, 32.0]  # MiB at batch 8, 16, 32
    sizes = [
        _hand(
            f"m{n}",
            {"model_size": str(n)},
            _timed(0.01, num_params=n, peak_alloc_bytes=1000 + 16 * n),
        )
        for n in (1_000_000, 2_000_000, 4_000_000)
    ]
    agg = aggregate(records_frame(sizes))
    assert fitted_bytes_per_param(agg) == pytest.approx(16.0)
    plot = _written(model_size_figure(agg, ["model_size"]), tmp_path)
    assert "16.0 B/param" in plot.figure.axes[2].get_title()
    precisions = [
        _hand(p, {"precision": p}, _timed(s, final_train_loss=loss, peak_alloc_bytes=m * MIB))
        for p, s, loss, m in (("fp32", 0.02, 1.0, 200), ("bf16", 0.01, 1.1, 120))
    ]
    plot = _written(precision_figure(aggregate(records_frame(precisions)), ["precision"]), tmp_path)
    # bf16 against fp32: 0.02 / 0.01 = 2x (fp32, the reference, has no bar of its own).
    assert [_bar_heights(ax) for ax in plot.figure.axes] == [[2.0], [200.0, 120.0], [1.0, 1.1]]
    telemetry = {
        "gpu": [
            {
                "index": 0,
                "t_s": [0.0, 0.1, 0.2],
                "gpu_util_percent": [90, 95, 97],
                "power_w": [300, 310, 320],
                "sm_clock_mhz": [1980, 1980, 1965],
            }
        ]
    }
    record = _hand("t", {}, _timed(0.01), samples={"telemetry": telemetry})
    plot = _written(telemetry_figure([record]), tmp_path)
    util_ax = plot.figure.axes[0]
    assert [list(ln.get_ydata()) for ln in util_ax.get_lines() if len(ln.get_xdata()) == 3] == [
        [90, 95, 97]
    ]
    assert telemetry_figure([_hand("t", {}, _timed(0.01))]) is None  # no NVML timeline: no figure


# --- HTML and FAQ ----------------------------------------------------------------------------


def test_html_is_self_contained_and_escapes_user_strings(tmp_path):
    records = read_records(COMPILE_RUN)
    for record in records:
        record["suite"] = "<script>alert(1)</script>"
        if record["status"] != "ok":
            record["reason"] = "boom <img src=x onerror=alert(1)>"
    run = tmp_path / "run"
    run.mkdir()
    (run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    report = build_report([run], tmp_path / "out", Console(file=io.StringIO()))
    page = report.html.read_text()
    # The one script is the page's own (sorting tables); the suite's name is text.
    assert page.lower().count("<script") == 1 and f"<script>{SCRIPT}</script>" in page
    assert "<img src=x" not in page
    assert "boom &lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(//|[a-z]+:(?!image/png;base64))""", page)
    assert page.count('src="data:image/png;base64,') == len(report.figures) == 1
    assert "<script" not in report.markdown.read_text().lower()


def test_faq_names_the_suite_to_run_when_runs_are_missing():
    records = read_records(COMPILE_RUN)
    sections = faq_sections(aggregate(records_frame(records)), records)
    compute, optimizers, evaluation, challenges = sections
    assert compute.missing == ["suites/model_size.toml: no record holds an MFU (metrics.flops)"]
    assert not compute.tables
    assert optimizers.missing[0].startswith("suites/optimizers.toml")
    assert not optimizers.tables
    assert evaluation.runs == ["compile_vs_eager/20261128-101502"]
    overhead = "Compile overhead (net of eager's own first-step excess): 1.45 to 1.45 s"
    assert any(line.startswith(overhead) for line in challenges.lines)
    assert any(m.startswith("suites/batch_size.toml") for m in challenges.missing)


def test_faq_compute_answer_uses_the_measured_mfu():
    # MFU 0.5 of a 1e15 FLOP/s peak: 1B parameters on 20B tokens, 1.2e20 FLOPs, take
    # 1.2e20 / 5e14 = 240,000 s = 66.7 device-hours.
    metrics = _timed(
        0.01, flops={"mfu": 0.5, "peak_per_s": 1e15, "peak_device": "X", "per_step": 1e12}
    )
    records = [_hand("m", {}, metrics)]
    compute = faq_sections(aggregate(records_frame(records)), records)[0]
    assert compute.runs == ["hand/20261128-130000"]
    assert compute.tables[0].rows[0][:4] == ["1B", "2e+10", "1.2e+20", "67"]


def test_scaling_efficiency_counts_every_node_s_ranks():
    # World size nproc x nnodes, against the one-process one-node case: 1000 samples/s alone;
    # 1800 on 2 ranks (0.90), whether on one node or two; 3400 on 4 (3400 / 4000 = 0.85).
    rates = {(1, 1): 1000.0, (2, 1): 1800.0, (1, 2): 1800.0, (2, 2): 3400.0}
    records = [
        _hand(f"p{p}n{n}", {"nproc": p, "nnodes": n}, _timed(8 / rate), suite="scaling")
        for (p, n), rate in rates.items()
    ]
    agg = aggregate(records_frame(records))
    assert agg["samples_per_s"].round(6).tolist() == [1000.0, 1800.0, 1800.0, 3400.0]
    assert scaling_efficiency(agg).round(6).tolist() == [1.0, 0.9, 0.9, 0.85]


def test_scaling_twin_with_the_same_strategy_where_one_process_records_one():
    # ddp: 100 samples/s at 1, 160 at 2 (0.8); fsdp: 50 at 1, 90 at 2 (0.9), not 90 / 200.
    rates = {("ddp", 1): 100.0, ("ddp", 2): 160.0, ("fsdp", 1): 50.0, ("fsdp", 2): 90.0}
    records = [
        _hand(f"{s}{n}", {"nproc": n, "strategy": s}, _timed(8 / rate), suite="scaling")
        for (s, n), rate in rates.items()
    ]
    agg = aggregate(records_frame(records))
    assert scaling_efficiency(agg).round(6).tolist() == [1.0, 0.8, 1.0, 0.9]


def test_a_wide_table_keeps_its_first_columns_and_folds_the_rest():
    headers = ["workload", "compile"] + [f"figure {i}" for i in range(12)]
    view = TableView("wide", headers, [False, False] + [True] * 12, [["mlp", "eager"] + ["1"] * 12])
    view = TableView(**{**view.__dict__, "key_columns": 2})
    html = render_table(view)
    main, folded = html.split("<details>")
    assert main.count("<th>") == MAX_COLUMNS
    # The folded table names its row again (the two settings), then the 4 columns left over.
    assert folded.count("<th>") == 2 + len(headers) - MAX_COLUMNS
    assert "<summary>more columns: figure 8, figure 9, figure 10, figure 11</summary>" in folded


OPTIMIZERS_RUN = Path(__file__).parent / "fixtures" / "report" / "optimizers" / "20261203-171719"


def test_outliers_are_marked_instead_of_flattening_the_other_loss_curves():
    # A real run of suites/optimizers on this 2-core CPU under load: rmsprop's first readings
    # are 4,300 and 1,446, adagrad's 14.6; lbfgs ran 239 s of steps, muon 5 steps of ~10 s.
    records = read_records(OPTIMIZERS_RUN)
    agg = aggregate(records_frame(records))
    plot = optimizer_figure(agg, records, ["optimizer"])
    loss_ax = plot.figure.axes[0]
    bottom, top = loss_ax.get_ylim()
    right = loss_ax.get_xlim()[1]
    assert top < 10 and right < 239  # neither 4,300 nor lbfgs' 239 s sets the scale
    title = loss_ax.get_title()
    assert "rmsprop reads up to 4.3e+03" in title and "adagrad reads up to 14.6" in title
    assert "lbfgs runs on to 239 s" in title and "lbfgs runs on to" in plot.caption
    marked = [line for line in loss_ax.get_lines() if line.get_marker() == "^"]
    assert marked and all(max(line.get_ydata()) <= top for line in marked)
    curves = loss_curves(records, ["optimizer"])
    # Marked off scale: rmsprop, adagrad (readings), lbfgs (time). Muon trained 5 steps and its
    # loss moved from 2.24 to 1.97 only: 11% of any panel that holds the others from 2.3 down.
    skipped = {"rmsprop", "adagrad", "lbfgs", "muon"}
    for optimizer, curve in curves.groupby("optimizer"):
        if optimizer in skipped:
            continue
        seen = curve[curve["window_s"] <= right]["loss"]
        span = (min(seen.max(), top) - seen.min()) / (top - bottom)
        assert span >= 1 / 3, f"{optimizer} spans {span:.0%} of the panel"
    # The time-to-target panel: a target two thirds of the cases reach; the others named.
    assert "not reached by sgd, muon, lbfgs" in plot.caption


def test_the_figures_legend_moves_beside_the_last_panel_with_its_entries():
    # A bar plot's hue legend in the first panel, nothing in the last (a panel that says why it
    # is empty): the one legend goes beside the last panel and keeps every entry.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from bench.report.canvas import finish

    data = pd.DataFrame({"compile": ["default"] * 2, "speedup": [0.98, 1.01], "case": ["a", "b"]})
    fig, (first, last) = plt.subplots(1, 2)
    sns.barplot(data=data, x="compile", y="speedup", hue="case", ax=first)
    last.text(0.5, 0.5, "none resolved")
    finish(fig, data["case"])
    assert first.get_legend() is None
    legend = last.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b"]
    assert legend.get_title().get_text() == "case"
    plt.close(fig)
