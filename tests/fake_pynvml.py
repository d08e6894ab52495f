"""A fake ``pynvml`` module: the hardware boundary of bench/machine/nvml.py, scripted per test.

Each fake GPU answers every call from a script: ``{quantity: [value per read, ...]}``; a value of
``Err(code)`` raises the NVML error with that code, and the last value repeats once a script runs
out. Calls are counted, so a test can see that an unsupported quantity is not asked again.
Constants and error codes are nvidia-ml-py's own.
"""

import sys
import types
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pynvml as real

NVML_SUCCESS = real.NVML_SUCCESS
NOT_SUPPORTED = real.NVML_ERROR_NOT_SUPPORTED
FUNCTION_NOT_FOUND = real.NVML_ERROR_FUNCTION_NOT_FOUND
UNKNOWN = real.NVML_ERROR_UNKNOWN
GPU_IS_LOST = real.NVML_ERROR_GPU_IS_LOST


@dataclass(frozen=True)
class Err:
    code: int


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return real.NVMLError._errcode_to_string.get(self.value, f"error {self.value}")


@dataclass
class FakeGpu:
    name: str = "NVIDIA H200"
    uuid: str = "GPU-00000000-1111-2222-3333-444444444444"
    script: dict[str, list[Any]] = field(default_factory=dict)
    calls: Counter = field(default_factory=Counter)

    DEFAULTS = {
        "gpu_util": 97,
        "mem_util": 40,
        "memory_used": 30 * 2**30,
        "memory_total": 141 * 2**30,
        "power_instant_mw": 650_000,
        "power_average_mw": 600_000,
        "energy_mj": 1_000_000,
        "sm_clock": 1980,
        "mem_clock": 3201,
        "temperature": 60,
        "clock_events": 0,
        "throttle_reasons": 0,
        "power_limit_mw": 700_000,
    }

    def raw(self, quantity: str) -> Any:
        """The scripted value of the next read of ``quantity`` (an ``Err`` is returned)."""
        self.calls[quantity] += 1
        values = self.script.get(quantity, [self.DEFAULTS[quantity]])
        return values[min(self.calls[quantity], len(values)) - 1]

    def next(self, quantity: str) -> Any:
        value = self.raw(quantity)
        if isinstance(value, Err):
            raise NVMLError(value.code)
        return value


def module(gpus: list[FakeGpu], has_clock_events: bool = True) -> types.ModuleType:
    """A module object that stands in for ``pynvml``, with ``gpus`` as NVML's devices."""
    nvml = types.ModuleType("pynvml")
    for name in dir(real):
        if name.startswith("NVML_"):
            setattr(nvml, name, getattr(real, name))
    nvml.NVMLError = NVMLError
    nvml.gpus = gpus
    nvml.num_inits = 0

    def init() -> None:
        nvml.num_inits += 1

    def by_uuid(uuid: str) -> FakeGpu:
        for gpu in gpus:
            if gpu.uuid == uuid:
                return gpu
        raise NVMLError(real.NVML_ERROR_NOT_FOUND)

    def field_values(gpu: FakeGpu, ids: list[int]) -> list[Any]:
        assert ids == [real.NVML_FI_DEV_POWER_INSTANT]
        value = gpu.raw("power_instant_mw")
        if isinstance(value, Err):
            # Per-field status: the call succeeds and the field carries the error.
            return [types.SimpleNamespace(nvmlReturn=value.code, valueType=1, value=None)]
        union = types.SimpleNamespace(uiVal=value)
        return [
            types.SimpleNamespace(
                nvmlReturn=NVML_SUCCESS, valueType=real.NVML_VALUE_TYPE_UNSIGNED_INT, value=union
            )
        ]

    def clock(gpu: FakeGpu, kind: int) -> int:
        return gpu.next("sm_clock" if kind == real.NVML_CLOCK_SM else "mem_clock")

    calls = {
        "nvmlInit": init,
        "nvmlShutdown": lambda: None,
        "nvmlDeviceGetCount": lambda: len(gpus),
        "nvmlDeviceGetHandleByIndex": lambda i: gpus[i],
        "nvmlDeviceGetHandleByUUID": by_uuid,
        "nvmlDeviceGetIndex": lambda gpu: gpus.index(gpu),
        "nvmlDeviceGetName": lambda gpu: gpu.name,
        "nvmlDeviceGetUUID": lambda gpu: gpu.uuid,
        "nvmlSystemGetDriverVersion": lambda: "565.57.01",
        "nvmlSystemGetNVMLVersion": lambda: "12.565.57.01",
        "nvmlDeviceGetUtilizationRates": lambda gpu: types.SimpleNamespace(
            gpu=gpu.next("gpu_util"), memory=gpu.next("mem_util")
        ),
        "nvmlDeviceGetMemoryInfo": lambda gpu: types.SimpleNamespace(
            used=gpu.next("memory_used"), total=gpu.next("memory_total")
        ),
        "nvmlDeviceGetFieldValues": field_values,
        "nvmlDeviceGetPowerUsage": lambda gpu: gpu.next("power_average_mw"),
        "nvmlDeviceGetEnforcedPowerLimit": lambda gpu: gpu.next("power_limit_mw"),
        "nvmlDeviceGetTotalEnergyConsumption": lambda gpu: gpu.next("energy_mj"),
        "nvmlDeviceGetClockInfo": clock,
        "nvmlDeviceGetTemperature": lambda gpu, sensor: gpu.next("temperature"),
        "nvmlDeviceGetCurrentClocksThrottleReasons": lambda gpu: gpu.next("throttle_reasons"),
    }
    if has_clock_events:  # nvidia-ml-py before 12.535 has only the older ThrottleReasons call
        calls["nvmlDeviceGetCurrentClocksEventReasons"] = lambda gpu: gpu.next("clock_events")
    for name, fn in calls.items():
        setattr(nvml, name, fn)
    return nvml


def install(monkeypatch, gpus: list[FakeGpu], **options: Any) -> types.ModuleType:
    """Put a fake ``pynvml`` in ``sys.modules`` for the test's duration."""
    fake = module(gpus, **options)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake
