"""Time to target: the bookkeeping by hand, the config rules, and real runs whose steps to target
agree with an independent replay of the same training."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from bench.errors import ConfigError
from bench.measure.target import QualityTracker, met
from bench.spec.case import Case
from bench.worker.prepare import prepare
from tests.conftest import write_suite


def test_loss_like_metrics_are_reached_at_or_below_accuracy_at_or_above() -> None:
    assert met("accuracy", 0.95, 0.95) and not met("accuracy", 0.9499, 0.95)
    assert met("loss", 0.5, 0.5) and not met("loss", 0.5001, 0.5)
    assert met("perplexity", 9.0, 10.0) and not met("perplexity", float("nan"), 10.0)


def test_tracker_records_the_first_evaluation_that_meets_the_target() -> None:
    # 3 steps before the window (first step + 2 warm-up) that took 0.5 s; evaluations every 10.
    tracker = QualityTracker("accuracy", 0.9, steps_before=3, time_before_s=0.5)
    assert not tracker.record(10, 1.0, {"accuracy": 0.7, "loss": 1.0}, eval_s=0.25)
    assert tracker.record(20, 2.0, {"accuracy": 0.92, "loss": 0.5}, eval_s=0.25)
    result = tracker.target_result("target")
    assert result == {
        "metric": "accuracy",
        "value": 0.9,
        "reached": True,
        "steps_to_target": 23,  # 3 + 20
        "time_to_target_s": 2.5,  # 0.5 + 2.0: no evaluation time in it
        "budget": None,
        "best": 0.92,
        "num_evals": 2,
        "eval_s": 0.5,
    }
    assert tracker.curve[0] == [13, 1.5, {"accuracy": 0.7, "loss": 1.0}]


def test_a_missed_target_names_the_budget_that_ended_the_run() -> None:
    tracker = QualityTracker("loss", 0.1, steps_before=1, time_before_s=0.0)
    for steps, loss in ((10, 2.0), (20, 1.5), (30, 1.7)):
        assert not tracker.record(steps, steps / 10, {"loss": loss}, eval_s=0.0)
    result = tracker.target_result("max_steps")
    assert result["reached"] is False and result["budget"] == "max_steps"
    assert result["steps_to_target"] is None and result["time_to_target_s"] is None
    assert result["best"] == 1.5


def test_without_a_target_the_tracker_only_draws_the_curve() -> None:
    tracker = QualityTracker(None, None, steps_before=1, time_before_s=0.0)
    assert not tracker.record(5, 0.1, {"loss": 0.0}, eval_s=0.0)
    assert tracker.target_result("ci") is None and len(tracker.curve) == 1


@pytest.mark.parametrize(
    "values, message",
    [
        ({"workload": "gpt", "target_metric": "accuracy", "target_value": 0.5},
         "target_metric = 'accuracy': gpt evaluates: loss, perplexity"),
        ({"target_metric": "accuracy", "target_value": 1.5}, "an accuracy: 0 < value <= 1"),
        ({"target_value": 0.9}, "target_value = 0.9: needs target_metric"),
        ({"target_metric": "loss"}, "target_metric = 'loss': needs target_value"),
        ({"eval_every": 0}, "eval_every = 0: must be a positive integer"),
        # The reviewer's case: no evaluation could ever fall inside the step budget.
        ({"target_metric": "accuracy", "target_value": 0.8, "max_steps": 30, "eval_every": 100},
         "eval_every = 100: must be <= max_steps (30) in a target case, or no periodic "
         "evaluation falls inside the step budget"),
    ],
)  # fmt: skip
def test_bad_target_settings_name_what_is_allowed(values, message) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Case.from_dict(values)


def test_eval_every_defaults_with_a_target_and_joins_the_case_id() -> None:
    case = Case.from_dict({"target_metric": "loss", "target_value": 0.3})
    assert case.eval_every == 50
    assert case.id != Case.from_dict({**case.to_dict(), "eval_every": 10}).id
    # A step budget shorter than 50 steps: evaluated at its end, not never.
    short = Case.from_dict({"target_metric": "loss", "target_value": 0.3, "max_steps": 30})
    assert short.eval_every == 30


def test_the_end_of_window_evaluation_counts_toward_the_target() -> None:
    # Evaluations every 10 measured steps; the time budget ends the window after 17.
    tracker = QualityTracker("accuracy", 0.9, steps_before=3, time_before_s=0.5)
    assert not tracker.record(10, 1.0, {"accuracy": 0.7}, eval_s=0.25)
    assert tracker.record_end(17, 1.75, {"accuracy": 0.95}, eval_s=0.25)
    result = tracker.target_result("max_time")
    assert result["reached"] is True and result["budget"] is None
    assert (result["steps_to_target"], result["time_to_target_s"]) == (20, 2.25)  # 3 + 17
    assert (result["num_evals"], result["best"], result["eval_s"]) == (2, 0.95, 0.5)
    # A window that ended on an evaluation step was judged there: not evaluated twice.
    tracker = QualityTracker("accuracy", 0.9, steps_before=3, time_before_s=0.5)
    assert not tracker.record(10, 1.0, {"accuracy": 0.7}, eval_s=0.25)
    assert not tracker.record_end(10, 1.0, {"accuracy": 0.7}, eval_s=0.25)
    assert tracker.target_result("max_steps")["num_evals"] == 1


SUITE = """
[suite]
name = "tt"
[base]
workload = "mlp"
model_size = "tiny"
data = "digits"
optimizer = "adam"
threads = 1
repeats = 1
warmup_steps = 2
min_time_s = 0.0
eval_every = 10
[[include]]
target_metric = "accuracy"
target_value = 0.8
max_steps = 2000
[[include]]
target_metric = "accuracy"
target_value = 1.0
max_steps = 40
[[include]]
target_metric = "loss"
target_value = 0.0
max_steps = 100000
max_time_s = 0.3
[[include]]
target_metric = "accuracy"
target_value = 0.05
max_steps = 100000
max_time_s = 0.3
eval_every = 50000
"""


@pytest.fixture(scope="module")
def target_run(tmp_path_factory, bench_cache, inductor_cache) -> tuple[list[dict], str]:
    tmp = tmp_path_factory.mktemp("target")
    write_suite(tmp, "tt", SUITE)
    env = {**os.environ, "BENCH_CACHE_DIR": str(bench_cache)}
    env["TORCHINDUCTOR_CACHE_DIR"] = str(inductor_cache)
    done = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "tt", "--device", "cpu"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = tmp.glob("results/tt/*/records.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()], done.stdout


@pytest.fixture(scope="module")
def target_records(target_run) -> list[dict]:
    return target_run[0]


def _record(records: list[dict], value: float) -> dict:
    (record,) = [r for r in records if r["config"]["target_value"] == value]
    assert record["status"] == "ok", record["reason"]
    return record


def test_steps_to_target_agree_with_the_curve_and_an_independent_replay(target_records) -> None:
    record = _record(target_records, 0.8)
    target, curve = record["metrics"]["target"], record["samples"]["eval"]
    assert target["reached"] and record["metrics"]["stop_reason"] == "target"
    steps = target["steps_to_target"]
    # The curve: evaluations every 10 measured steps after the 3 before the window; the last one
    # is the first to reach 0.8.
    assert [point[0] for point in curve] == list(range(13, steps + 1, 10))
    assert curve[-1][2]["accuracy"] >= 0.8 > max(point[2]["accuracy"] for point in curve[:-1])
    assert record["metrics"]["steps_trained"] == steps
    # Time to target is the training steps' own time: first step, warm-up, window steps.
    timing, step_times = record["timing"], record["samples"]["step_time_s"]
    assert len(step_times) == steps - 3
    expected = timing["first_step_s"] + timing["warmup_s"] + sum(step_times)
    assert target["time_to_target_s"] == pytest.approx(expected, rel=1e-9)
    assert target["eval_s"] > 0 and timing["eval_s"] >= target["eval_s"]

    # Replay the same training in this process, as the worker ran it: one batch drawn for the
    # FLOP count (bench/measure/flops.py), then the steps; the evaluations agree to the bit.
    torch.set_num_threads(1)
    training = prepare(Case(**record["config"]), torch.device("cpu"))
    training.workload.next_batch()
    done = 0
    for at, _, evaluation in curve[-2:]:
        for _ in range(at - done):
            training.step()
        done = at
        assert training.workload.evaluate(training.workload.model) == evaluation


def test_an_unreachable_target_stops_at_the_step_budget(target_records) -> None:
    record = _record(target_records, 1.0)
    target = record["metrics"]["target"]
    assert target["reached"] is False and target["budget"] == "max_steps"
    assert target["steps_to_target"] is None and target["num_evals"] == 4  # 40 steps / 10
    assert target["best"] == max(p[2]["accuracy"] for p in record["samples"]["eval"])
    assert record["metrics"]["steps_trained"] == 3 + 40


def test_an_unreachable_target_stops_at_the_time_budget(target_records) -> None:
    record = _record(target_records, 0.0)
    target = record["metrics"]["target"]
    assert target["reached"] is False and target["budget"] == "max_time"
    # The window's clock leaves the evaluations out: its length is the steps' time.
    assert 0.3 <= record["metrics"]["window_s"] < 0.3 + 1.0
    assert sum(record["samples"]["step_time_s"]) <= record["metrics"]["window_s"]


def test_a_time_budget_that_ends_before_any_periodic_evaluation_is_judged_at_its_end(
    target_records,
) -> None:
    # 0.3 s of tiny-MLP steps is far fewer than 50,000: the only evaluation is the window's
    # last, and an accuracy of 0.05 (half of chance) is met by then.
    record = _record(target_records, 0.05)
    metrics, curve = record["metrics"], record["samples"]["eval"]
    assert metrics["stop_reason"] == "max_time" and metrics["steps_trained"] < 50_000
    assert curve == [[metrics["steps_trained"], curve[0][1], metrics["eval"]]]
    target = metrics["target"]
    assert target["reached"] is True and target["budget"] is None and target["num_evals"] == 1
    assert target["steps_to_target"] == metrics["steps_trained"]
    assert target["best"] == metrics["eval"]["accuracy"] >= 0.05
    timing, step_times = record["timing"], record["samples"]["step_time_s"]
    expected = timing["first_step_s"] + timing["warmup_s"] + sum(step_times)
    assert target["time_to_target_s"] == pytest.approx(expected, rel=1e-9) == curve[0][1]
    # Its time is counted once: no other evaluation ran (no fine-tuning, no periodic one).
    assert target["eval_s"] > 0 and timing["eval_s"] == pytest.approx(target["eval_s"])


def test_bench_run_says_when_each_target_was_reached_or_why_not(target_run) -> None:
    records, stdout = target_run
    steps = _record(records, 0.8)["metrics"]["target"]["steps_to_target"]
    assert f"; accuracy 0.8 after {steps} steps, " in stdout
    assert "; accuracy 1 not reached (max_steps; best " in stdout
    assert "; loss 0 not reached (max_time; best " in stdout
