"""Loss curves of records (bench/report/curves.py)."""

from bench.report.curves import common_loss_target, loss_curves


def record(case_id: str, optimizer: str, loss_name: str, losses: list[float]) -> dict:
    return {
        "suite": "s",
        "run_id": "r",
        "case_id": case_id,
        "repeat": 0,
        "status": "ok",
        "flags": [],
        "config": {"optimizer": optimizer, "loss": loss_name},
        "samples": {
            "step_time_s": [0.5] * len(losses),
            "loss": [[step + 1, value] for step, value in enumerate(losses)],
        },
    }


def test_a_loss_axis_does_not_shadow_the_readings():
    """A suite that varies both optimizer and loss (examples/tutorial.toml): the common target
    is the largest of the cases' best readings, 0.5 here (case b's best), not an error."""
    records = [record("a", "sgd", "mse", [2.0, 0.2]), record("b", "adam", "focal", [1.0, 0.5])]
    curves = loss_curves(records, ["optimizer", "loss"])
    assert list(curves["loss"]) == [2.0, 0.2, 1.0, 0.5]
    assert list(curves["window_s"]) == [0.5, 1.0, 0.5, 1.0]
    assert common_loss_target(curves) == 0.5
