"""The one statistical rule of the project: is CAND's metric different from BASE's?

``bench compare``, ``bench gate``, ``bench ab``, the sweep's warning about differences hidden by
noise and the report's comparisons all call :func:`compare_samples` (docs/GATING.md, "The rule").
Pure: no torch, and scipy only inside the statistics it needs (:mod:`bench.significance`).

Each side is a list of groups, one group per repeat (a process), holding that repeat's values
(every measured step's time, or the repeat's one value). How the sides were measured decides the
interval of the change CAND / BASE:

- **interleaved** (``bench ab``'s ABBA rounds, the cases of one sweep): group k of each side was
  measured in round k, next to each other in time. The change is the geometric mean of the rounds'
  ratios (of the groups' medians) with a bootstrap interval that resamples the rounds as pairs,
  then the values within each: a paired analysis whose units are the rounds (Kalibera & Jones,
  "Rigorous benchmarking in reasonable time", ISMM 2013). The machine's drift lands on both
  sides of a round and cancels.
- **separate runs** (a baseline, another day's run): the ratio of the pooled medians with a
  hierarchical bootstrap interval (repeats, then steps) and a Mann-Whitney test for its
  direction. The interval sees the spread between the processes of each run, not how far two runs
  minutes apart drift: that is the ``noise floor``, the drift that A/A runs of unchanged code
  show on this machine (``bench calibrate``), or without a calibration the largest drift in the
  project's recorded A/A data (:data:`RECORDED_DRIFT`). The interval is widened by it: the change
  lies in [low / (1 + drift), high * (1 + drift)].

Then, with the threshold t: ``regressed`` (``improved``) when the whole (widened) interval lies
beyond 1 + t in the bad (good) direction, the test is significant at :data:`ALPHA` and each side
has two repeats or more; ``unchanged`` when it lies within 1 +- t; else ``inconclusive``, with the
smallest change this comparison could have detected.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bench.significance import mann_whitney_p, paired_ratio_ci, ratio_of_medians_ci
from bench.statistics import median

ALPHA = 0.05  # one-sided significance level of the test
CONFIDENCE = 0.95
DEFAULT_THRESHOLD = 0.05
DEFAULT_RESAMPLES = 2000
RERUN = "rerun with more repeats"
Verdict = Literal["regressed", "improved", "unchanged", "inconclusive"]
Groups = Sequence[Sequence[float]]

# The largest run-to-run drift in the project's recorded A/A data, per metric: the largest ratio
# of one run's median to another's, less 1, rounded up to a percent, over every pair of runs of
# unchanged code in tests/fixtures/aa (24 sequential runs of mlp and gpt, tiny, eager, on a
# shared 2-core CPU VM under load) and tests/fixtures/compare (tests/test_drift.py recomputes
# them). A metric without recorded A/A data (energy, compile time, largest batch) takes the
# largest of them.
RECORDED_DRIFT = {
    "step_time": 1.42,  # gpt tiny: 31.1 ms in one run, 75.0 ms in another, at load 4 on 2 cores
    "throughput": 1.42,
    "peak_memory": 0.03,  # the GPT's RSS rise in suites/ci's quiet-core A/A runs (ci5)
    "final_loss": 0.18,  # the stop rule ends runs after different step counts
}
RECORDED_SOURCE = "largest drift in the project's recorded A/A runs (no calibration)"


@dataclass(frozen=True)
class NoiseFloor:
    """How far apart runs of unchanged code land: the drift a comparison cannot see past."""

    drift: float
    """A fraction: separate runs of the same code differ by a ratio up to 1 + drift."""
    source: str
    """Where the figure comes from: ``calibrated (...)``, the recorded A/A data, ``interleaved``."""


INTERLEAVED = NoiseFloor(0.0, "none: interleaved rounds, drift cancels in each round's ratio")
# Groups dealt from one measurement (tests, simulations): nothing drifts between them.
NO_DRIFT = NoiseFloor(0.0, "none: both sides from one run")


def recorded_floor(metric: str) -> NoiseFloor:
    """The floor of separate runs without a calibration: the recorded A/A drift of ``metric``."""
    drift = RECORDED_DRIFT.get(metric, max(RECORDED_DRIFT.values()))
    return NoiseFloor(drift, RECORDED_SOURCE)


@dataclass(frozen=True)
class SampleComparison:
    """The verdict on one metric, and every number it rests on."""

    verdict: Verdict
    note: str
    ratio: float
    """CAND / BASE: of pooled medians (separate runs), or the rounds' geometric mean."""
    ci_low: float
    ci_high: float
    """95% interval of the ratio, before any widening by the noise floor."""
    p_value: float
    """One-sided test in the direction of the change: Mann-Whitney (separate), the paired
    bootstrap's tail (interleaved)."""
    interleaved: bool
    noise_floor: NoiseFloor
    smallest_detectable: float
    """The smallest change (a fraction, in the bad direction) that this comparison's spread
    and noise floor would have found: beyond the threshold with the whole interval."""
    base_median: float
    cand_median: float
    num_base: int
    num_cand: int
    repeats_base: int
    repeats_cand: int


