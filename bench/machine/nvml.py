"""NVML (nvidia-ml-py), the hardware boundary for NVIDIA GPUs. Torch-free.

Every call into ``pynvml`` lives here. Tests on machines without a GPU replace ``pynvml`` with a
fake module at this boundary (``sys.modules["pynvml"]``); nothing else in the package imports it.

A :class:`Device` reads one GPU's telemetry. A quantity the device does not offer (NVML answers
``NOT_SUPPORTED``, or the driver or nvidia-ml-py lacks the function) falls back to an older call
where there is one, else is recorded as unsupported and never asked again; any other NVML error
leaves that one reading None and is counted, and the next reading tries again.
"""

import os
from collections.abc import Callable
from typing import Any

# Clock-event ("throttle") reason bits of nvml.h: NVML API reference, NvmlClocksEventReasons
# (https://docs.nvidia.com/deploy/nvml-api/group__nvmlClocksEventReasons.html). The bits are the
# ABI: the older nvmlClocksThrottleReason* names have the same values.
CLOCK_EVENT_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",
    0x400: "reliability",
}
# Reasons that do not mean the device ran slower than it can:
# - gpu_idle: "Nothing is running on the GPU and the clocks are dropping to Idle state" (NVML
#   reference). It marks a moment without work (the host fell behind between kernels), which the
#   utilisation already shows; the kernels that ran did so at full clock.
# - applications_clocks_setting: "Clocks are set to application-specific values": the clock is
#   the configured operating point (data-centre boards report it at their default application
#   clocks in steady state), not a reaction to a power or thermal limit.
BENIGN_CLOCK_EVENTS = frozenset({"gpu_idle", "applications_clocks_setting"})

# Readings of one device, in the units their names carry.
FIELDS = (
    "gpu_util_percent",
    "mem_util_percent",
    "memory_used_bytes",
    "memory_total_bytes",
    "power_w",
    "energy_mj",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "temperature_c",
    "clock_event_bits",
)


class NvmlUnavailable(Exception):
    """No NVML here (no library, no driver, no device); ``str()`` is the reason."""


def decode_clock_events(bits: int) -> list[str]:
    """Names of the reasons set in a clock-event bit mask, unknown bits as ``bit_0x...``."""
    names = []
    for bit in (1 << i for i in range(bits.bit_length())):
        if bits & bit:
            names.append(CLOCK_EVENT_REASONS.get(bit, f"bit_{bit:#x}"))
    return names


def is_throttled(bits: int | None) -> bool | None:
    """Whether any reason other than the benign ones is set (None when the bits are unknown)."""
    if bits is None:
        return None
    return any(name not in BENIGN_CLOCK_EVENTS for name in decode_clock_events(bits))


