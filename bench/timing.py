"""Clocks and host synchronisation: every clock read and every device sync of a run lives here.

A window of training steps is timed in blocks by a :class:`StepTimer` that marks the boundary
between consecutive steps, so that step i's time is ``mark[i + 1] - mark[i]``; the gaps between
blocks (the harness's bookkeeping) are in no step. Two implementations share that interface:

- :class:`HostTimer` (CPU): ``time.perf_counter`` at each mark. CPU ops run synchronously, so the
  host clock is the device clock.
- :class:`CudaEventTimer` (CUDA): a CUDA event recorded at each mark, read back one block late, so
  the host never waits for the GPU inside the window except to read a block that is already done.
"""

import time
from collections.abc import Callable
from typing import Any, Protocol

import torch


def wall() -> float:
    """Host monotonic clock in seconds (for elapsed-time checks, never for step times on CUDA)."""
    return time.perf_counter()


def synchronize(device: torch.device) -> None:
    """Wait until the device has finished all queued work.

    Used only outside the measured window: before and after the first step (so that its time is
    its own, compilation included), and at the end of warm-up (so that the window starts on an idle
    device).
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """Run ``fn`` once, alone on an idle device, and return its result and wall time."""
    synchronize(device)
    start = wall()
    result = fn()
    synchronize(device)
    return result, wall() - start


class StepTimer(Protocol):
    """Times steps in blocks. Within a block, step i's time is ``mark[i + 1] - mark[i]``; the gap
    between blocks (the harness's own bookkeeping) belongs to no step."""

    def start_block(self) -> None:
        """Mark the start of a block of steps."""

    def mark(self) -> None:
        """Mark the end of a step (and the start of the next one in the block)."""

    def collect(self) -> list[float]:
        """Step times (s) that are known by now and not returned before, in order."""

    def finish(self) -> list[float]:
        """End of window: wait for the device and return every remaining step time."""


class HostTimer:
    """Step times from ``time.perf_counter`` (CPU devices)."""

    def __init__(self) -> None:
        self._blocks: list[list[float]] = []
        self._returned = 0  # blocks already handed out

    def start_block(self) -> None:
        self._blocks.append([time.perf_counter()])

    def mark(self) -> None:
        self._blocks[-1].append(time.perf_counter())

    def collect(self) -> list[float]:
        done, self._returned = self._blocks[self._returned :], len(self._blocks)
        return [b - a for marks in done for a, b in zip(marks, marks[1:])]

    def finish(self) -> list[float]:
        return self.collect()


class CudaEventTimer:
    """Step times from CUDA events, with no host synchronisation per step.

    ``collect`` returns only the blocks before the one in progress: it waits on the last event of
    the block before it, which the GPU has usually finished already while it works on the block
    queued since. The host thus reads times without draining the GPU's queue, and the GPU never
    idles for the harness. ``finish`` waits once, at the end of the window.
    """

    def __init__(self, make_event: Callable[[], Any] | None = None) -> None:
        # make_event is the hardware boundary: tests on a CPU machine pass a fake event.
        self._make_event = make_event or (lambda: torch.cuda.Event(enable_timing=True))
        self._blocks: list[list[Any]] = []
        self._returned = 0  # blocks already handed out

    def _record(self) -> Any:
        event = self._make_event()
        event.record()
        return event

    def start_block(self) -> None:
        self._blocks.append([self._record()])

    def mark(self) -> None:
        self._blocks[-1].append(self._record())

    def _read(self, upto: int) -> list[float]:
        done, self._returned = self._blocks[self._returned : upto], max(self._returned, upto)
        if not done:
            return []
        # Wait for the end of the last block read only (not a device-wide synchronize).
        done[-1][-1].synchronize()
        # elapsed_time is in milliseconds.
        return [a.elapsed_time(b) / 1e3 for events in done for a, b in zip(events, events[1:])]

    def collect(self) -> list[float]:
        return self._read(len(self._blocks) - 1)

    def finish(self) -> list[float]:
        return self._read(len(self._blocks))


def step_timer(device: torch.device) -> StepTimer:
    return CudaEventTimer() if device.type == "cuda" else HostTimer()


def to_host(value: torch.Tensor) -> float:
    """Copy a scalar to the host. On CUDA this waits for all work queued so far: call it only
    outside the measured window (losses of the window are read after ``finish``)."""
    return value.item()


def epoch() -> float:
    """Wall-clock seconds since the epoch: the one clock two processes share (launch to start of
    a worker); never for step times."""
    return time.time()
