"""Statistics of raw step-time samples. Pure Python, no torch: reports and compare use it too.

Quantiles use linear interpolation between order statistics (numpy's default, "type 7" of
Hyndman & Fan 1996), so ``quantile(xs, 0.5)`` is the usual median.
"""

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

# Below this many samples the exact binomial interval is computed; above it, the normal
# approximation is within a rank of the exact one and avoids big-integer sums.
_EXACT_CI_MAX_N = 1000
_Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) with linear interpolation ("type 7")."""
    if not values:
        raise ValueError("quantile of no values")
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return quantile(values, 0.5)


@functools.cache  # the exact sum is costly for large n, and the stop rule asks for it often
def median_ci95_ranks(n: int) -> tuple[int, int] | None:
    """1-based ranks (j, n + 1 - j) of the order statistics bounding a 95% CI of the median.

    Distribution-free: the number of samples below the true median is Binomial(n, 1/2), so
    [x_(j), x_(n+1-j)] covers it with probability 1 - 2 P(B <= j - 1). j is the largest rank with
    P(B <= j - 1) <= 0.025 (Conover, *Practical Nonparametric Statistics*, 3rd ed., section 3.2).
    Returns None when n < 6: no pair of order statistics reaches 95% coverage.
    """
    if n < 6:
        return None
    if n <= _EXACT_CI_MAX_N:
        total = 2**n
        cumulative = 0  # sum of C(n, i) for i < j, as an exact integer
        j = 0
        while True:
            cumulative += math.comb(n, j)
            if 40 * cumulative > total:  # P(B <= j) > 0.025: rank j + 1 is one too far
                break
            j += 1
        return j, n + 1 - j
    half_width = _Z95 * math.sqrt(n) / 2
    j = max(1, math.floor(n / 2 - half_width))
    return j, n + 1 - j


@dataclass(frozen=True)
class Summary:
    """Statistics of one sample of step times (seconds)."""

    median: float
    mean: float
    p10: float
    p90: float
    iqr: float
    ci95_low: float | None
    ci95_high: float | None
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)

    @property
    def ci_half_width(self) -> float | None:
        """Relative half-width of the median's 95% interval: max distance to a bound / median."""
        if self.ci95_low is None or self.ci95_high is None:
            return None
        return max(self.median - self.ci95_low, self.ci95_high - self.median) / self.median


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        raise ValueError("summary of no values")
    xs = sorted(values)
    ranks = median_ci95_ranks(len(xs))
    low, high = (xs[ranks[0] - 1], xs[ranks[1] - 1]) if ranks else (None, None)
    return Summary(
        median=quantile(xs, 0.5),
        mean=math.fsum(xs) / len(xs),
        p10=quantile(xs, 0.1),
        p90=quantile(xs, 0.9),
        iqr=quantile(xs, 0.75) - quantile(xs, 0.25),
        ci95_low=low,
        ci95_high=high,
        n=len(xs),
    )


def relative_spread(values: Sequence[float]) -> float:
    """(max - min) / median: how far apart repeats of one case landed."""
    return (max(values) - min(values)) / median(values)
