"""Telemetry around the measured window: what the worker starts before it and stops after it.

One :class:`~bench.telemetry.sampler.Sampler` thread feeds the host probe and, on CUDA, the GPU
probe of every device the case uses; the CUDA allocator's retry and OOM counters are read at both
ends. :meth:`WindowTelemetry.result` gives the record's metrics, timelines and flags.
"""

from dataclasses import dataclass
from typing import Any

import torch

from bench.machine import nvml
from bench.telemetry import gpu
from bench.telemetry.host import HostProbe
from bench.telemetry.sampler import Probe, Sampler


@dataclass(frozen=True)
class TelemetryResult:
    metrics: dict[str, Any]
    """``gpu``, ``host``, ``num_alloc_retries``, ``num_ooms`` (docs/RESULTS.md)."""
    samples: dict[str, Any]
    """Timelines: ``host`` and ``gpu`` (one per device)."""
    flags: list[str]


class WindowTelemetry:
    def __init__(self, device: torch.device, interval_s: float) -> None:
        self.device = device
        self.host = HostProbe(interval_s)
        self.gpu: gpu.GpuProbe | None = None
        self.session: nvml.Session | None = None
        self.gpu_reason: str | None = None
        probes: list[Probe] = [self.host]
        if device.type == "cuda":
            try:
                self.session = nvml.Session()
                devices = [self.session.device(uuid=cuda_uuid(device))]
            except nvml.NvmlUnavailable as error:
                self.gpu_reason = str(error)
            else:
                self.gpu = gpu.GpuProbe(devices)
                probes.append(self.gpu)
        else:
            self.gpu_reason = f"the case runs on {device.type}: no GPU to sample"
        self.sampler = Sampler(probes, interval_s)
        self._allocator_start: dict[str, int | None] = {}

    def start(self) -> None:
        self._allocator_start = _allocator_counts(self.device)
        self.sampler.start()

    def stop(self) -> None:
        try:
            self.sampler.stop()
        finally:
            if self.session is not None:
                self.session.close()

    def result(self, num_steps: int, samples_per_step: int) -> TelemetryResult:
        span_s = self.sampler.span_s
        if self.gpu is not None:
            gpu_summary = self.gpu.summary(span_s, num_steps, samples_per_step)
            gpu_timelines = self.gpu.timelines()
        else:
            assert self.gpu_reason is not None
            gpu_summary, gpu_timelines = gpu.unavailable(self.gpu_reason), []
        gpu_summary["interval_s"] = self.sampler.interval_s
        end = _allocator_counts(self.device)
        return TelemetryResult(
            metrics={
                "gpu": gpu_summary,
                "host": {**self.host.summary(), "interval_s": self.sampler.interval_s},
                # Retries inside the window: the allocator freed its cache and tried again, which
                # slows the steps it happens in. OOMs since the process started: an OOM that was
                # caught (inductor's autotuning drops a candidate kernel that does not fit).
                "num_alloc_retries": _difference(
                    end.get("num_alloc_retries"), self._allocator_start.get("num_alloc_retries")
                ),
                "num_ooms": end.get("num_ooms"),
            },
            samples={"host": self.host.timeline(), "gpu": gpu_timelines},
            flags=gpu.flags(gpu_summary),
        )


def cuda_uuid(device: torch.device) -> str:
    """The device's UUID as NVML spells it (``GPU-...``); torch gives it without the prefix."""
    uuid = str(torch.cuda.get_device_properties(device).uuid)
    return uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"


def _allocator_counts(device: torch.device) -> dict[str, int | None]:
    """The caching allocator's cumulative counters (none on CPU, or with caching disabled)."""
    if device.type != "cuda":
        return {}
    stats = torch.cuda.memory_stats(device)
    return {key: stats.get(key) for key in ("num_alloc_retries", "num_ooms")}


def _difference(end: int | None, start: int | None) -> int | None:
    return end - start if end is not None and start is not None else None
