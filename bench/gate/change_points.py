"""Change points in a series of per-run medians: E-Divisive means with a permutation test.

The method of Matteson & James, "A nonparametric approach for multiple change point analysis of
multivariate data" (JASA 109(505), 2014), as MongoDB runs it on its nightly performance history
(Daly et al., "The use of change point detection to identify software performance regressions
in a continuous integration system", ICPE 2020) and Apache Otava after it:

- the divergence between the points before and after a split tau is the energy statistic with
  exponent alpha = 1 (the mean absolute distance between the sides, less half of each side's
  own), scaled by tau (n - tau) / n, Q(tau) (their eq. 3-5);
- the best split of a segment is the tau with the largest Q; it is a change point when a
  permutation test finds that split significant: the segment's points shuffled R times, the
  best Q of each shuffle, p = (1 + #{Q_shuffled >= Q}) / (1 + R) (their section 3.3);
- binary segmentation: each accepted change point splits its segment, and the best split over
  all segments is tested next, until one is not significant.

Points are the logarithms of the medians, so that a change is a ratio (a 10% slowdown is the
same step at 2 ms and at 200 ms). Pure numpy; the permutations come from a seeded generator, so
that a history gives the same change points every time it is read.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.01  # significance level of the permutation test (one nightly alert in 100 by chance)
PERMUTATIONS = 499  # the smallest p it can give: 1 / 500
MIN_SIZE = 3  # the fewest points on each side of a split; also bench history's --last default


@dataclass(frozen=True)
class ChangePoint:
    index: int
    """The first point of the new segment (the run where the series changed)."""
    q: float
    """E-Divisive's divergence statistic of the split, within its segment."""
    p_value: float
    """The permutation test's p of the split, within its segment."""
    start: int
    end: int
    """The segment [start, end) the split was found in."""


def divergence(values: Sequence[float], min_size: int = MIN_SIZE) -> np.ndarray:
    """Q(tau) of every split tau of ``values`` (NaN where a side has fewer than ``min_size``):
    index tau splits ``values[:tau]`` from ``values[tau:]``."""
    x = np.asarray(values, dtype=float)
    return _q_of_splits(np.abs(x[:, None] - x[None, :]), min_size)


def _q_of_splits(distances: np.ndarray, min_size: int) -> np.ndarray:
    n = len(distances)
    q = np.full(n + 1, np.nan)
    taus = np.arange(min_size, n - min_size + 1)
    if not len(taus):
        return q
    # Sums of blocks of the distance matrix from its two-dimensional prefix sums.
    s = np.zeros((n + 1, n + 1))
    s[1:, 1:] = distances.cumsum(0).cumsum(1)
    left = s[taus, taus]  # sum over i, k < tau of |x_i - x_k| (each pair twice)
    right = s[n, n] - s[taus, n] - s[n, taus] + s[taus, taus]
    between = s[taus, n] - s[taus, taus]
    m = n - taus
    energy = (
        2 * between / (taus * m)
        - left / (taus * (taus - 1))  # mean over pairs: (pairs counted twice) / (2 C(tau, 2))
        - right / (m * (m - 1))
    )
    q[taus] = taus * m / n * energy
    return q


def _best_split(distances: np.ndarray, min_size: int) -> tuple[int, float] | None:
    q = _q_of_splits(distances, min_size)
    if np.all(np.isnan(q)):
        return None
    tau = int(np.nanargmax(q))
    return tau, float(q[tau])


def permutation_p(
    values: Sequence[float], q: float, rng: np.random.Generator, permutations: int, min_size: int
) -> float:
    """How often the best split of shuffled ``values`` is at least ``q``."""
    x = np.asarray(values, dtype=float)
    hits = 0
    for _ in range(permutations):
        shuffled = rng.permutation(x)
        best = _best_split(np.abs(shuffled[:, None] - shuffled[None, :]), min_size)
        hits += best is not None and best[1] >= q
    return (1 + hits) / (1 + permutations)


def change_points(
    medians: Sequence[float],
    *,
    alpha: float = ALPHA,
    permutations: int = PERMUTATIONS,
    min_size: int = MIN_SIZE,
    seed: int = 0,
) -> list[ChangePoint]:
    """E-Divisive's change points of a series of positive medians, in order of index."""
    x = np.log(np.asarray(medians, dtype=float))
    rng = np.random.default_rng(seed)
    bounds = [0, len(x)]
    found: list[ChangePoint] = []
    while True:
        candidates = []
        for start, end in zip(bounds, bounds[1:]):
            segment = x[start:end]
            best = _best_split(np.abs(segment[:, None] - segment[None, :]), min_size)
            if best is not None:
                candidates.append((best[1], start + best[0], start, end))
        if not candidates:
            break
        q, index, start, end = max(candidates)
        p = permutation_p(x[start:end], q, rng, permutations, min_size)
        if p > alpha:
            break
        found.append(ChangePoint(index, q, p, start, end))
        bounds = sorted([*bounds, index])
    return sorted(found, key=lambda c: c.index)
