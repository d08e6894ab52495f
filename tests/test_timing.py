"""Step timers and the measured window's stop rule.

The CUDA timer runs here with a fake event, the hardware boundary: it tells what the timer reads
and when it waits, without a GPU.
"""

import pytest
import torch

from bench.measure.timing import CudaEventTimer, HostTimer
from bench.measure.window import WindowPolicy, block_steps, run_window, stop_reason


class FakeClock:
    now_ms = 0.0


class FakeEvent:
    """Stands in for torch.cuda.Event: records the fake device clock, counts waits on it."""

    log: list[str] = []

    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.at_ms: float | None = None
        self.index = len(FakeEvent.log)

    def record(self) -> None:
        self.at_ms = self.clock.now_ms
        FakeEvent.log.append("record")

    def synchronize(self) -> None:
        FakeEvent.log.append(f"wait {self.at_ms}")

    def elapsed_time(self, end: "FakeEvent") -> float:
        return end.at_ms - self.at_ms


def make_cuda_timer():
    clock = FakeClock()
    FakeEvent.log = []
    return CudaEventTimer(make_event=lambda: FakeEvent(clock)), clock


def test_cuda_timer_reads_each_block_one_block_late_and_never_syncs_per_step():
    timer, clock = make_cuda_timer()
    timer.start_block()
    for step_ms in (2.0, 3.0):  # block 1
        clock.now_ms += step_ms
        timer.mark()
    assert timer.collect() == []  # block 1 may still be running: nothing is read, nobody waits
    assert not any(entry.startswith("wait") for entry in FakeEvent.log)
    clock.now_ms += 100.0  # the harness's bookkeeping between blocks: in no step
    timer.start_block()
    for step_ms in (4.0, 5.0, 6.0):  # block 2
        clock.now_ms += step_ms
        timer.mark()
    # Now block 1 is read, after waiting on its last event (at 5 ms), not on block 2's.
    assert timer.collect() == pytest.approx([0.002, 0.003])
    assert [e for e in FakeEvent.log if e.startswith("wait")] == ["wait 5.0"]
    assert timer.collect() == []
    assert timer.finish() == pytest.approx([0.004, 0.005, 0.006])
    assert timer.finish() == []


def test_host_timer_times_steps_within_blocks_only():
    timer = HostTimer()
    timer._blocks = [[1.0, 1.5, 3.0]]  # perf_counter readings: start, after step 1, after step 2
    assert timer.collect() == [0.5, 1.5]
    timer._blocks.append([10.0, 10.25])  # the gap 3.0 -> 10.0 was bookkeeping
    assert timer.finish() == [0.25]


POLICY = WindowPolicy(min_steps=10, max_steps=1000, min_time_s=0.5, max_time_s=60, ci_target=0.01)


def test_stop_rule_waits_for_minimums_then_needs_the_ci_at_two_checks_in_a_row():
    steady = [0.010] * 9
    assert stop_reason(POLICY, steady, 9, 1.0, True) == (None, False)  # fewer than min_steps
    steady = [0.010] * 10
    assert stop_reason(POLICY, steady, 10, 0.1, True) == (None, False)  # under min_time_s
    # An interval of width 0 meets the target; it stops only if it also did at the last check.
    assert stop_reason(POLICY, steady, 10, 0.6, False) == (None, True)
    assert stop_reason(POLICY, steady, 10, 0.6, True) == ("ci", True)


def test_stop_rule_keeps_going_while_the_interval_is_wide():
    # 10 samples alternating 10 ms / 20 ms: ranks (2, 9) give [10, 20] around a median of 15 ms,
    # a half-width of 33%, far above 1%.
    noisy = [0.010, 0.020] * 5
    assert stop_reason(POLICY, noisy, 10, 1.0, True) == (None, False)
    assert stop_reason(POLICY, noisy, 1000, 1.0) == ("max_steps", False)
    assert stop_reason(POLICY, noisy, 10, 60.0) == ("max_time", False)
    # The minimum number of samples comes before the time budget.
    assert stop_reason(POLICY, noisy[:8], 8, 60.0) == (None, False)


def test_block_steps_aims_at_a_quarter_second():
    assert block_steps(0.005) == 50  # 0.25 / 0.005 = 50, the cap
    assert block_steps(0.025) == 10
    assert block_steps(2.0) == 1
    assert block_steps(0.0) == 50


def test_window_runs_exactly_max_steps_and_averages_losses_per_block():
    losses = iter(range(1, 100))

    def step() -> torch.Tensor:  # a real tensor op standing in for a training step
        return torch.tensor(float(next(losses))) * 1.0

    policy = WindowPolicy(min_steps=100, max_steps=7, min_time_s=0, max_time_s=60, ci_target=0.01)
    result = run_window(
        step, HostTimer(), policy, steps_per_block=3, loss_device=torch.device("cpu")
    )
    assert result.stop_reason == "max_steps"
    assert len(result.step_times_s) == 7
    # Blocks of 3, 3, 1 steps with losses 1..7: means 2, 5 and 7.
    assert result.losses == [(3, 2.0), (6, 5.0), (7, 7.0)]
    assert result.window_s >= sum(result.step_times_s)
