"""Clocks and host synchronisation: every clock read and every device sync of a run lives here.

A window of training steps is timed in blocks by a :class:`StepTimer` that marks the boundary
between consecutive steps, so that step i's time is ``mark[i + 1] - mark[i]``; the gaps between
blocks (the harness's bookkeeping) are in no step. Two implementations share that interface:

- :class:`HostTimer` (CPU): ``time.perf_counter`` at each mark. CPU ops run synchronously, so the
  host clock is the device clock.
- :class:`CudaEventTimer` (CUDA): a CUDA event recorded at each mark, read back one block late, so
  the host never waits for the GPU inside the window except to read a block that is already done.

Inside a step, a second mark (``mark_data``) falls where the step's batch is on the device: from
the step's start to it, the step waited for its data (the next batch and its copy to the device).
On CUDA that span is read from events too: it is the time the *device* spent between the end of
the previous step's work and the end of the copy, which is the data stall the device sees (zero
queued work waits while the host fetches ahead), plus the copy itself.
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

    def mark_data(self) -> None:
        """Mark, inside the step, the moment its batch is on the device (optional per step)."""

    data_wait_s: list[float]
    """Per step with a data mark, seconds from its start to that mark, in order; filled as the
    step times are collected."""

    def collect(self) -> list[float]:
        """Step times (s) that are known by now and not returned before, in order."""

    def finish(self) -> list[float]:
        """End of window: wait for the device and return every remaining step time."""


class HostTimer:
    """Step times from ``time.perf_counter`` (CPU devices)."""

    def __init__(self) -> None:
        self._blocks: list[list[float]] = []
        # Per block: (step index in the block, clock) of each data mark.
        self._data: list[list[tuple[int, float]]] = []
        self._returned = 0  # blocks already handed out
        self.data_wait_s: list[float] = []

    def start_block(self) -> None:
        self._blocks.append([time.perf_counter()])
        self._data.append([])

    def mark(self) -> None:
        self._blocks[-1].append(time.perf_counter())

    def mark_data(self) -> None:
        self._data[-1].append((len(self._blocks[-1]) - 1, time.perf_counter()))

    def collect(self) -> list[float]:
        start, self._returned = self._returned, len(self._blocks)
        for marks, data in zip(self._blocks[start:], self._data[start:]):
            self.data_wait_s += [at - marks[step] for step, at in data]
        return [b - a for marks in self._blocks[start:] for a, b in zip(marks, marks[1:])]

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
        self._data: list[list[tuple[int, Any]]] = []  # per block: (step in block, event)
        self._returned = 0  # blocks already handed out
        self.data_wait_s: list[float] = []

    def _record(self) -> Any:
        event = self._make_event()
        event.record()
        return event

    def start_block(self) -> None:
        self._blocks.append([self._record()])
        self._data.append([])

    def mark(self) -> None:
        self._blocks[-1].append(self._record())

    def mark_data(self) -> None:
        self._data[-1].append((len(self._blocks[-1]) - 1, self._record()))

    def _read(self, upto: int) -> list[float]:
        start, self._returned = self._returned, max(self._returned, upto)
        done = self._blocks[start:upto]
        if not done:
            return []
        # Wait for the end of the last block read only (not a device-wide synchronize); a data
        # mark lies before its step's end, so it is done too.
        done[-1][-1].synchronize()
        # elapsed_time is in milliseconds.
        for events, data in zip(done, self._data[start:upto]):
            self.data_wait_s += [events[step].elapsed_time(at) / 1e3 for step, at in data]
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