class Session:
    """An initialised NVML: ``nvmlInit`` on construction, ``nvmlShutdown`` on :meth:`close`."""

    def __init__(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as error:  # noqa: BLE001 - no library, no driver, no device: all mean none
            raise NvmlUnavailable(f"NVML unavailable ({error})") from error
        self.nvml = pynvml

    def close(self) -> None:
        self.nvml.nvmlShutdown()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def count(self) -> int:
        return self.nvml.nvmlDeviceGetCount()

    def device(self, index: int | None = None, uuid: str | None = None) -> "Device":
        """The device at NVML ``index``, or the one with ``uuid`` (``GPU-...``, as CUDA reports
        it): CUDA numbers devices in its own order and after CUDA_VISIBLE_DEVICES, NVML does not,
        so a UUID is the only safe link between a torch device and an NVML handle."""
        nvml = self.nvml
        try:
            if uuid is not None:
                handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
                index = nvml.nvmlDeviceGetIndex(handle)
            else:
                assert index is not None, "give an index or a uuid"
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
        except nvml.NVMLError as error:
            raise NvmlUnavailable(f"NVML has no device {uuid or index} ({error})") from error
        return Device(nvml, handle, index)

    def driver(self) -> dict[str, str | None]:
        return {
            "driver_version": _optional(self.nvml, "nvmlSystemGetDriverVersion"),
            "nvml_version": _optional(self.nvml, "nvmlSystemGetNVMLVersion"),
        }


class Device:
    """One GPU: its identity and a :meth:`read` of every telemetry field."""

    def __init__(self, nvml: Any, handle: Any, index: int) -> None:
        self.nvml = nvml
        self.handle = handle
        self.index = index
        self.name: str = nvml.nvmlDeviceGetName(handle)
        self.uuid: str = nvml.nvmlDeviceGetUUID(handle)
        self._readers = [_Reader(nvml, name, options) for name, options in self._candidates()]
        self.num_errors = 0
        self.first_error: str | None = None

    def read(self) -> dict[str, float | int | None]:
        """Every field of :data:`FIELDS`; None where unsupported or where this read failed."""
        values: dict[str, float | int | None] = dict.fromkeys(FIELDS)
        for reader in self._readers:
            try:
                values.update(reader.read())
            except self.nvml.NVMLError as error:
                self.num_errors += 1
                if self.first_error is None:
                    self.first_error = f"{reader.name}: {error}"
        return values

    @property
    def sources(self) -> dict[str, str]:
        """Which NVML call served each reader (for power: ``instant`` or ``average``)."""
        return {r.name: r.source for r in self._readers if r.source is not None}

    @property
    def unsupported(self) -> list[str]:
        return [r.name for r in self._readers if r.source is None]

    def _candidates(self) -> list[tuple[str, list[tuple[str, Callable[[], dict]]]]]:
        nvml, handle = self.nvml, self.handle

        def utilization() -> dict:
            rates = nvml.nvmlDeviceGetUtilizationRates(handle)
            return {"gpu_util_percent": rates.gpu, "mem_util_percent": rates.memory}

        def memory() -> dict:
            info = nvml.nvmlDeviceGetMemoryInfo(handle)
            return {"memory_used_bytes": info.used, "memory_total_bytes": info.total}

        def power_instant() -> dict:
            # Milliwatts. An instant reading where the device has one (recent drivers, Hopper and
            # newer): nvmlDeviceGetPowerUsage averages over 1 s on Ampere (but GA100) and newer
            # (NVML reference, nvmlDeviceGetPowerUsage), which smears short windows.
            field = nvml.nvmlDeviceGetFieldValues(handle, [nvml.NVML_FI_DEV_POWER_INSTANT])[0]
            return {"power_w": _field_value(nvml, field) / 1e3}

        def power_average() -> dict:
            return {"power_w": nvml.nvmlDeviceGetPowerUsage(handle) / 1e3}  # milliwatts

        def energy() -> dict:
            # Millijoules since the driver was loaded (Volta and newer), a 64-bit counter.
            return {"energy_mj": nvml.nvmlDeviceGetTotalEnergyConsumption(handle)}

        def clock(kind: str, field: str) -> Callable[[], dict]:
            return lambda: {field: nvml.nvmlDeviceGetClockInfo(handle, getattr(nvml, kind))}

        def temperature() -> dict:
            return {
                "temperature_c": nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
            }

        def clock_events(function: str) -> Callable[[], dict]:
            return lambda: {"clock_event_bits": getattr(nvml, function)(handle)}

        power = [("average", power_average)]
        if hasattr(nvml, "nvmlDeviceGetFieldValues") and hasattr(nvml, "NVML_FI_DEV_POWER_INSTANT"):
            power.insert(0, ("instant", power_instant))
        # The newer name (driver 535 and later), then the deprecated one that older drivers have;
        # a call this nvidia-ml-py lacks is left out.
        events = [
            (source, clock_events(function))
            for source, function in (
                ("clocks_event_reasons", "nvmlDeviceGetCurrentClocksEventReasons"),
                ("throttle_reasons", "nvmlDeviceGetCurrentClocksThrottleReasons"),
            )
            if hasattr(nvml, function)
        ]
        return [
            ("utilization", [("utilization_rates", utilization)]),
            ("memory", [("memory_info", memory)]),
            ("power", power),
            ("energy", [("total_energy_consumption", energy)]),
            ("sm_clock", [("clock_info", clock("NVML_CLOCK_SM", "sm_clock_mhz"))]),
            ("mem_clock", [("clock_info", clock("NVML_CLOCK_MEM", "mem_clock_mhz"))]),
            ("temperature", [("temperature", temperature)]),
            ("clock_events", events),
        ]


class _Reader:
    """One NVML call, with its fallbacks in order, that fills some fields."""

    def __init__(self, nvml: Any, name: str, options: list[tuple[str, Callable[[], dict]]]) -> None:
        self.nvml = nvml
        self.name = name
        self._options = options

    @property
    def source(self) -> str | None:
        """The call in use; None once every option proved unsupported."""
        return self._options[0][0] if self._options else None

    def read(self) -> dict:
        """The fields this call fills; ``{}`` when unsupported. Other NVML errors propagate."""
        nvml = self.nvml
        unsupported = (nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        while self._options:
            _, fn = self._options[0]
            try:
                return fn()
            except nvml.NVMLError as error:
                if getattr(error, "value", None) not in unsupported:
                    raise
            self._options.pop(0)  # never asked again
        return {}


def _field_value(nvml: Any, field: Any) -> float:
    """The value of one ``nvmlFieldValue_t``; the call succeeds even where a field fails."""
    if field.nvmlReturn != nvml.NVML_SUCCESS:
        raise nvml.NVMLError(field.nvmlReturn)  # NOT_SUPPORTED falls back like a failed call
    member = {
        nvml.NVML_VALUE_TYPE_DOUBLE: "dVal",
        nvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
        nvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
        nvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
        nvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
        nvml.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
    }[field.valueType]
    return getattr(field.value, member)


def _optional(nvml: Any, function: str, *args: Any) -> Any:
    try:
        return getattr(nvml, function)(*args)
    except (AttributeError, nvml.NVMLError):
        return None


def inventory() -> dict[str, Any]:
    """NVML's state and every device it sees, with what telemetry each offers (``bench env``)."""
    try:
        session = Session()
    except NvmlUnavailable as error:
        return {
            "state": "unavailable",
            "reason": str(error),
            "driver_version": None,
            "nvml_version": None,
            "devices": [],
        }
    with session:
        devices = []
        for index in range(session.count()):
            device = session.device(index=index)
            reading = device.read()
            limit_mw = _optional(session.nvml, "nvmlDeviceGetEnforcedPowerLimit", device.handle)
            devices.append(
                {
                    "index": index,
                    "name": device.name,
                    "uuid": device.uuid,
                    "memory_total_bytes": reading["memory_total_bytes"],
                    "power_limit_w": limit_mw / 1e3 if limit_mw is not None else None,
                    "telemetry": device.sources,
                    "unsupported": device.unsupported,
                }
            )
        return {
            "state": "ok",
            "reason": None if devices else "NVML sees no GPU",
            **session.driver(),
            "devices": devices,
        }


def cuda_device_count() -> tuple[int, str | None]:
    """NVIDIA devices visible to this process, and the reason when there are none."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0, f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as error:  # noqa: BLE001 - no library, no driver, no device: all mean none
        return 0, f"NVML unavailable ({error})"
    try:
        count = pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()
    if visible is not None:
        count = min(count, len([d for d in visible.split(",") if d.strip()]))
    return count, None if count else "NVML sees no GPU"
