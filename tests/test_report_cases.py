"""The report draws and tells each case apart: suites with two workloads and two tasks, corrupt
records, names that collide. Numbers by hand in each test's comments."""

import io
import json
import math
from pathlib import Path

import pytest
from rich.console import Console

from bench.errors import UserError
from bench.report.estimate import measured_from_records
from bench.report.faq import challenges_section, optimizer_section
from bench.report.frame import aggregate, records_frame
from bench.report.plots import suite_plots
from bench.report.plots_progress import finetune_figure, optimizer_figure, target_figure
from bench.report.report import build_report
from bench.report.tables import render_markdown
from bench.results.store import read_records

MIB = 1024 * 1024


def _hand(case_id, config, metrics, suite="hand", samples=None):
    return {
        "schema": 1,
        "run_id": "20261128-140000",
        "suite": suite,
        "case_id": case_id,
        "repeat": 0,
        "status": "ok",
        "reason": None,
        "config": {"batch_size": 8, "device": "cpu", **config},
        "metrics": {"step_time_s": {"median": 0.01}, "samples_per_s": 800.0, **metrics},
        "samples": samples or {},
        "flags": [],
    }


def _bars(ax):
    return sorted(
        round(bar.get_height(), 6)
        for container in ax.containers
        for bar in container
        if not math.isnan(bar.get_height())
    )


# mlp (1,000 parameters) on tasks A and B, gpt (5,000) on its corpus; full and frozen each.
# mlp accuracy before: A 0.10, B 0.12; after: full A 0.90, B 0.70; frozen A 0.40, B 0.20.
# gpt perplexity before 30; after full 20, frozen 25 (its loss is recorded too).
FINETUNE = [
    ("mlp", "A", "full", 1000, 1000, {"accuracy": 0.9}, {"accuracy": 0.1}),
    ("mlp", "B", "full", 1000, 1000, {"accuracy": 0.7}, {"accuracy": 0.12}),
    ("mlp", "A", "frozen", 1000, 10, {"accuracy": 0.4}, {"accuracy": 0.1}),
    ("mlp", "B", "frozen", 1000, 10, {"accuracy": 0.2}, {"accuracy": 0.12}),
    ("gpt", "corpus", "full", 5000, 5000, {"loss": 3.0, "perplexity": 20.0}, {"perplexity": 30.0}),
    ("gpt", "corpus", "frozen", 5000, 50, {"loss": 3.2, "perplexity": 25.0}, {"perplexity": 30.0}),
]


def finetune_records(suite="finetune"):
    return [
        _hand(
            f"{workload}-{task}-{strategy}",
            {
                "workload": workload,
                "model_size": "base" if workload == "mlp" else "mini",
                "finetune": strategy,
                "finetune_task": task,
            },
            {
                "num_params": total,
                "trainable_params": trainable,
                "eval": after,
                "eval_before": before,
            },
            suite=suite,
        )
        for workload, task, strategy, total, trainable, after, before in FINETUNE
    ]


def test_finetune_figure_draws_each_case_with_its_workloads_own_quality_metric():
    agg = aggregate(records_frame(finetune_records()))
    plot = finetune_figure(agg, ["workload", "model_size", "finetune", "finetune_task"])
    mlp_params, mlp_quality, gpt_params, gpt_quality = plot.figure.axes
    # One bar per case and figure: no mean of two tasks (0.8) or of two workloads' totals.
    assert _bars(mlp_params) == [10, 10, 1000, 1000, 1000, 1000, 1000, 1000]
    assert _bars(mlp_quality) == [0.1, 0.1, 0.12, 0.12, 0.2, 0.4, 0.7, 0.9]
    assert "accuracy" in mlp_quality.get_ylabel()
    assert _bars(gpt_params) == [50, 5000, 5000, 5000]
    assert _bars(gpt_quality) == [20.0, 25.0, 30.0, 30.0]
    assert "perplexity" in gpt_quality.get_ylabel()


def test_a_finetune_suite_gets_no_model_size_figure_across_workloads():
    agg = aggregate(records_frame(finetune_records()))
    suite = agg[agg["suite"] == "finetune"]
    frame = records_frame(finetune_records())
    names = [plot.name for plot in suite_plots(suite, frame, finetune_records())]
    assert names == ["finetune"]


def test_target_figure_bars_are_the_cases_not_means_over_workloads():
    # adam and sgd on mlp and on cnn: 1, 2, 3, 4 s and 10, 20, 30, 40 steps.
    times = {("mlp", "adam"): 1.0, ("mlp", "sgd"): 2.0, ("cnn", "adam"): 3.0, ("cnn", "sgd"): 4.0}
    records = [
        _hand(
            f"{w}-{o}",
            {"workload": w, "optimizer": o, "target_metric": "accuracy", "target_value": 0.8},
            {"target": {"time_to_target_s": t, "steps_to_target": 10 * t, "reached": True}},
        )
        for (w, o), t in times.items()
    ]
    plot = target_figure(aggregate(records_frame(records)), ["workload", "optimizer"])
    time_ax, steps_ax = plot.figure.axes
    assert _bars(time_ax) == [1.0, 2.0, 3.0, 4.0]  # not 2.0 and 3.0, the means per optimizer
    assert _bars(steps_ax) == [10.0, 20.0, 30.0, 40.0]