def compare_samples(
    base: Groups,
    cand: Groups,
    *,
    lower_is_better: bool,
    threshold: float,
    interleaved: bool,
    noise_floor: NoiseFloor | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> SampleComparison:
    """The verdict on CAND against BASE: groups (one per repeat) of positive values each.

    ``interleaved``: group k of each side was measured in round k (equal numbers of groups);
    the noise floor is then :data:`INTERLEAVED`. Separate runs need ``noise_floor``: a
    calibration's, :func:`recorded_floor`, or :data:`NO_DRIFT` for groups of one run.
    """
    base_values = [x for group in base for x in group]
    cand_values = [x for group in cand for x in group]
    assert base_values and cand_values and min(base_values + cand_values) > 0
    if interleaved:
        assert len(base) == len(cand), "interleaved sides pair their rounds"
        floor = INTERLEAVED
    else:
        assert noise_floor is not None, "separate runs need a noise floor"
        floor = noise_floor
    repeats = min(len(base), len(cand))
    if interleaved and repeats >= 2:
        paired = paired_ratio_ci(base, cand, resamples=resamples, confidence=CONFIDENCE, seed=seed)
        ratio, low, high = paired.ratio, paired.low, paired.high
        p_greater, p_less = paired.p_greater, paired.p_less
    else:
        ci = ratio_of_medians_ci(base, cand, resamples=resamples, confidence=CONFIDENCE, seed=seed)
        ratio, low, high = ci.ratio, ci.low, ci.high
        p_greater = mann_whitney_p(cand_values, base_values, "greater")
        p_less = mann_whitney_p(cand_values, base_values, "less")
    widen = 1 + floor.drift
    p_worse, p_better = (p_greater, p_less) if lower_is_better else (p_less, p_greater)
    verdict, note = judge(
        low / widen, high * widen, p_worse, p_better, threshold, lower_is_better, repeats
    )
    detectable = smallest_detectable(ratio, low, high, threshold, floor.drift, lower_is_better)
    if verdict == "inconclusive" and repeats >= 2:
        note += "; " + _hidden_by(detectable, floor, interleaved, lower_is_better)
    worse = ratio > 1 if lower_is_better else ratio < 1
    return SampleComparison(
        verdict=verdict,
        note=note,
        ratio=ratio,
        ci_low=low,
        ci_high=high,
        p_value=p_worse if worse else p_better,
        interleaved=interleaved,
        noise_floor=floor,
        smallest_detectable=detectable,
        base_median=median(base_values),
        cand_median=median(cand_values),
        num_base=len(base_values),
        num_cand=len(cand_values),
        repeats_base=len(base),
        repeats_cand=len(cand),
    )


def smallest_detectable(
    ratio: float, low: float, high: float, threshold: float, drift: float, lower_is_better: bool
) -> float:
    """The smallest change in the bad direction whose interval, with this comparison's relative
    spread (ratio / low, high / ratio) and widened by the drift, would lie wholly beyond the
    threshold: a fraction (0.18 is +18% step time, or -18% throughput)."""
    if lower_is_better:
        return (1 + threshold) * (1 + drift) * (ratio / low) - 1
    return 1 - (1 - threshold) / ((1 + drift) * (high / ratio))


def _hidden_by(detectable: float, floor: NoiseFloor, interleaved: bool, lower: bool) -> str:
    sign = "+" if lower else "-"
    seen = f"only a change beyond {sign}{detectable:.1%} could be resolved here"
    if interleaved:
        return f"{seen} (this run's spread between rounds); rerun with more rounds"
    if floor.drift == 0:
        return seen
    return (
        f"separate runs drift by up to ±{floor.drift:.1%} on this machine ({floor.source}), "
        f"{seen}; bench ab interleaves the sides and cancels the drift"
    )


def judge(
    low: float,
    high: float,
    p_worse: float,
    p_better: float,
    threshold: float,
    lower_is_better: bool,
    repeats: int,
) -> tuple[Verdict, str]:
    """The verdict on the interval [low, high] of CAND / BASE (already widened by the noise
    floor), the one-sided tests, and the fewest repeats (or rounds) on a side."""
    up, down = low > 1 + threshold, high < 1 - threshold  # the whole interval beyond a side
    bad, good = (up, down) if lower_is_better else (down, up)
    band = f"±{threshold * 100:g}%"
    if bad or good:
        p = p_worse if bad else p_better
        if p > ALPHA:
            return "inconclusive", (
                f"interval beyond {band} but the test is not significant (p={p:.2g}): {RERUN}"
            )
        if repeats < 2:
            # One process a side: its steps share that process's state, so the interval knows
            # nothing of how far apart two processes of the same code land.
            return "inconclusive", (
                f"beyond {band}, but from one repeat on a side the spread between processes is "
                f"unknown: {RERUN}"
            )
        return ("regressed" if bad else "improved"), ""
    if low >= 1 - threshold and high <= 1 + threshold:
        return "unchanged", ""
    return "inconclusive", f"95% interval straddles the {band} threshold: {RERUN}"
