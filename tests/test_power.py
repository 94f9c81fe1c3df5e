"""Power of the verdicts' tests (MDE, seeds to resolve) and the A/A false-positive machinery.

Reference values were computed with scipy.stats (t.ppf, nct.cdf/sf); where scipy is installed, a grid is also
checked against it directly. Simulations use fixed seeds, so every assertion is deterministic.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from harness.analysis.stats import (
    aa_false_positive_rate,
    detection_rate,
    jackknife_interval,
    mean_interval,
    minimum_detectable_effect,
    sample_se_df,
    seeds_to_resolve,
    t_cdf,
    t_critical,
    t_quantile,
    t_sf,
    t_test_power,
    welch_interval,
    welch_null_rate,
    wilson_interval,
)


# -- distributions ----------------------------------------------------------------------------------------------------
def test_t_quantiles_match_scipy_reference_values():
    assert t_quantile(0.975, 4) == pytest.approx(2.7764451051977934, abs=1e-8)
    assert t_quantile(0.8, 4) == pytest.approx(0.9409645772351816, abs=1e-8)
    assert t_quantile(0.975, 7.3) == pytest.approx(2.345066736547703, abs=1e-8)  # Welch's non-integer df
    assert t_quantile(0.975, 1) == pytest.approx(12.706204736174694, abs=1e-7)  # Cauchy: heavy tails
    assert t_quantile(0.025, 4) == pytest.approx(-2.7764451051977934, abs=1e-8)
    assert t_quantile(0.975, math.inf) == pytest.approx(1.959963984540054, abs=1e-12)
    with pytest.raises(ValueError, match="0 < p < 1"):
        t_quantile(1.0, 4)
    with pytest.raises(ValueError, match="degrees of freedom must be > 0"):
        t_cdf(1.0, 0)


def test_noncentral_t_matches_scipy_reference_values():
    assert t_cdf(1.5, 3, 2.0) == pytest.approx(0.2940933468999173, abs=1e-9)
    assert t_sf(4.0, 7.3, -1.0) == pytest.approx(0.000152505180773144, rel=1e-6)  # a small tail keeps its digits
    assert t_cdf(0.3, 5) + t_sf(0.3, 5) == pytest.approx(1.0, abs=1e-12)
    # two-sided power at df = 9, noncentrality 3: nct.sf(c, 9, 3) + nct.cdf(-c, 9, 3), c = t.ppf(0.975, 9)
    assert t_test_power(3.0, 9) == pytest.approx(0.7611566204263244, abs=1e-8)
    assert t_test_power(0.0, 9) == pytest.approx(0.05, abs=1e-9)  # no effect: power is the level


def test_distributions_agree_with_scipy_on_a_grid():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2.5, 4, 11.7, 40, 1000):
        for x in (-3.0, -0.5, 1.0, 6.0):
            for nc in (0.0, -1.5, 2.0, 4.0):
                ref = stats.nct if nc else stats.t
                args = (df, nc) if nc else (df,)
                assert t_cdf(x, df, nc) == pytest.approx(ref.cdf(x, *args), abs=1e-8)
                assert t_sf(x, df, nc) == pytest.approx(ref.sf(x, *args), abs=1e-8)
        for p in (0.6, 0.8, 0.975, 0.995):
            assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-8)


# -- minimum detectable effect ----------------------------------------------------------------------------------------
def test_mde_one_sample_hand_computed():
    # n = 5 blocks, sd 0.1: (t_{0.975,4} + t_{0.8,4}) * 0.1 / sqrt(5)
    assert minimum_detectable_effect(0.1 / math.sqrt(5), 4) == pytest.approx(0.16624761500272076, abs=1e-9)
    assert math.isnan(minimum_detectable_effect(math.nan, math.nan))  # one block: no sd, no MDE


def test_mde_welch_uses_the_welch_standard_error_and_df():
    a, b = [1.0, 2.0, 3.0], [1.0, 1.5, 2.0, 2.5]
    se, df = sample_se_df(a, b)
    iv = welch_interval(a, b)
    assert se == pytest.approx(iv.std) and df == pytest.approx(iv.df)  # the same test the verdicts apply
    expected = (t_quantile(0.975, iv.df) + t_quantile(0.8, iv.df)) * iv.std
    assert minimum_detectable_effect(se, df) == pytest.approx(expected)
    se1, df1 = sample_se_df([0.1, 0.3, 0.2, 0.6])
    assert se1 == pytest.approx(np.std([0.1, 0.3, 0.2, 0.6], ddof=1) / 2) and df1 == 3
    assert all(math.isnan(v) for v in sample_se_df([1.0, 2.0], [3.0]))


def test_an_effect_of_one_mde_has_about_80_percent_power():
    for df in (20, 60):  # the shifted-t approximation is close once df is moderate
        nc = minimum_detectable_effect(1.0, df)  # se = 1: the MDE in standard errors
        assert t_test_power(nc, df) == pytest.approx(0.8, abs=0.01)


# -- seeds to resolve -------------------------------------------------------------------------------------------------
def test_seeds_to_resolve_textbook_case():
    # effect 0.5 sd (Cohen's d = 0.5), one-sample two-sided 5%, 80% power: 34 (G*Power and scipy nct agree)
    plan = seeds_to_resolve(0.5, (1.0,), (1.0,))
    assert (plan.seeds, plan.status) == (34.0, "ok") and 0.8 <= plan.power < 0.82
    assert seeds_to_resolve(-0.5, (1.0,), (1.0,)).seeds == 34  # two-sided: the sign does not matter
    # a seed adds 4 blocks: the fewest seeds giving >= 34 blocks
    assert seeds_to_resolve(0.5, (1.0,), (4.0,)).seeds == math.ceil(34 / 4)


def test_seeds_to_resolve_is_monotone_in_effect_size():
    effects = [0.03, 0.05, 0.1, 0.2, 0.4, 0.8]
    seeds = [seeds_to_resolve(e, (0.2,), (2.0,)).seeds for e in effects]
    assert all(math.isfinite(s) for s in seeds)
    assert all(x >= y for x, y in itertools.pairwise(seeds)) and seeds[0] > seeds[-1]
    welch = [seeds_to_resolve(e, (0.2, 0.1), (3.0, 2.0)).seeds for e in effects]
    assert all(x >= y for x, y in itertools.pairwise(welch)) and welch[0] > welch[-1]


def test_seeds_to_resolve_nan_cases_say_why():
    past = seeds_to_resolve(0.001, (1.0,), (1.0,))
    assert math.isnan(past.seeds) and past.status == "> 200"
    zero = seeds_to_resolve(0.0, (1.0,), (1.0,))
    assert math.isnan(zero.seeds) and zero.status == "observed effect is 0"
    no_sd = seeds_to_resolve(0.3, (math.nan,), (1.0,))
    assert math.isnan(no_sd.seeds) and no_sd.status.startswith("no sd")
    with pytest.raises(ValueError, match="blocks_per_seed must be one positive number per arm"):
        seeds_to_resolve(0.3, (1.0, 1.0), (1.0,))


def _simulated_one_sample_power(effect: float, sd: float, n: int, trials: int, rng) -> float:
    """Rejection rate of the verdicts' one-sample 95% t-interval (t_critical) on normal data."""
    x = rng.normal(effect, sd, size=(trials, n))
    t = x.mean(axis=1) / (x.std(axis=1, ddof=1) / math.sqrt(n))
    return float(np.mean(np.abs(t) > t_critical(n - 1)))