def test_optimizer_figure_keeps_workloads_apart():
    # Loss 1.0 then 0.5 for every case; steps of 10 ms (mlp) and 30 ms (gpt), sgd twice as slow:
    # the common loss 0.5 comes at step 2: mlp adam 20 ms, sgd 40 ms; gpt adam 60 ms, sgd 120 ms.
    records = [
        _hand(
            f"{w}-{o}",
            {"workload": w, "optimizer": o},
            {"optimizer": {"state_bytes": state * MIB}},
            samples={"step_time_s": [step] * 2, "loss": [[1, 1.0], [2, 0.5]]},
        )
        for w, o, step, state in (
            ("mlp", "adam", 0.01, 2),
            ("mlp", "sgd", 0.02, 0),
            ("gpt", "adam", 0.03, 8),
            ("gpt", "sgd", 0.06, 0),
        )
    ]
    agg = aggregate(records_frame(records))
    plot = optimizer_figure(agg, records, ["workload", "optimizer"])
    curve_ax, time_ax, state_ax = plot.figure.axes
    assert _bars(time_ax) == [0.02, 0.04, 0.06, 0.12]
    assert _bars(state_ax) == [0.0, 0.0, 2.0, 8.0]
    curves = [
        sorted(line.get_xydata().round(6).tolist())
        for line in curve_ax.get_lines()
        if line.get_linestyle() == "-" and len(line.get_xdata())
    ]
    # One line per case, each with its own two readings (the dashed line: the common loss).
    assert sorted(curves) == [[[step, 1.0], [2 * step, 0.5]] for step in (0.01, 0.02, 0.03, 0.06)]


def test_faq_optimizer_table_names_the_suites_own_target():
    # Both optimizers have metrics.target (accuracy 0.8): 0.5 s and 1.5 s; their loss curves
    # alone would give a common loss of 0.9, which is not what the numbers measure.
    records = [
        _hand(
            o,
            {"optimizer": o, "target_metric": "accuracy", "target_value": 0.8},
            {"target": {"time_to_target_s": t, "steps_to_target": s, "reached": True}},
            suite="target",
            samples={"step_time_s": [0.01] * 2, "loss": [[1, 2.0], [2, loss]]},
        )
        for o, t, s, loss in (("adamw", 0.5, 50, 0.9), ("sgd", 1.5, 150, 0.7))
    ]
    section = optimizer_section(aggregate(records_frame(records)), records)
    (table,) = section.tables
    assert table.title == "target: optimizers to accuracy 0.8 (the suite's metrics.target)"
    assert [row[2:4] for row in table.rows] == [["0.5", "50"], ["1.5", "150"]]


def test_faq_points_data_stalls_at_the_data_pipeline_suite():
    agg = aggregate(records_frame(finetune_records()))
    (hint,) = [m for m in challenges_section(agg).missing if "data" in m]
    assert hint.startswith("suites/data_pipeline.toml") and "data_wait_fraction" in hint


def test_target_reached_is_labelled_a_percentage_and_notes_are_not_repeated():
    records = [
        _hand(
            o,
            {"optimizer": o, "precision": p, "target_metric": "accuracy", "target_value": 0.8},
            {"target": {"time_to_target_s": 1.0, "steps_to_target": 10, "reached": True}},
        )
        for o in ("adam", "sgd")
        for p in ("fp32", "bf16")
    ]
    markdown = render_markdown(aggregate(records_frame(records)))
    header = next(line for line in markdown.splitlines() if line.startswith("| optimizer |"))
    assert "| target reached % |" in header
    assert markdown.count("speedup vs X: X's step time") == 1


# --- bench estimate: optimizer state per parameter of fine-tuning records ---------------------


def test_estimate_state_per_parameter_counts_only_trainable_parameters():
    # Full fine-tune: 8,000 bytes of AdamW state for 1,000 parameters, 8 B/param. LoRA: 800
    # bytes for its 100 trainable of 1,100 parameters, 8 B/param too (not 800 / 1,100 = 0.73).
    def record(case_id, total, trainable, state):
        config = {"optimizer": "adamw", "precision": "fp32", "finetune": case_id}
        metrics = {
            "num_params": total,
            "trainable_params": trainable,
            "optimizer": {"state_bytes": state},
        }
        return _hand(case_id, config, metrics)

    records = [record("full", 1000, 1000, 8000), record("lora", 1100, 100, 800)]
    assert measured_from_records(records).state_bytes_per_param == {("adamw", "fp32"): 8.0}


