"""Is CAND different from BASE? Two-sample statistics for ``bench compare``. Pure: no torch.

- :func:`ratio_of_medians_ci`: the ratio median(CAND) / median(BASE) with a percentile bootstrap
  confidence interval. Samples come in groups (one group per repeat, i.e. per process) and the
  bootstrap is hierarchical: it resamples the repeats, then the samples within each repeat drawn
  (Davison & Hinkley, *Bootstrap Methods and their Application*, 1997, section 3.8). Steps of one
  process share its allocator state, thread placement and clock: they are not independent, and a
  bootstrap of the pooled steps alone would ignore the spread between processes and report an
  interval far too narrow.
- :func:`mann_whitney_p`: the one-sided Mann-Whitney U test (Mann & Whitney 1947) on the pooled
  samples: exact null distribution for small samples without ties, else the normal approximation
  with tie and continuity corrections. Same method and results as ``scipy.stats.mannwhitneyu``
  with ``method="auto"`` (a test checks it), without importing scipy.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Groups = Sequence[Sequence[float]]
# scipy's rule for method="auto": the exact distribution when a sample has at most this many
# values and there are no ties.
_EXACT_MAX = 8
# Resampled values held in memory at once by the vectorised bootstrap (8 bytes each, plus indices).
_CHUNK_VALUES = 2_000_000


@dataclass(frozen=True)
class RatioCI:
    """median(CAND) / median(BASE) of the pooled samples, and its bootstrap interval."""

    ratio: float
    low: float
    high: float


def ratio_of_medians_ci(
    base: Groups,
    cand: Groups,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> RatioCI:
    """Percentile bootstrap interval of median(CAND) / median(BASE), resampling hierarchically.

    ``base`` and ``cand`` are lists of groups (one per repeat) of positive values. The same
    ``seed`` gives the same interval: a CI job that reruns a comparison gets the same verdict.
    """
    base_arrays, cand_arrays = _arrays(base), _arrays(cand)
    rng = np.random.default_rng(seed)
    ratios = _resampled_medians(cand_arrays, resamples, rng) / _resampled_medians(
        base_arrays, resamples, rng
    )
    tail = (1 - confidence) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    ratio = float(np.median(np.concatenate(cand_arrays)) / np.median(np.concatenate(base_arrays)))
    return RatioCI(ratio, float(low), float(high))


def _arrays(groups: Groups) -> list[np.ndarray]:
    arrays = [np.asarray(group, dtype=np.float64) for group in groups if len(group)]
    assert arrays, "a side with no samples"
    return arrays


def _resampled_medians(groups: list[np.ndarray], resamples: int, rng: np.random.Generator):
    """Medians of ``resamples`` hierarchical resamples: repeats with replacement, then the
    samples of each repeat drawn, with replacement. Vectorised in chunks."""
    sizes = np.array([len(group) for group in groups])
    num_groups, width = len(groups), int(sizes.max())
    table = np.full((num_groups, width), np.inf)  # (R, L), short repeats padded
    for i, group in enumerate(groups):
        table[i, : len(group)] = group
    chunk = max(1, _CHUNK_VALUES // (num_groups * width))
    medians = []
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        rows = rng.integers(num_groups, size=(count, num_groups))  # (B, R): the repeats drawn
        if (sizes == width).all():  # equal repeats (a fixed step count, one value per repeat)
            columns = rng.integers(width, size=(count, num_groups, width))  # (B, R, L)
            drawn = table[rows[..., None], columns].reshape(count, -1)
            medians.append(np.median(drawn, axis=1))
            continue
        drawn_sizes = sizes[rows]  # (B, R)
        # Uniform draws within each drawn repeat's own size; slots past it are +inf padding,
        # which sorts last, so the median is taken over the first `total` values of each row.
        columns = (rng.random((count, num_groups, width)) * drawn_sizes[..., None]).astype(int)
        drawn = table[rows[..., None], columns]  # (B, R, L)
        drawn[np.arange(width) >= drawn_sizes[..., None]] = np.inf
        ordered = np.sort(drawn.reshape(count, -1), axis=1)
        total = drawn_sizes.sum(axis=1)
        index = np.arange(count)
        medians.append((ordered[index, (total - 1) // 2] + ordered[index, total // 2]) / 2)
    return np.concatenate(medians)


def mann_whitney_p(
    x: Sequence[float], y: Sequence[float], alternative: Literal["greater", "less"]
) -> float:
    """One-sided p-value of the Mann-Whitney U test that ``x`` tends to be greater (or less)
    than ``y``. 1.0 when every value is tied (nothing can be told apart)."""
    m, n = len(x), len(y)
    assert m and n, "the rank test needs values on both sides"
    pooled = np.concatenate([np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)])
    _, inverse, counts = np.unique(pooled, return_inverse=True, return_counts=True)
    # Average rank of each distinct value: ranks below it, plus the middle of its tie block.
    average_rank = np.cumsum(counts) - (counts - 1) / 2
    u_x = float(average_rank[inverse[:m]].sum()) - m * (m + 1) / 2
    u = u_x if alternative == "greater" else m * n - u_x  # large u: evidence for the alternative
    ties = bool((counts > 1).any())
    if min(m, n) <= _EXACT_MAX and not ties:
        return _exact_upper_tail(round(u), m, n)
    total = m + n
    tie_term = float((counts**3 - counts).sum()) / (total * (total - 1))
    variance = m * n / 12 * ((total + 1) - tie_term)
    if variance <= 0:
        return 1.0
    z = (u - m * n / 2 - 0.5) / math.sqrt(variance)  # 0.5: continuity correction
    return 0.5 * math.erfc(z / math.sqrt(2))


def _exact_upper_tail(u: int, m: int, n: int) -> float:
    """P(U >= u) under the null hypothesis, for samples of sizes m and n without ties.

    The number of arrangements with U = k is the coefficient of q^k in the Gaussian binomial
    coefficient [m + n choose m]_q = prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i), computed exactly
    in integers.
    """
    small, large = min(m, n), max(m, n)
    counts = [1] + [0] * (small * large)
    for i in range(1, small + 1):
        for k in range(len(counts) - 1, large + i - 1, -1):  # multiply by (1 - q^(large+i))
            counts[k] -= counts[k - large - i]
        for k in range(i, len(counts)):  # divide by (1 - q^i): a running sum with stride i
            counts[k] += counts[k - i]
    return sum(counts[max(u, 0) :]) / math.comb(m + n, m)
