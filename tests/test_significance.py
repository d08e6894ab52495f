"""The two-sample statistics behind bench compare, on numbers checked by hand."""

import math

import numpy as np
import pytest

from bench.significance import drift_bound, mann_whitney_p, paired_ratio_ci, ratio_of_medians_ci


def test_exact_tail_of_two_against_two_by_hand():
    # The 6 orderings of x1 < x2 and y1 < y2 interleaved give U = 0, 1, 2, 2, 3, 4.
    assert mann_whitney_p([1, 2], [3, 4], "greater") == 1
    assert mann_whitney_p([1, 4], [2, 3], "greater") == pytest.approx(4 / 6)  # U = 2
    assert mann_whitney_p([2, 4], [1, 3], "greater") == pytest.approx(2 / 6)  # U = 3
    assert mann_whitney_p([3, 4], [1, 2], "greater") == pytest.approx(1 / 6)  # U = 4


def test_three_above_three_is_the_one_arrangement_in_twenty():
    # All of x above all of y: 1 of C(6, 3) = 20 equally likely arrangements.
    assert mann_whitney_p([4, 5, 6], [1, 2, 3], "greater") == pytest.approx(0.05)
    assert mann_whitney_p([4, 5, 6], [1, 2, 3], "less") == 1.0


def test_all_tied_tells_nothing():
    assert mann_whitney_p([1.0, 1.0, 1.0], [1.0, 1.0], "greater") == 1.0


def test_normal_approximation_with_ties_by_hand():
    # x = [2, 2, 3], y = [1, 2, 2]: pooled ranks 1 (the 1), 3.5 x4 (the 2s), 6 (the 3).
    # U_x = (3.5 + 3.5 + 6) - 3*4/2 = 7; mean 4.5; tie term (4^3 - 4) / (6*5) = 2;
    # variance 3*3/12 * (7 - 2) = 3.75; z = (7 - 4.5 - 0.5) / sqrt(3.75).
    z = 2 / math.sqrt(3.75)
    expected = 0.5 * math.erfc(z / math.sqrt(2))
    assert mann_whitney_p([2, 2, 3], [1, 2, 2], "greater") == pytest.approx(expected)


def test_ratio_is_the_ratio_of_pooled_medians_and_the_seed_fixes_the_interval():
    ci = ratio_of_medians_ci([[1.0, 2.0, 3.0]], [[2.0, 4.0, 6.0]], seed=3)
    assert ci.ratio == 2.0
    assert ci.low <= 2.0 <= ci.high
    assert ratio_of_medians_ci([[1.0, 2.0, 3.0]], [[2.0, 4.0, 6.0]], seed=3) == ci


def test_resampling_repeats_sees_the_spread_between_processes():
    # Three processes whose medians differ by a few percent, steps tight within each: the
    # interval must cover the spread of the processes, not only the spread of steps.
    rng = np.random.default_rng(1)
    offsets = (1.00, 1.04, 0.97)
    base = [rng.normal(offset, 0.005, 300) for offset in offsets]
    cand = [rng.normal(offset, 0.005, 300) for offset in offsets[::-1]]
    hierarchical = ratio_of_medians_ci(base, cand)
    pooled = ratio_of_medians_ci([np.concatenate(base)], [np.concatenate(cand)])
    assert hierarchical.high - hierarchical.low > 5 * (pooled.high - pooled.low)
    assert hierarchical.low < 0.98 and hierarchical.high > 1.02


def test_unequal_repeats_take_the_general_path():
    base = [[1.0, 1.1, 0.9, 1.05], [1.0, 0.95]]
    cand = [[2.0, 2.2, 1.8], [2.1, 1.9, 2.0, 2.05]]
    ci = ratio_of_medians_ci(base, cand, resamples=500)
    assert 1.6 < ci.low <= ci.ratio <= ci.high < 2.5


def test_paired_ratio_of_two_rounds_by_hand():
    # One value a round, ratios 1.1 and 1.3: a resample of the two rounds (as pairs) draws both
    # (mean of the logs: half the time), or one of them twice (a quarter each), so the 2.5% and
    # 97.5% quantiles are the two ratios themselves, and no resample has a mean at or below 0.
    paired = paired_ratio_ci([[1.0], [2.0]], [[1.1], [2.6]])
    assert paired.ratio == pytest.approx(math.sqrt(1.1 * 1.3))
    assert (paired.low, paired.high) == pytest.approx((1.1, 1.3))
    assert paired.p_greater == pytest.approx(1 / 2001) and paired.p_less == 1.0


def test_paired_ratio_agrees_with_scipys_bootstrap_of_the_rounds():
    from scipy.stats import bootstrap  # another implementation of the same percentile bootstrap

    rng = np.random.default_rng(4)
    base = rng.lognormal(0, 0.3, 8)
    cand = base * rng.lognormal(0.1, 0.08, 8)
    ours = paired_ratio_ci([[b] for b in base], [[c] for c in cand], resamples=20000)
    theirs = bootstrap(
        (np.log(cand / base),), np.mean, method="percentile", n_resamples=20000, random_state=1
    ).confidence_interval
    assert math.log(ours.low) == pytest.approx(theirs.low, abs=0.01)
    assert math.log(ours.high) == pytest.approx(theirs.high, abs=0.01)


def test_pairing_cancels_a_drift_shared_by_the_sides_of_a_round():
    # Five rounds whose machine state differs by up to 40%, both sides alike; CAND 20% slower.
    rng = np.random.default_rng(2)
    drift = (1.0, 1.4, 0.9, 1.2, 1.05)
    base = [rng.normal(d, 0.01, 200) for d in drift]
    cand = [rng.normal(1.2 * d, 0.012, 200) for d in drift]
    paired = paired_ratio_ci(base, cand)
    unpaired = ratio_of_medians_ci(base, cand)
    assert 1.17 < paired.low < 1.2 < paired.high < 1.23
    assert paired.high - paired.low < (unpaired.high - unpaired.low) / 5


def test_drift_bound_of_three_runs_by_hand():
    # Runs at exp(-0.1), 1 and exp(0.1): log sd 0.1; t(2) at 99.5% is 9.92484; the bound of the
    # ratio of two new runs is exp(9.92484 * sqrt(2) * 0.1) - 1.
    bound = drift_bound([math.exp(-0.1), 1.0, math.exp(0.1)])
    assert bound == pytest.approx(math.exp(9.92484 * math.sqrt(2) * 0.1) - 1, rel=1e-5)
    # More runs with the same spread: a smaller t quantile, a tighter bound.
    many = drift_bound([math.exp(x) for x in (-0.1, 0.0, 0.1) * 4])
    assert many < bound / 3