# --- corrupt records and report output ---------------------------------------------------------


def _run_with(tmp_path: Path, metrics=None, flags=None) -> Path:
    record = _hand("a", {"workload": "mlp"}, {"num_params": 10})
    good = json.dumps(record)
    record["metrics"] |= metrics or {}
    if flags is not None:
        record["flags"] = flags
    run = tmp_path / "run"
    run.mkdir()
    (run / "records.jsonl").write_text(f"{good}\n{json.dumps(record)}\n")
    return run


@pytest.mark.parametrize(
    ("metrics", "flags", "message"),
    [
        ({"num_params": "many"}, None, "metrics.num_params is 'many', not a number"),
        ({"step_time_s": "fast"}, None, "metrics.step_time_s is 'fast', not an object"),
        ({"flops": {"mfu": [0.5]}}, None, "metrics.flops.mfu is [0.5], not a number"),
        (None, "abc", "flags is 'abc', not a list of strings"),
        (None, ["ok", 3], "flags is ['ok', 3], not a list of strings"),
    ],
)
def test_corrupt_record_names_file_line_and_field(tmp_path, metrics, flags, message):
    run = _run_with(tmp_path, metrics, flags)
    with pytest.raises(UserError) as caught:
        read_records(run)
    assert str(caught.value) == f"{run / 'records.jsonl'}:2: {message}"


def test_cli_report_on_a_corrupt_record_is_one_line_exit_2(bench, tmp_path):
    run = _run_with(tmp_path, {"num_params": "many"})
    done = bench("report", str(run), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == (
        f"bench: error: {run / 'records.jsonl'}:2: metrics.num_params is 'many', not a number\n"
    )
    assert not (tmp_path / "out").exists()


def test_cli_report_out_that_is_a_file_is_one_line_exit_2(bench, tmp_path):
    run = _run_with(tmp_path)
    (tmp_path / "taken").write_text("keep me\n")
    for out in ("taken", "taken/sub"):
        done = bench("report", str(run), "--out", out)
        assert done.returncode == 2 and done.stdout == "", done.stderr
        assert done.stderr == (
            f"bench: error: --out {out}: taken is a file, not a directory; "
            "give a directory (it is created if missing)\n"
        )
    assert (tmp_path / "taken").read_text() == "keep me\n"


def test_suites_whose_names_sanitise_alike_keep_their_own_figures(tmp_path):
    records = finetune_records("a b") + finetune_records("a_b") + finetune_records("a/b")
    runs = []
    for i, suite in enumerate(("a b", "a_b", "a/b")):
        run = tmp_path / f"run{i}"
        run.mkdir()
        lines = [json.dumps(r) for r in records if r["suite"] == suite]
        (run / "records.jsonl").write_text("\n".join(lines) + "\n")
        runs.append(run)
    report = build_report(runs, tmp_path / "out", Console(file=io.StringIO()))
    on_disk = sorted((tmp_path / "out" / "figures").glob("*.png"))
    assert len(report.figures) == len(on_disk) == 3
    assert sorted(report.figures) == on_disk
    assert "a_b-finetune.png" in [path.name for path in on_disk]  # a plain name stays plain


def _precision_records(steps: tuple[int, int], rise: tuple[int | None, int | None]):
    """fp32 and bf16 of one mlp: eval loss 0.30 and 0.35 after ``steps``; peak RSS 520 MiB for
    both, of which ``rise`` MiB above the process's RSS before the model was built."""
    return [
        _hand(
            precision,
            {"workload": "mlp", "precision": precision},
            {
                "eval": {"loss": loss},
                "steps_trained": trained,
                "peak_rss_bytes": 520 * MIB,
                "memory": {"window_rss_rise_bytes": r * MIB} if r is not None else None,
            },
            suite="precision",
        )
        for precision, loss, trained, r in zip(("fp32", "bf16"), (0.30, 0.35), steps, rise)
    ]


def test_quality_figures_are_said_not_comparable_after_different_training():
    unequal = render_markdown(aggregate(records_frame(_precision_records((756, 172), (20, 9)))))
    assert "NOT comparable across these cases: they trained different numbers of steps" in unequal
    equal = render_markdown(aggregate(records_frame(_precision_records((40, 40), (20, 9)))))
    assert "NOT comparable" not in equal


def test_cpu_peak_memory_is_the_rise_above_the_pre_build_baseline():
    markdown = render_markdown(aggregate(records_frame(_precision_records((40, 40), (20, None)))))
    rows = [line for line in markdown.splitlines() if line.startswith(("| fp32 ", "| bf16 "))]
    # fp32: 20 MiB above its baseline (not the 520 MiB of the whole process); bf16's record has
    # no baseline (an older record): its peak RSS, 520.
    assert "| 20 |" in rows[0] and "| 520 |" in rows[1]
