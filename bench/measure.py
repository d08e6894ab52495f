"""The measured window: timed training steps with an adaptive stop.

Steps run in blocks. At each block boundary the timer hands over the step times it knows (on CUDA,
those of the block before), the losses of those steps are read, and the stop rule is checked:

- stop at ``max_steps`` issued steps, always;
- measure at least ``min_steps`` steps and ``min_time_s`` seconds (even past ``max_time_s``: a
  slow step still gets enough samples for its statistics; ``timeout_s`` bounds the process);
- then stop at ``max_time_s`` seconds, or as soon as the 95% confidence interval of the median
  step time lies within +-``ci_target`` of it.

The loss is accumulated on the device within a block and read only once the timer has seen the
block done, so reading it never makes the host wait for the device.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from bench.statistics import summarize
from bench.timing import StepTimer, to_host, wall

StopReason = Literal["ci", "max_steps", "max_time"]

# Aim for a block of about this many seconds: short enough to stop promptly and to give a loss
# curve, long enough that the stop check (a sort of the samples) costs nothing per step.
_BLOCK_TARGET_S = 0.25
_MAX_BLOCK_STEPS = 50


@dataclass(frozen=True)
class WindowPolicy:
    min_steps: int
    max_steps: int
    min_time_s: float
    max_time_s: float
    ci_target: float


@dataclass(frozen=True)
class WindowResult:
    step_times_s: list[float]
    losses: list[tuple[int, float]]
    """(steps done, mean loss over the steps since the previous reading)."""
    window_s: float
    stop_reason: StopReason


def block_steps(step_estimate_s: float) -> int:
    """Steps per block for a step of about ``step_estimate_s`` seconds."""
    if step_estimate_s <= 0:
        return _MAX_BLOCK_STEPS
    return max(1, min(_MAX_BLOCK_STEPS, round(_BLOCK_TARGET_S / step_estimate_s)))


def stop_reason(
    policy: WindowPolicy, times: list[float], issued: int, elapsed_s: float
) -> StopReason | None:
    if issued >= policy.max_steps:
        return "max_steps"
    if len(times) < policy.min_steps or elapsed_s < policy.min_time_s:
        return None  # the minimums come first, even past max_time_s
    if elapsed_s >= policy.max_time_s:
        return "max_time"
    half_width = summarize(times).ci_half_width
    if half_width is not None and half_width <= policy.ci_target:
        return "ci"
    return None


def run_window(
    step: Callable[[], torch.Tensor],
    timer: StepTimer,
    policy: WindowPolicy,
    steps_per_block: int,
    loss_device: torch.device,
) -> WindowResult:
    """Run ``step`` (one training step returning its loss) until the stop rule says so."""
    times: list[float] = []
    losses: list[tuple[int, float]] = []
    pending: list[tuple[int, torch.Tensor, int]] = []  # (steps done, loss sum, steps summed)
    issued = 0
    reason: StopReason | None = None
    start = wall()
    timer.mark()
    while reason is None:
        loss_sum = torch.zeros((), device=loss_device, dtype=torch.float32)
        count = min(steps_per_block, policy.max_steps - issued)
        for _ in range(count):
            loss = step()
            timer.mark()
            loss_sum.add_(loss.detach())
        issued += count
        pending.append((issued, loss_sum, count))
        times += timer.collect()
        _read_done_losses(pending, len(times), losses)
        reason = stop_reason(policy, times, issued, wall() - start)
    times += timer.finish()
    _read_done_losses(pending, len(times), losses)
    return WindowResult(times, losses, wall() - start, reason)


def _read_done_losses(
    pending: list[tuple[int, torch.Tensor, int]], steps_timed: int, out: list[tuple[int, float]]
) -> None:
    while pending and pending[0][0] <= steps_timed:
        done, loss_sum, count = pending.pop(0)
        out.append((done, to_host(loss_sum) / count))
