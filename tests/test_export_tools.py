"""bench export to the tools teams watch: github-action-benchmark and Bencher against their
documented formats with hand-checked values; MLflow and TensorBoard read back by the libraries
themselves (skipped, with the install command, without the extra)."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from bench.cli.main import main
from bench.errors import UserError
from bench.results.export import read_run_cases

RUN = ROOT / "tests" / "fixtures" / "history" / "runs" / "20261204-013942"  # the last nightly run
MS = 1e-3


@pytest.fixture
def hand_run(tmp_path) -> Path:
    """A real run cut to one record of the MLP, its step times replaced by 1, 2, ..., 10 ms,
    samples/s 1,000 at a median step of 4 ms (4 samples a step), peak RSS 3 MiB.

    By hand: the median of 1..10 ms is 5.5 ms; of 10 values the 95% interval of the median is
    the 2nd and 9th (Conover: P(B <= 1) = 11/1024 <= 0.025 < P(B <= 2) = 56/1024 for B ~
    Binomial(10, 1/2)), so [2, 9] ms; throughput 4 / 5.5 ms = 727.27/s, its bounds 4 / 9 ms and
    4 / 2 ms."""
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    records = [json.loads(line) for line in (run / "records.jsonl").open()]
    record = next(r for r in records if r["config"]["workload"] == "mlp")
    record["samples"]["step_time_s"] = [i * MS for i in range(10, 0, -1)]
    record["metrics"] = {
        "step_time_s": {"median": 4 * MS},
        "samples_per_s": 1000.0,
        "peak_rss_bytes": 3 * 2**20,
    }
    (run / "records.jsonl").write_text(json.dumps(record) + "\n")
    return run


def test_github_action_benchmark_files_hold_the_hand_checked_entries(hand_run, tmp_path):
    assert (
        main(
            [
                "export",
                str(hand_run),
                "--format",
                "github-action-benchmark",
                "-o",
                str(tmp_path / "gab.json"),
            ]
        )
        == 0
    )
    smaller = json.loads((tmp_path / "gab.json").read_text())
    bigger = json.loads((tmp_path / "gab-bigger.json").read_text())
    step, memory = smaller
    assert step["name"] == "nightly[64dc5708e88e] step time" and step["unit"] == "ms"
    assert step["value"] == pytest.approx(5.5) and step["range"] == "± 3.5"
    assert memory["unit"] == "MiB" and memory["value"] == pytest.approx(3.0)
    [throughput] = bigger
    assert throughput["unit"] == "samples/s"
    assert throughput["value"] == pytest.approx(4 / 5.5e-3)
    for entry in smaller + bigger:  # the action's custom format: these keys, these types
        assert set(entry) <= {"name", "unit", "value", "range", "extra"}
        assert isinstance(entry["value"], float) and isinstance(entry["extra"], str)


def test_bencher_metric_format_holds_the_hand_checked_measures(hand_run, tmp_path):
    assert (
        main(["export", str(hand_run), "--format", "bencher", "-o", str(tmp_path / "b.json")]) == 0
    )
    document = json.loads((tmp_path / "b.json").read_text())
    measures = document["nightly[64dc5708e88e]"]
    # Bencher's built-in latency is in nanoseconds and throughput in operations per second.
    assert measures["latency"] == pytest.approx(
        {"value": 5.5e6, "lower_value": 2e6, "upper_value": 9e6}
    )
    assert measures["throughput"] == pytest.approx(
        {"value": 4 / 5.5e-3, "lower_value": 4 / 9e-3, "upper_value": 4 / 2e-3}
    )
    assert measures["peak-memory"] == {"value": float(3 * 2**20)}
    for measure in measures.values():  # BMF's JSON schema: "value" required, numbers only
        assert "value" in measure and set(measure) <= {"value", "lower_value", "upper_value"}


def pooled_steps(case_name: str) -> list[float]:
    run = read_run_cases(RUN)
    [case_id] = [c for c in run.cases if run.name(c) == case_name]
    return [t for r in run.cases[case_id][1] for t in r["samples"]["step_time_s"]]


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory) -> Path:
    pytest.importorskip("mlflow", reason="needs MLflow: pip install 'bench[mlflow]'")
    store = tmp_path_factory.mktemp("mlflow")
    assert main(["export", str(RUN), "--format", "mlflow", "-o", str(store)]) == 0
    return store


def test_mlflow_holds_one_run_per_case_with_its_params_and_figures(mlflow_store):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{mlflow_store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("nightly")
    found = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(found) == ["nightly[mlp]", "nightly[tutorial.py:tutorial]"]
    mlp = found["nightly[mlp]"]
    assert mlp.data.params["workload"] == "mlp" and mlp.data.params["batch_size"] == "64"
    steps = pooled_steps("nightly[mlp]")
    assert mlp.data.metrics["step_time_median_s"] == pytest.approx(float(np.median(steps)))
    history = client.get_metric_history(mlp.info.run_id, "step_time_s")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(steps)
    artifacts = {a.path for a in client.list_artifacts(mlp.info.run_id)}
    assert {"env.json", "run.json"} <= artifacts
    assert mlp.data.tags["mlflow.source.git.commit"] == "4c3e7daafcd607f68972d0452b50f4142f7365bb"


def test_mlflow_holds_the_loss_readings_against_steps(mlflow_store):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{mlflow_store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("nightly")
    [mlp] = client.search_runs([experiment.experiment_id], "attributes.run_name = 'nightly[mlp]'")
    run = read_run_cases(RUN)
    first = next(ok[0] for _, ok in run.cases.values() if ok[0]["config"]["workload"] == "mlp")
    readings = sorted(
        (m.step, m.value) for m in client.get_metric_history(mlp.info.run_id, "train_loss")
    )
    assert [step for step, _ in readings] == [done for done, _ in first["samples"]["loss"]]
    assert [v for _, v in readings] == pytest.approx([v for _, v in first["samples"]["loss"]])


def test_tensorboard_holds_scalars_loss_and_hparams(tmp_path):
    pytest.importorskip("tensorboard", reason="needs TensorBoard: pip install 'bench[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    assert main(["export", str(RUN), "--format", "tensorboard", "-o", str(tmp_path)]) == 0
    folder = tmp_path / "nightly" / RUN.name / "nightly_mlp"
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    steps = pooled_steps("nightly[mlp]")
    [median] = events.Scalars("step_time_ms/median")
    assert median.value == pytest.approx(np.median(steps) * 1e3, rel=1e-6)  # float32 on disk
    series = events.Scalars("step_time_ms/step")
    assert [s.value for s in series] == pytest.approx([t * 1e3 for t in steps], rel=1e-6)
    run = read_run_cases(RUN)
    first = next(ok[0] for _, ok in run.cases.values() if ok[0]["config"]["workload"] == "mlp")
    assert [s.step for s in events.Scalars("loss/train")] == [
        d for d, _ in first["samples"]["loss"]
    ]
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["workload"].string_value == "mlp"


@pytest.mark.parametrize(("fmt", "module"), [("mlflow", "mlflow"), ("tensorboard", "tensorboard")])
def test_without_the_extra_the_export_names_the_install_command(fmt, module, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError, as uninstalled
    if fmt == "tensorboard":
        monkeypatch.setitem(sys.modules, "tensorboard.summary.writer.event_file_writer", None)
    from bench.results import export_mlflow, export_tensorboard

    export = (
        export_mlflow.export_mlflow if fmt == "mlflow" else export_tensorboard.export_tensorboard
    )
    args = (
        (read_run_cases(RUN), RUN, tmp_path) if fmt == "mlflow" else (read_run_cases(RUN), tmp_path)
    )
    with pytest.raises(UserError, match=rf"pip install 'bench\[{fmt}\]'"):
        export(*args)


def test_a_suite_name_in_the_records_never_leads_out_of_the_logdir(hand_run, tmp_path, capsys):
    pytest.importorskip("tensorboard", reason="needs TensorBoard: pip install 'bench[tensorboard]'")
    record = json.loads((hand_run / "records.jsonl").read_text())
    (hand_run / "records.jsonl").write_text(json.dumps({**record, "suite": "../../out"}) + "\n")
    logdir = tmp_path / "a" / "b"
    assert main(["export", str(hand_run), "--format", "tensorboard", "-o", str(logdir)]) == 2
    assert "records' suite '../../out': not a name for a folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
