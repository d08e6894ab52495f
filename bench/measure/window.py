"""The measured window: timed training steps with an adaptive stop.

Steps run in blocks. At each block boundary the timer hands over the step times it knows (on CUDA,
those of the block before), the losses of those steps are read, and the stop rule is checked:

- stop at ``max_steps`` issued steps, always;
- measure at least ``min_steps`` steps and ``min_time_s`` seconds (even past ``max_time_s``: a
  slow step still gets enough samples for its statistics; ``timeout_s`` bounds the process);
- then stop at ``max_time_s`` seconds, or once the 95% confidence interval of the median step
  time lies within +-``ci_target`` of it at two block boundaries in a row.

The loss is summed on the device per block and read only after the window, so that reading it
never makes the host wait for the device; the stop rule needs only the step times.

A case that evaluates every k steps (``eval_every``, bench/measure/target.py) ends a block at each
multiple of k and evaluates there, between blocks: the evaluation is in no step's time and off
the window's clock. With a target (``WindowPolicy.until_target``) the window stops when an
evaluation meets it, at ``max_steps`` or at ``max_time_s``, and never on the confidence rule or
the minimums: time to a quality is what it measures.

A step is ``step(*fetch())``: between the two the timer marks that the batch is on the device, so
that the window also measures how long each step waited for its data.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from bench.measure.timing import StepTimer, to_host, wall
from bench.statistics import summarize

StopReason = Literal["ci", "max_steps", "max_time", "target"]

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
    until_target: bool = False
    """Stop only at a target (an evaluation's verdict), ``max_steps`` or ``max_time_s``."""


@dataclass(frozen=True)
class PeriodicEval:
    every: int
    """Measured steps between two evaluations."""
    run: Callable[[int, float], bool]
    """Evaluate after (measured steps so far, their training seconds); True: the target is met."""


@dataclass(frozen=True)
class WindowResult:
    step_times_s: list[float]
    data_wait_s: list[float]
    """Per step, seconds from its start until its batch was on the device (timing.py)."""
    losses: list[tuple[int, float]]
    """(steps done, mean loss over the block of steps that ends there)."""
    window_s: float
    stop_reason: StopReason


def block_steps(step_estimate_s: float) -> int:
    """Steps per block for a step of about ``step_estimate_s`` seconds."""
    if step_estimate_s <= 0:
        return _MAX_BLOCK_STEPS
    return max(1, min(_MAX_BLOCK_STEPS, round(_BLOCK_TARGET_S / step_estimate_s)))


def stop_reason(
    policy: WindowPolicy,
    times: list[float],
    issued: int,
    elapsed_s: float,
    narrow_before: bool = False,
) -> tuple[StopReason | None, bool]:
    """Why to stop now (or None), and whether the interval met the target at this check.

    Checking after every block and stopping at the first narrow interval would make the nominal
    95% optimistic (optional stopping on correlated samples); the target must hold at two checks
    in a row.
    """
    if issued >= policy.max_steps:
        return "max_steps", False
    if policy.until_target:
        return ("max_time" if elapsed_s >= policy.max_time_s else None), False
    if len(times) < policy.min_steps or elapsed_s < policy.min_time_s:
        return None, False  # the minimums come first, even past max_time_s
    if elapsed_s >= policy.max_time_s:
        return "max_time", False
    half_width = summarize(times).ci_half_width
    narrow = half_width is not None and half_width <= policy.ci_target
    return ("ci" if narrow and narrow_before else None), narrow


def run_window(
    step: Callable[..., torch.Tensor],
    timer: StepTimer,
    policy: WindowPolicy,
    steps_per_block: int,
    loss_device: torch.device,
    evaluation: PeriodicEval | None = None,
    fetch: Callable[[], tuple] = tuple,
    agree: Callable[[Any], Any] | None = None,
) -> WindowResult:
    """Run ``step(*fetch())`` (one training step on one batch, returning its loss) until the stop
    rule says so. ``fetch`` returns the step's batch on the device (by default nothing: ``step``
    then gets its own data).

    ``window_s`` and the clock of the stop rule leave out the time of the evaluations.
    ``agree`` (distributed cases) returns rank 0's value on every rank: rank 0 decides when the
    window stops, so that no rank stops while another waits for it in a collective."""
    times: list[float] = []
    # Per block: (steps done, loss summed on the device, steps summed). Read after the window.
    blocks: list[tuple[int, torch.Tensor, int]] = []
    issued = 0
    reason: StopReason | None = None
    narrow_before = False
    paused_s = 0.0  # spent evaluating, off the window's clock
    start = wall()
    while reason is None:
        loss_sum = torch.zeros((), device=loss_device, dtype=torch.float32)
        count = min(steps_per_block, policy.max_steps - issued)
        if evaluation is not None:
            count = min(count, evaluation.every - issued % evaluation.every)
        timer.start_block()
        for _ in range(count):
            batch = fetch()
            timer.mark_data()
            loss = step(*batch)
            timer.mark()
            loss_sum.add_(loss.detach())
        issued += count
        blocks.append((issued, loss_sum, count))
        if evaluation is not None and issued % evaluation.every == 0:
            # The evaluation reads its result, which waits for the device anyway: every step
            # time is known first, so the training time so far is exact.
            times += timer.finish()
            pause_start = wall()
            reached = evaluation.run(issued, sum(times))
            if agree is not None:
                reached = agree(reached)
            if reached:
                reason = "target"
            paused_s += wall() - pause_start
            if reason is not None:
                break
        else:
            times += timer.collect()
        elapsed_s = wall() - start - paused_s
        reason, narrow_before = stop_reason(policy, times, issued, elapsed_s, narrow_before)
        if agree is not None:
            reason = agree(reason)
    times += timer.finish()
    window_s = wall() - start - paused_s
    losses = [(done, to_host(loss_sum) / count) for done, loss_sum, count in blocks]
    return WindowResult(times, timer.data_wait_s, losses, window_s, reason)
