"""The two-sample statistics behind bench compare, on numbers checked by hand."""

import math

import numpy as np
import pytest

from bench.gate.significance import _exact_upper_tail, mann_whitney_p, ratio_of_medians_ci


def test_exact_tail_of_two_against_two_by_hand():
    # The 6 orderings of x1 < x2 and y1 < y2 interleaved give U = 0, 1, 2, 2, 3, 4.
    assert _exact_upper_tail(0, 2, 2) == 1
    assert _exact_upper_tail(2, 2, 2) == pytest.approx(4 / 6)
    assert _exact_upper_tail(3, 2, 2) == pytest.approx(2 / 6)
    assert _exact_upper_tail(4, 2, 2) == pytest.approx(1 / 6)


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


def test_same_as_scipy_on_small_large_and_tied_samples():
    from scipy.stats import mannwhitneyu  # installed with scikit-learn; bench does not need it

    rng = np.random.default_rng(0)
    for trial in range(120):
        m, n = int(rng.integers(1, 12)), int(rng.integers(1, 40))
        x, y = rng.normal(0.3, 1, m), rng.normal(0, 1, n)
        if trial % 3 == 0:
            x, y = np.round(x), np.round(y)  # ties
        for alternative in ("greater", "less"):
            ours = mann_whitney_p(x, y, alternative)
            theirs = mannwhitneyu(x, y, alternative=alternative, method="auto").pvalue
            assert ours == pytest.approx(theirs, abs=1e-12), (m, n, alternative)


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
