"""A background thread that samples probes at a fixed interval while the measured window runs.

``start()`` and ``stop()`` each take one sample in the calling thread, right before the first
measured step and right after the last, so the first and last samples bracket the window (an
energy counter needs a reading at both ends). In between, a daemon thread samples on a fixed
schedule: deadlines at ``start + k * interval_s``, so a slow read does not stretch the interval.

A thread, not a process: a sample is cheap (a host sample through psutil took about 80 us on the
2-core development machine, under 0.1% of a core at the default 100 ms), and NVML's reads are
ctypes calls, which release the GIL while the driver answers. Timestamps come from
:func:`bench.measure.timing.wall`, the harness's one host clock.
"""

import threading
from typing import Protocol

from bench.measure.timing import wall


class Probe(Protocol):
    def sample(self, t_s: float) -> None:
        """Read and keep one sample taken at host time ``t_s``."""


class Sampler:
    def __init__(self, probes: list[Probe], interval_s: float) -> None:
        self.probes = probes
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.start_s: float | None = None
        self.stop_s: float | None = None

    def start(self) -> None:
        assert self._thread is None, "a sampler runs once"
        self.start_s = self._sample()
        # Daemon: a worker that dies of an error mid-window exits without joining it.
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Join the thread and take the last sample; a probe's exception is raised here."""
        assert self._thread is not None and self.start_s is not None, "stop() before start()"
        self._stop.set()
        self._thread.join()
        if self._error is not None:
            raise self._error
        self.stop_s = self._sample()

    @property
    def span_s(self) -> float:
        assert self.start_s is not None and self.stop_s is not None, "sampler not stopped"
        return self.stop_s - self.start_s

    def _sample(self) -> float:
        t_s = wall()
        for probe in self.probes:
            probe.sample(t_s)
        return t_s

    def _run(self) -> None:
        assert self.start_s is not None
        deadline = self.start_s
        try:
            while True:
                deadline += self.interval_s
                # Behind schedule (a read took longer than the interval): skip the missed ticks.
                now = wall()
                while deadline <= now:
                    deadline += self.interval_s
                if self._stop.wait(deadline - now):
                    return
                self._sample()
        except BaseException as error:  # noqa: BLE001 - re-raised by stop() in the worker's thread
            self._error = error
