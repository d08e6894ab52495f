"""The worker process on the host, sampled with psutil: CPU utilisation and resident memory.

CPU time counts every thread of the worker (torch's intra-op threads, the sampler's own) and none
of its children (inductor's compile workers have finished before the window). Utilisation is in
percent of one core, as ``top`` shows it: 200 means two cores busy the whole time.
"""

from typing import Any

import psutil

from bench.telemetry.timeline import downsample


class HostProbe:
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.process = psutil.Process()
        self.times_s: list[float] = []
        self.cpu_s: list[float] = []
        self.rss_bytes: list[int] = []

    def sample(self, t_s: float) -> None:
        cpu = self.process.cpu_times()
        self.times_s.append(t_s)
        self.cpu_s.append(cpu.user + cpu.system)
        self.rss_bytes.append(self.process.memory_info().rss)

    def _interval_percent(self) -> list[float | None]:
        """CPU percent over each interval, at the interval's end (None for the first sample).

        None, too, for an interval shorter than half the sampling interval (the last one, cut
        short by ``stop()``): CPU times tick in 10 ms steps (USER_HZ = 100), so a few
        milliseconds give a rate off by far more than the rate itself. Its time still counts in
        the mean, which runs from the first sample to the last.
        """
        t, cpu = self.times_s, self.cpu_s
        return [None] + [
            100 * (c1 - c0) / (t1 - t0) if t1 - t0 >= self.interval_s / 2 else None
            for t0, t1, c0, c1 in zip(t, t[1:], cpu, cpu[1:])
        ]

    def summary(self) -> dict[str, Any]:
        """Means over the whole span and peaks over the samples (a peak between two samples is
        missed: ``metrics.peak_rss_bytes`` is the exact high-water mark of the window).
        """
        t, cpu = self.times_s, self.cpu_s
        span_s = t[-1] - t[0]
        per_interval = [p for p in self._interval_percent() if p is not None]
        return {
            "process_cpu_percent_mean": 100 * (cpu[-1] - cpu[0]) / span_s if span_s > 0 else None,
            "process_cpu_percent_max": max(per_interval) if per_interval else None,
            "rss_sampled_peak_bytes": max(self.rss_bytes),
            "rss_start_bytes": self.rss_bytes[0],
            "num_samples": len(t),
        }

    def timeline(self) -> dict[str, list[float | None]]:
        return downsample(
            self.times_s,
            {
                "process_cpu_percent": self._interval_percent(),
                "rss_bytes": [float(b) for b in self.rss_bytes],
            },
        )
