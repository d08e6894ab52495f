"""Clocks and host synchronisation: every clock read and every device sync of a run lives here.

A window of training steps is timed by a :class:`StepTimer` that marks the boundary between
consecutive steps, so that step i's time is ``mark[i + 1] - mark[i]`` and the step times add up to
the window. Two implementations sit behind that one interface:

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
    def mark(self) -> None:
        """Mark a step boundary: call once before the first step and after every step."""

    def collect(self) -> list[float]:
        """Step times (s) that are known by now and not returned before, in order."""

    def finish(self) -> list[float]:
        """End of window: wait for the device and return every remaining step time."""


class HostTimer:
    """Step times from ``time.perf_counter`` (CPU devices)."""

    def __init__(self) -> None:
        self._marks: list[float] = []
        self._returned = 0  # number of step times already handed out

    def mark(self) -> None:
        self._marks.append(time.perf_counter())

    def collect(self) -> list[float]:
        marks = self._marks
        times = [b - a for a, b in zip(marks[self._returned :], marks[self._returned + 1 :])]
        self._returned += len(times)
        return times

    def finish(self) -> list[float]:
        return self.collect()


class CudaEventTimer:
    """Step times from CUDA events, with no host synchronisation per step.

    ``collect`` returns the steps up to the previous call of ``collect`` only: it waits on the last
    event of that earlier block, which the GPU has usually finished already while it works on the
    block queued since. The host thus reads times without draining the GPU's queue, and the GPU
    never idles for the harness. ``finish`` synchronises once, at the end of the window.
    """

    def __init__(self, make_event: Callable[[], Any] | None = None) -> None:
        # make_event is the hardware boundary: tests on a CPU machine pass a fake event.
        self._make_event = make_event or (lambda: torch.cuda.Event(enable_timing=True))
        self._events: list[Any] = []
        self._returned = 0  # step times already handed out
        self._ready = 0  # events up to this index belong to a block that collect may read

    def mark(self) -> None:
        event = self._make_event()
        event.record()
        self._events.append(event)

    def _read(self, upto: int) -> list[float]:
        events = self._events[self._returned : upto]
        # elapsed_time is in milliseconds.
        times = [a.elapsed_time(b) / 1e3 for a, b in zip(events, events[1:])]
        self._returned += len(times)
        return times

    def collect(self) -> list[float]:
        ready, self._ready = self._ready, len(self._events)
        if ready <= self._returned + 1:
            return []
        # Wait for the end of the earlier block only (not a device-wide synchronize).
        self._events[ready - 1].synchronize()
        return self._read(ready)

    def finish(self) -> list[float]:
        if self._events:
            self._events[-1].synchronize()
        return self._read(len(self._events))


def step_timer(device: torch.device) -> StepTimer:
    return CudaEventTimer() if device.type == "cuda" else HostTimer()


def to_host(value: torch.Tensor) -> float:
    """Copy a scalar to the host. A sync: call it only on values the timer has already seen done
    (a loss read after ``collect`` returned its step) or outside the window."""
    return value.item()
