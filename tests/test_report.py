"""The report layer on hand-written runs in tests/fixtures/report/results.

The `compile_vs_eager` run (mlp, batch 64, cpu) holds, interleaved over 3 repeats:
  eager    ok: medians 0.010, 0.011, 0.012 s; IQRs 0.001, 0.002, 0.003 s; RSS 100, 101, 102 MiB
  default  ok: medians 0.008, 0.008, 0.009 s; IQRs 0.0004, 0.0002, 0.0006 s; compile 4.992,
               1.492, 1.391 s; RSS 150, 160, 155 MiB
  reduce-overhead   one skipped record (CUDA graphs on cpu)
  max-autotune-no-cudagraphs   three error records, reasons ending "(repeat 0)" ... "(repeat 2)"
An older run of the same suite, a `gpt_batch` run (batch 8 vs 16) and a decoy under baselines/
with a later run id complete the tree.
"""

import io
import math
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from bench.config import Case
from bench.errors import UserError
from bench.report.frame import aggregate, records_frame, speedup_vs_reference, varying_axes
from bench.report.report import build_report
from bench.report.tables import render_markdown, render_terminal
from bench.store import find_latest_runs, read_records

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
    assert (
        "| eager | ok | 11.0 ms ±9.1% | 5,818 | 1.00× | — | — | — | 102 | 0.910 | 0.380 |" in lines
    )
    assert (
        "| default | ok | 8.00 ms ±6.2% | 8,000 | 1.38× | 1.49 | cold, warm | 497 | 160 | 0.900 "
        "| 0.390 |" in lines
    )
    assert "| max-autotune-no-cudagraphs | error | — | — | — | — | — | — | — | — | — |" in lines
    error_row = (
        "| max-autotune-no-cudagraphs | 1a4b6c25346f | error | RuntimeError: inductor failed"
    )
    assert f"{error_row} (repeat 2) |" in lines
    # A single repeat has no range to show; tokens/s appears for the language model only.
    assert "| 8 | ok | 20.0 ms | 400 | 25,600 | 300 | 5.000 | 148.4 |" in lines


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


def test_build_report_writes_report_md(tmp_path):
    console = Console(file=io.StringIO(), width=200)
    out_dir = tmp_path / "report"
    path = build_report([COMPILE_RUN, GPT_RUN], out_dir, console)
    assert path == out_dir / "report.md"
    assert "| 16 | ok | 32.0 ms | 500 | 32,000 | 320 | 4.900 | 134.3 |" in path.read_text()
    assert [p.name for p in out_dir.iterdir()] == ["report.md"]  # no temporary file left
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
