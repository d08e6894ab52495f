"""A compact timeline of sampled values: at most ``max_points`` points, whatever the window length.

Samples are grouped into consecutive buckets of equal count, and each bucket becomes one point: the
mean of its time stamps and of each column's values (None values skipped; a bucket of Nones stays
None). The stored record thus stays small for a ten-minute window sampled every 100 ms, while the
summary statistics are computed from every sample.
"""

MAX_POINTS = 120


def downsample(
    times_s: list[float], columns: dict[str, list[float | None]], max_points: int = MAX_POINTS
) -> dict[str, list[float | None]]:
    """``{"t_s": [...], column: [...]}``, at most ``max_points`` entries each; ``t_s`` from 0."""
    n = len(times_s)
    if n == 0:
        return {"t_s": [], **{name: [] for name in columns}}
    t0 = times_s[0]
    buckets = min(n, max_points)
    # Bucket b holds samples [b * n // buckets, (b + 1) * n // buckets): sizes differ by at most 1.
    bounds = [b * n // buckets for b in range(buckets + 1)]
    out: dict[str, list[float | None]] = {"t_s": []}
    out.update({name: [] for name in columns})
    for lo, hi in zip(bounds, bounds[1:]):
        out["t_s"].append(_round(sum(times_s[lo:hi]) / (hi - lo) - t0))
        for name, values in columns.items():
            present = [v for v in values[lo:hi] if v is not None]
            out[name].append(_round(sum(present) / len(present)) if present else None)
    return out


def _round(value: float) -> float:
    # Four significant digits: a timeline is for looking at, and JSON of full floats is 3x longer.
    return float(f"{value:.4g}")
