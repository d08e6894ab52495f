"""GPU telemetry of the measured window through NVML: samples per device and their summary.

Each sample reads every field of :data:`bench.machine.nvml.FIELDS` on every device the case uses.
The summary gives utilisation, memory, power, clocks and temperature statistics over the samples,
the energy of the window (from the total-energy counter; integrated power where the device has no
counter, flagged), and the fraction of samples in which the clocks were held down for a reason
other than the benign ones (:data:`bench.machine.nvml.BENIGN_CLOCK_EVENTS`).
"""

from collections import Counter
from typing import Any

from bench.machine import nvml
from bench.telemetry import energy
from bench.telemetry.timeline import downsample

# Summary keys, all None when the case has no GPU or NVML is absent (see docs/RESULTS.md).
SUMMARY_KEYS = (
    "energy_j",
    "energy_source",
    "energy_per_step_j",
    "energy_per_sample_j",
    "throttled_fraction",
)
TIMELINE_FIELDS = (
    "gpu_util_percent",
    "mem_util_percent",
    "memory_used_bytes",
    "power_w",
    "sm_clock_mhz",
    "temperature_c",
)


class GpuProbe:
    def __init__(self, devices: list[nvml.Device]) -> None:
        self.devices = devices
        self.times_s: list[float] = []
        self.readings: list[list[dict[str, Any]]] = [[] for _ in devices]

    def sample(self, t_s: float) -> None:
        self.times_s.append(t_s)
        for device, readings in zip(self.devices, self.readings):
            readings.append(device.read())

    def summary(self, span_s: float, num_steps: int, samples_per_step: int) -> dict[str, Any]:
        """``metrics.gpu``: the energy of all the case's devices over the window (``span_s``
        seconds, ``num_steps`` steps), per step and per sample, and each device's summary."""
        devices = [
            summarize_device(device, self.times_s, readings, span_s)
            for device, readings in zip(self.devices, self.readings)
        ]
        energies = [d["energy_j"] for d in devices]
        total_j = sum(energies) if devices and None not in energies else None  # type: ignore[arg-type]
        sources = {d["energy_source"] for d in devices}
        return {
            "available": True,
            "reason": None,
            "energy_j": total_j,
            "energy_source": None if total_j is None else _combined(sources),
            "energy_per_step_j": total_j / num_steps if total_j is not None else None,
            "energy_per_sample_j": (
                total_j / (num_steps * samples_per_step) if total_j is not None else None
            ),
            "throttled_fraction": _max([d["throttled_fraction"] for d in devices]),
            "devices": devices,
        }

    def timelines(self) -> list[dict[str, Any]]:
        out = []
        for device, readings in zip(self.devices, self.readings):
            columns = {field: [r[field] for r in readings] for field in TIMELINE_FIELDS}
            throttled = [nvml.is_throttled(r["clock_event_bits"]) for r in readings]
            columns["throttled"] = [None if t is None else float(t) for t in throttled]
            out.append({"index": device.index, **downsample(self.times_s, columns)})
        return out


def unavailable(reason: str) -> dict[str, Any]:
    """The summary where there is nothing to sample: every figure null, with the reason."""
    return {"available": False, "reason": reason, **dict.fromkeys(SUMMARY_KEYS), "devices": []}


def flags(summary: dict[str, Any]) -> list[str]:
    """The record's flags from a GPU summary: each marks numbers that are not the device's own."""
    out = []
    if summary["throttled_fraction"]:
        # Clocks held down for power or heat: the step times measure a slowed device.
        out.append("throttled_in_window")
    if summary["energy_source"] == "integrated_power":
        out.append("energy_from_integrated_power")
    if any(d["num_read_errors"] for d in summary["devices"]):
        out.append("nvml_read_errors")
    return out


def summarize_device(
    device: nvml.Device, times_s: list[float], readings: list[dict[str, Any]], span_s: float
) -> dict[str, Any]:
    def column(field: str) -> list[Any]:
        return [r[field] for r in readings if r[field] is not None]

    gpu_util, mem_util = column("gpu_util_percent"), column("mem_util_percent")
    power, sm_clock = column("power_w"), column("sm_clock_mhz")
    energy_j, energy_source = _energy(times_s, readings, span_s)
    bits = column("clock_event_bits")
    reasons = Counter(name for b in bits for name in nvml.decode_clock_events(b))
    throttled = [nvml.is_throttled(b) for b in bits]
    sources = device.sources
    return {
        "index": device.index,
        "name": device.name,
        "uuid": device.uuid,
        "num_samples": len(readings),
        "gpu_util_mean_percent": _mean(gpu_util),
        "gpu_util_max_percent": _max(gpu_util),
        "mem_util_mean_percent": _mean(mem_util),
        "mem_util_max_percent": _max(mem_util),
        "memory_used_max_bytes": _max(column("memory_used_bytes")),
        "memory_total_bytes": _max(column("memory_total_bytes")),
        "power_mean_w": _mean(power),
        "power_max_w": _max(power),
        "power_source": sources.get("power"),
        "energy_j": energy_j,
        "energy_source": energy_source,
        "sm_clock_mean_mhz": _mean(sm_clock),
        "sm_clock_min_mhz": min(sm_clock) if sm_clock else None,
        "mem_clock_mean_mhz": _mean(column("mem_clock_mhz")),
        "temperature_max_c": _max(column("temperature_c")),
        "throttled_fraction": sum(throttled) / len(throttled) if throttled else None,
        "clock_event_fractions": {name: n / len(bits) for name, n in sorted(reasons.items())},
        "clock_events_source": sources.get("clock_events"),
        "unsupported": device.unsupported,
        "num_read_errors": device.num_errors,
        "first_error": device.first_error,
    }


def _energy(
    times_s: list[float], readings: list[dict[str, Any]], span_s: float
) -> tuple[float | None, str | None]:
    """From the counter when both ends of the window have a reading (readings lost in between do
    not matter: it accumulates); else power integrated over the samples; else None."""
    if readings and readings[0]["energy_mj"] is not None and readings[-1]["energy_mj"] is not None:
        return energy.counter_delta_j(
            readings[0]["energy_mj"], readings[-1]["energy_mj"]
        ), "counter"
    integrated = energy.integrated_j(times_s, [r["power_w"] for r in readings], span_s)
    return (integrated, "integrated_power") if integrated is not None else (None, None)


def _combined(sources: set[str | None]) -> str:
    # Any device on the fallback makes the total a partly integrated figure.
    return "integrated_power" if "integrated_power" in sources else "counter"


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _max(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None