def test_seeds_to_resolve_matches_simulation():
    rng = np.random.default_rng(7)
    plan = seeds_to_resolve(0.3, (0.5,), (2.0,))  # 2 blocks per seed
    n = int(2 * plan.seeds)
    at = _simulated_one_sample_power(0.3, 0.5, n, 20000, rng)
    below = _simulated_one_sample_power(0.3, 0.5, n - 2, 20000, rng)  # one seed fewer
    assert at == pytest.approx(plan.power, abs=0.012)  # binomial sd at 20000 trials is 0.003
    assert at >= 0.79 and below < 0.8


def test_welch_seeds_to_resolve_matches_simulation():
    rng = np.random.default_rng(11)
    effect, sds, ks = 0.25, (0.3, 0.15), (2.0, 1.0)
    plan = seeds_to_resolve(effect, sds, ks)
    na, nb = int(ks[0] * plan.seeds), int(ks[1] * plan.seeds)
    trials = 20000
    a = rng.normal(effect, sds[0], size=(trials, na))
    b = rng.normal(0.0, sds[1], size=(trials, nb))
    va, vb = a.var(axis=1, ddof=1) / na, b.var(axis=1, ddof=1) / nb
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    crit = np.array([t_critical(d) for d in df])
    hit = np.abs(a.mean(axis=1) - b.mean(axis=1)) > crit * np.sqrt(va + vb)
    assert float(hit.mean()) == pytest.approx(plan.power, abs=0.02)  # Welch's df approximation costs a little


# -- A/A false-positive rate ------------------------------------------------------------------------------------------
def test_wilson_interval_closed_forms():
    z2 = 1.959963984540054**2
    assert wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))  # all misses: upper = z^2 / (n + z^2)
    assert wilson_interval(10, 10) == pytest.approx((10 / (10 + z2), 1.0))
    lo, hi = wilson_interval(10, 200)
    assert lo < 0.05 < hi and hi - 0.05 > 0.05 - lo  # skewed toward the middle
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_aa_rate_is_near_nominal_on_equal_means():
    rng = np.random.default_rng(3)
    one = aa_false_positive_rate(rng.normal(0.4, 0.05, 16), n_splits=1000, rng=1)
    assert one["splits"] == 1000 and one["arm_size"] == 8 and one["n_values"] == 16
    assert one["ci_lo"] <= 0.05 <= one["ci_hi"] and one["rate"] == one["hits"] / 1000
    # averaged over fresh sets of seeds the rate is the nominal 5%: 40 x 250 splits
    rates = [aa_false_positive_rate(rng.normal(0.0, 1.0, 16), n_splits=250, rng=i)["rate"] for i in range(40)]
    assert np.mean(rates) == pytest.approx(0.05, abs=0.015)


