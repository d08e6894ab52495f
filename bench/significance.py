"""Is CAND different from BASE? Two-sample statistics for the comparison rule
(:mod:`bench.comparison_rule`). Pure: no torch; scipy is imported inside the functions that use it,
so that importing this module (and starting ``bench``) stays fast.

- :func:`ratio_of_medians_ci`: the ratio median(CAND) / median(BASE) with a percentile bootstrap
  confidence interval. Samples come in groups (one group per repeat, i.e. per process) and the
  bootstrap is hierarchical: it resamples the repeats, then the samples within each repeat drawn
  (Davison & Hinkley, *Bootstrap Methods and their Application*, 1997, section 3.8). Steps of one
  process share its allocator state, thread placement and clock: they are not independent, and a
  bootstrap of the pooled steps alone would ignore the spread between processes and report an
  interval far too narrow. Hand-written: no library offers a hierarchical bootstrap.
- :func:`mann_whitney_p`: the one-sided Mann-Whitney U test (Mann & Whitney 1947) on the pooled
  samples, ``scipy.stats.mannwhitneyu`` with ``method="auto"``.
- :func:`paired_ratio_ci`: the ratio of paired rounds (the sides of a round measured next to each
  other in time): the geometric mean of the rounds' ratios, with a bootstrap that resamples the
  rounds as pairs, then the values within each (Kalibera & Jones, "Rigorous benchmarking in
  reasonable time", ISMM 2013: the rounds are the independent units).
- :func:`drift_bound`: how far apart two future runs of the same code may land, from the medians
  of a few A/A runs: a prediction bound with the t distribution.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Groups = Sequence[Sequence[float]]
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
    from scipy.stats import mannwhitneyu

    assert len(x) and len(y), "the rank test needs values on both sides"
    if len(set(map(float, x)) | set(map(float, y))) == 1:
        return 1.0  # scipy's normal approximation has no variance to divide by
    return float(mannwhitneyu(x, y, alternative=alternative, method="auto").pvalue)


@dataclass(frozen=True)
class PairedRatio:
    """The geometric mean of per-round ratios CAND / BASE, its bootstrap interval and tails."""

    ratio: float
    low: float
    high: float
    p_greater: float
    """One-sided bootstrap p-value that CAND / BASE > 1: the share of resampled means of the log
    ratios at or below 0 (counting the observed one, so never 0)."""
    p_less: float
    rounds: int


def paired_ratio_ci(
    base: Groups,
    cand: Groups,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedRatio:
    """Interval of CAND / BASE from paired rounds: ``base[k]`` and ``cand[k]`` (groups of
    positive values) were measured in the same round, next to each other in time, so a drift of
    the machine between rounds lands on both and cancels in their ratio.

    The change is the geometric mean of the rounds' ratios of medians; the interval a percentile
    bootstrap that resamples the rounds as pairs (the same rounds for both sides) and, within
    each drawn round, each side's values: the hierarchical bootstrap of
    :func:`ratio_of_medians_ci` with the round, not the side, as the unit (Davison & Hinkley
    1997, section 3.8; Kalibera & Jones 2013 resample the levels of a benchmark experiment the
    same way). Needs two rounds.
    """
    n = len(base)
    assert n >= 2 and len(cand) == n, "a paired interval needs two rounds or more"
    base_arrays, cand_arrays = _arrays(base), _arrays(cand)
    observed = float(
        np.mean([np.log(np.median(c) / np.median(b)) for b, c in zip(base_arrays, cand_arrays)])
    )
    rng = np.random.default_rng(seed)
    # (B, n): each round's log ratio of medians, each side's values resampled within the round.
    logs = np.log(_within_medians(cand_arrays, resamples, rng))
    logs -= np.log(_within_medians(base_arrays, resamples, rng))
    rows = rng.integers(n, size=(resamples, n))  # (B, n): the rounds drawn, pairs kept
    means = np.take_along_axis(logs, rows, axis=1).mean(axis=1)  # (B,)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return PairedRatio(
        ratio=math.exp(observed),
        low=math.exp(float(low)),
        high=math.exp(float(high)),
        p_greater=float((1 + np.sum(means <= 0)) / (resamples + 1)),
        p_less=float((1 + np.sum(means >= 0)) / (resamples + 1)),
        rounds=n,
    )


def _within_medians(groups: list[np.ndarray], resamples: int, rng: np.random.Generator):
    """(B, n): the median of each group's values resampled with replacement, B times."""
    columns = []
    for group in groups:
        drawn = rng.integers(len(group), size=(resamples, len(group)))  # (B, L)
        columns.append(np.median(group[drawn], axis=1))
    return np.stack(columns, axis=1)


def drift_bound(run_values: Sequence[float], *, coverage: float = 0.99) -> float:
    """How far apart two new runs of unchanged code may land, as a fraction: the ``coverage``
    prediction bound of the ratio of two runs' values, from ``run_values`` (one per A/A run).

    With s the standard deviation of the K runs' log values, the log ratio of two new runs has
    standard deviation sqrt(2) s, and its two-sided prediction bound is t(K - 1) * sqrt(2) * s
    (the Student t quantile, because s comes from only K runs). The bound is exp of that, less 1.
    Needs three runs: two give one degree of freedom, and a bound no one can use.
    """
    from scipy.stats import t as student_t

    logs = np.log(np.asarray(run_values, dtype=np.float64))
    k = len(logs)
    assert k >= 3, "a drift bound needs three runs or more"
    quantile = float(student_t.ppf(0.5 + coverage / 2, k - 1))
    return math.exp(quantile * math.sqrt(2) * float(logs.std(ddof=1))) - 1
