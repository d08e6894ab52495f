"""Statistics on samples whose figures are worked out by hand."""

import math

import pytest

from bench.statistics import median_ci95_ranks, quantile, relative_spread, summarize


def test_summary_of_one_to_ten_by_hand():
    # Type-7 quantiles of 1..10: position (n - 1) q, interpolated.
    # p10: 0.9 -> 1.9; q25: 2.25 -> 3.25; q75: 6.75 -> 7.75; p90: 8.1 -> 9.1.
    s = summarize([7, 3, 10, 1, 5, 2, 9, 4, 8, 6])
    assert s.median == 5.5
    assert s.mean == 5.5
    assert s.p10 == pytest.approx(1.9)
    assert s.p90 == pytest.approx(9.1)
    assert s.iqr == pytest.approx(7.75 - 3.25)
    # n = 10: P(B <= 1) = 11/1024 <= 0.025 < P(B <= 2) = 56/1024, so ranks (2, 9).
    assert (s.ci95_low, s.ci95_high) == (2, 9)
    assert s.n == 10
    # The interval's widest side over the median: max(5.5 - 2, 9 - 5.5) / 5.5.
    assert s.ci_half_width == pytest.approx(3.5 / 5.5)


@pytest.mark.parametrize(
    ("n", "ranks"),
    [
        (5, None),  # P(B <= 0) = 1/32 > 0.025: no interval reaches 95%
        (6, (1, 6)),  # P(B <= 0) = 1/64 = 0.0156; P(B <= 1) = 7/64 = 0.109
        (10, (2, 9)),
        # n = 20: P(B <= 5) = 21700/2^20 = 0.0207; P(B <= 6) = 60460/2^20 = 0.0577.
        (20, (6, 15)),
    ],
)
def test_median_ci_ranks_exact_binomial(n, ranks):
    assert median_ci95_ranks(n) == ranks


def test_exact_ranks_have_the_coverage_they_claim():
    for n in (6, 17, 50, 333, 1000):
        j, k = median_ci95_ranks(n)
        assert k == n + 1 - j
        below = sum(math.comb(n, i) for i in range(j)) / 2**n  # P(B <= j - 1)
        one_more = below + math.comb(n, j) / 2**n  # P(B <= j)
        assert below <= 0.025 < one_more


def test_normal_approximation_beyond_exact_range_is_within_one_rank():
    # n = 2000: sqrt(2000) = 44.72, 1.96 * 44.72 / 2 = 43.83, floor(1000 - 43.83) = 956.
    assert median_ci95_ranks(2000) == (956, 1045)
    # At the switch-over, the exact rank for 1000 and the approximate one for 1001 agree closely.
    exact_j, _ = median_ci95_ranks(1000)
    approx_j, _ = median_ci95_ranks(1001)
    assert abs(exact_j - approx_j) <= 1


def test_small_sample_has_no_interval():
    s = summarize([0.004, 0.005, 0.006])
    assert s.median == 0.005
    assert s.ci95_low is None and s.ci_half_width is None


def test_quantile_of_one_value_and_errors():
    assert quantile([3.0], 0.9) == 3.0
    with pytest.raises(ValueError):
        summarize([])


def test_relative_spread():
    # (max - min) / median = (6 - 4) / 5
    assert relative_spread([4.0, 5.0, 6.0]) == pytest.approx(0.4)