def test_jackknife_of_the_mean_is_the_t_interval():
    # for the sample mean the delete-one jackknife SE is exactly s / sqrt(n), so the interval is the t-interval
    v = np.random.default_rng(5).normal(1.0, 0.3, 7)
    iv = mean_interval(v)
    assert jackknife_interval(lambda units: float(np.mean(units)), list(v)) == pytest.approx((iv.lo, iv.hi))
    assert jackknife_interval(lambda units: float(np.mean(units)), list(v), bounds=(0.9, 1.1))[0] >= 0.9
    assert all(math.isnan(x) for x in jackknife_interval(np.mean, [1.0, 2.0]))


def test_jackknife_hand_worked_a_rate_with_one_false_positive():
    # 8 seeds, one false positive among the 280 splits. It uses 6 seeds: leaving out one of the 2 others keeps it (1
    # of 70 splits), leaving out one of its 6 removes it (0). mean of the leave-one-outs = 1/280 = the full rate;
    # SE = sqrt(7/8 * (2 (1/70 - 1/280)^2 + 6 (1/280)^2)) = 0.016366, half = t_7 (2.365) * SE = 0.03870
    loo = {i: (1 / 70 if i in (0, 1) else 0.0) for i in range(8)}

    def rate(units):
        return 1 / 280 if len(units) == 8 else loo[next(i for i in range(8) if i not in units)]

    lo, hi = jackknife_interval(rate, list(range(8)), bounds=(0.0, 1.0))
    assert lo == 0.0 and hi == pytest.approx(1 / 280 + 2.365 * 0.016366, abs=2e-5)  # 4.23%
    assert all(math.isnan(x) for x in jackknife_interval(lambda u: math.nan if len(u) < 8 else 0.1, list(range(8))))


def test_aa_interval_covers_the_long_run_rate():
    """The A/A rate over every split of 8 seeds: the jackknife over seeds covers the long-run rate close to its
    nominal level and stays narrow; a binomial (Wilson) interval over the 280 splits, which share seeds, covers it
    far less often."""
    from harness.analysis.calibration import _aa_row, _excludes_zero

    rng = np.random.default_rng(11)
    # long-run rate of 3-vs-3 Welch on normal data: below the nominal 5% (Welch is conservative at 2-4 df); the
    # vectorised constant the report prints agrees with welch_interval itself
    true = float(np.mean([_excludes_zero(welch_interval(*rng.normal(size=(2, 3)))) for _ in range(4000)]))
    assert 0.02 < true < 0.05 and true == pytest.approx(welch_null_rate(3), abs=0.01)
    assert welch_null_rate(2) < welch_null_rate(3) < welch_null_rate(8) < 0.05
    rows = [_aa_row("x", [pd.Series(rng.normal(size=8))], 3) for _ in range(40)]
    none = [r for r in rows if r["false positives"] == 0]
    assert all(math.isnan(r["ci_lo"]) for r in none) and len(none) <= 6  # no spread to measure: no interval
    rated = [r for r in rows if r["false positives"]]
    covered = np.mean([r["ci_lo"] <= true <= r["ci_hi"] for r in rated])
    wilson = np.mean([wilson_interval(r["false positives"], r["splits"])[0] <= true
                      <= wilson_interval(r["false positives"], r["splits"])[1] for r in rated])  # fmt: skip
    assert covered >= 0.85 and wilson <= covered - 0.3, (covered, wilson)
    assert np.mean([r["ci_hi"] - r["ci_lo"] for r in rated]) < 0.25  # informative, not [0, 1]


def test_detection_rate_on_a_shifted_mean():
    rng = np.random.default_rng(9)
    a, b = rng.normal(2.0, 1.0, 16), rng.normal(0.0, 1.0, 16)
    assert detection_rate(a, b, n_splits=300, rng=4)["rate"] > 0.85
    assert detection_rate(a, b, n_splits=300, sign=-1, rng=4)["rate"] == 0.0  # the wrong side never counts
    same = detection_rate(a, a + 0.0, n_splits=300, rng=4)
    assert same["rate"] < 0.1 and same["n_a"] == same["n_b"] == 16


def test_aa_inputs_are_checked():
    with pytest.raises(ValueError, match=">= 8 finite per-seed values of one configuration, got 7"):
        aa_false_positive_rate([0.1] * 7 + [math.nan])
    with pytest.raises(ValueError, match="arm_size must be between 2 and 5"):
        aa_false_positive_rate(np.arange(10.0), arm_size=6)
    with pytest.raises(ValueError, match="sign must be"):
        detection_rate(np.arange(8.0), np.arange(8.0), sign=0)
