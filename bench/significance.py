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
  other in time), a Student t interval and test on the rounds' log ratios: the top level of
  Kalibera & Jones's random-effects model ("Rigorous benchmarking in reasonable time", ISMM 2013),
  where the top-level units (here the rounds) are the independent observations.
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
    """The geometric mean of per-round ratios CAND / BASE, its t interval and one-sided tests."""

    ratio: float
    low: float
    high: float
    p_greater: float
    """One-sided p-value of the paired t test that CAND / BASE > 1 (the log ratios' mean > 0)."""
    p_less: float
    half_width: float
    """Half-width of the interval of the mean log ratio: the interval is ratio * exp(+-this)."""
    rounds: int


def paired_ratio_ci(
    base: Sequence[float], cand: Sequence[float], *, confidence: float = 0.95
) -> PairedRatio:
    """Interval of CAND / BASE from paired rounds: ``base[k]`` and ``cand[k]`` were measured in
    the same round, next to each other in time, so a drift of the machine between rounds lands on
    both and cancels in their ratio. The rounds' log ratios are the independent observations
    (Kalibera & Jones 2013, the top level of their random-effects model): their mean with a
    Student t interval on n - 1 degrees of freedom, taken back to a ratio. Needs two rounds."""
    from scipy.stats import t as student_t

    logs = np.log(np.asarray(cand, dtype=np.float64)) - np.log(np.asarray(base, dtype=np.float64))
    n = len(logs)
    assert n >= 2 and len(base) == len(cand), "a paired interval needs two rounds or more"
    mean, sd = float(logs.mean()), float(logs.std(ddof=1))
    half = float(student_t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    if sd == 0:  # every round the same ratio: the interval is a point, the test certain
        p_greater, p_less = (0.0, 1.0) if mean > 0 else (1.0, 0.0) if mean < 0 else (1.0, 1.0)
    else:
        statistic = mean / (sd / math.sqrt(n))
        p_greater = float(student_t.sf(statistic, n - 1))
        p_less = float(student_t.cdf(statistic, n - 1))
    return PairedRatio(
        ratio=math.exp(mean),
        low=math.exp(mean - half),
        high=math.exp(mean + half),
        p_greater=p_greater,
        p_less=p_less,
        half_width=half,
        rounds=n,
    )


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
