"""evaluation.statistics: t-intervals, Holm, power, on hand-worked values and simulated sweeps."""

import math

import numpy as np
import pytest

from boxloss.evaluation.statistics import (
    holm_adjust, holm_levels, min_detectable_difference, paired_t_power, seeds_needed, t_interval,
)


def test_t_interval_hand_worked():
    # d = (1, 2, 3): mean 2, sd 1, se 1/sqrt(3); t_{0.975, 2} = 4.302652729...
    ci = t_interval([1.0, 2.0, 3.0])
    assert ci.n == 3 and ci.mean == 2.0 and ci.sd == pytest.approx(1.0)
    half = 4.302652729749464 / math.sqrt(3)
    assert ci.lower == pytest.approx(2 - half) and ci.upper == pytest.approx(2 + half)
    # t = 2 / (1/sqrt 3) = 3.4641; two-sided p with 2 df = 1 - t / sqrt(t^2 + 2) (closed form for df 2)
    t = 2 * math.sqrt(3)
    assert ci.p == pytest.approx(1 - t / math.sqrt(t * t + 2))


def test_t_interval_edge_cases():
    one = t_interval([0.4])
    assert one.n == 1 and one.mean == 0.4 and one.sd is None and one.lower is None and one.p is None
    same = t_interval([0.0, 0.0, 0.0])
    assert same.lower == same.upper == 0.0 and same.p == 1.0  # identical runs: difference 0, no evidence
    shifted = t_interval([0.01, 0.01])
    assert shifted.p == 0.0 and shifted.lower == shifted.upper == 0.01
    with pytest.raises(ValueError, match="no values"):
        t_interval([])
    with pytest.raises(ValueError, match="finite"):
        t_interval([0.1, float("nan")])


def test_holm_hand_worked():
    # p = (0.01, 0.04, 0.03, 0.005), m = 4. Sorted: 0.005 x4 = 0.02; 0.01 x3 = 0.03; 0.03 x2 = 0.06;
    # 0.04 x1 = 0.04 -> monotone: 0.06. Back in the given order: 0.03, 0.06, 0.06, 0.02.
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # levels alpha / (m - j + 1): 0.005 -> 0.05/4, 0.01 -> 0.05/3, 0.03 -> 0.05/2, 0.04 -> 0.05
    assert holm_levels([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.05 / 3, 0.05, 0.05 / 2, 0.05 / 4])
    # None (no test possible) does not count in m
    assert holm_adjust([0.02, None, 0.03]) == pytest.approx([0.04, None, 0.04])
    assert holm_adjust([0.6, 0.9]) == [1.0, 1.0]  # capped at 1


def test_power_and_sample_size_match_published_tables():
    # Paired t-test, two-sided alpha 0.05, power 0.8 (Cohen 1988 / G*Power): d = 1 -> 10 pairs,
    # d = 0.5 -> 34 pairs, d = 0.2 -> 199 pairs.
    assert seeds_needed(1.0, 1.0) == 10
    assert seeds_needed(0.5, 1.0) == 34
    assert seeds_needed(-0.2, 1.0) == 199  # the sign does not matter
    assert paired_t_power(1.0, 1.0, 10) == pytest.approx(0.803, abs=1e-3)
    assert paired_t_power(0.0, 1.0, 10) == pytest.approx(0.05)  # power at no difference is the level
    assert seeds_needed(0.0, 1.0) is None and seeds_needed(1.0, None) is None
    assert seeds_needed(1e-6, 1.0) is None  # beyond max_n


def test_min_detectable_difference_inverts_power():
    for n in (2, 3, 5, 20):
        mde = min_detectable_difference(0.01, n, alpha=0.0125)
        assert paired_t_power(mde, 0.01, n, alpha=0.0125) == pytest.approx(0.8, abs=1e-6)
    assert min_detectable_difference(0.01, 10) < min_detectable_difference(0.01, 3)
    assert min_detectable_difference(None, 3) is None and min_detectable_difference(0.01, 1) is None


def test_power_is_finite_where_scipy_nct_cdf_is_not():
    # scipy's nct.cdf(-c, 2, 10.8) is NaN; the power must not be
    p = paired_t_power(10.8 / math.sqrt(3), 1.0, 3, alpha=0.025)
    assert 0.5 < p <= 1.0


def test_interval_covers_the_true_difference_95_percent_of_the_time():
    # 4000 simulated sweeps of 3 seeds: per-seed differences ~ N(0.004, 0.01^2)
    rng = np.random.default_rng(0)
    true = 0.004
    hits = sum(ci.lower <= true <= ci.upper for ci in (t_interval(rng.normal(true, 0.01, 3)) for _ in range(4000)))
    assert 0.94 <= hits / 4000 <= 0.96  # binomial sd at 4000 draws: 0.0034


def test_false_positive_rate_of_holm_stays_at_alpha():
    # 4 comparisons with no true difference, 3 seeds: the family-wise rate of any "significant" is <= 5 %
    rng = np.random.default_rng(1)
    trials, any_hit = 3000, 0
    for _ in range(trials):
        ps = [t_interval(rng.normal(0, 0.01, 3)).p for _ in range(4)]
        any_hit += any(p < 0.05 for p in holm_adjust(ps))
    assert any_hit / trials <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / trials)
