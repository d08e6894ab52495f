"""Energy over a window from NVML readings: counter deltas, or integrated power as a fallback.

Pure functions of the samples, so that tests check them with hand-computed numbers.
"""

# nvmlDeviceGetTotalEnergyConsumption returns an ``unsigned long long`` of millijoules since the
# driver was loaded (NVML API reference), so the counter wraps modulo 2**64.
ENERGY_COUNTER_MODULUS = 2**64


def counter_delta_j(first_mj: int, last_mj: int) -> float:
    """Energy between two readings of the total-energy counter, across a wrap if there was one.

    Modular difference: a counter that wrapped once between the readings (last < first) still
    gives the energy used. Two wraps would need 2**64 mJ (585 million years at 1 kW).
    """
    return ((last_mj - first_mj) % ENERGY_COUNTER_MODULUS) / 1e3


def integrated_j(times_s: list[float], power_w: list[float | None], span_s: float) -> float | None:
    """Energy over ``span_s`` seconds as the mean power of the samples (trapezoids) times the span.

    The fallback where the counter is missing: power is sampled, not accumulated, so anything
    that happens between samples is interpolated, and ``nvmlDeviceGetPowerUsage`` averages over
    1 s on recent GPUs. Samples that failed (None) are skipped; None with fewer than one reading.
    """
    points = [(t, p) for t, p in zip(times_s, power_w) if p is not None]
    if not points:
        return None
    if len(points) == 1 or points[-1][0] == points[0][0]:
        return points[0][1] * span_s
    area = sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(points, points[1:]))
    mean_w = area / (points[-1][0] - points[0][0])
    return mean_w * span_s
