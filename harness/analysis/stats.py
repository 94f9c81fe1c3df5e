"""Seed statistics: means with 95% t-intervals, Welch intervals for differences, paired effects across blocks.

A sweep point is one training run; its seed is the replicate. Everything here is computed from the per-run values
in the tidy frame (``harness.analysis.load``), so an interval always reflects run-to-run variation, never the
evaluation-sample stderr stored in the record (which would claim certainty a single training run does not have).

Missing values stay missing: NaN values (failed runs) are dropped before counting ``n``, a cell with no finished run
has mean NaN and ``n = 0``, and an interval needs at least two values (``n = 1`` gives NaN bounds, never 0 width).

scipy is not a dependency, so the intervals' Student-t quantile comes from a table (two-sided 95%, df 1-30, 40, 60,
120, inf), interpolated linearly in 1/df for the non-integer degrees of freedom of Welch's test.

Power (how large an effect a verdict could have seen, how many seeds would settle it) and the A/A false-positive
rate are at the end of the module. Their Student-t and noncentral-t distributions are computed here with numpy by
quadrature over the chi distribution of the standard-error estimate (``t_cdf``, ``t_quantile``); they agree with
``scipy.stats.t`` / ``scipy.stats.nct`` to about 1e-8 (tests/test_power.py checks them).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

_T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    11: 2.201,
    12: 2.179,
    13: 2.160,
    14: 2.145,
    15: 2.131,
    16: 2.120,
    17: 2.110,
    18: 2.101,
    19: 2.093,
    20: 2.086,
    21: 2.080,
    22: 2.074,
    23: 2.069,
    24: 2.064,
    25: 2.060,
    26: 2.056,
    27: 2.052,
    28: 2.048,
    29: 2.045,
    30: 2.042,
    40: 2.021,
    60: 2.000,
    120: 1.980,
    math.inf: 1.960,
}


def t_critical(df: float) -> float:
    """Two-sided 95% Student-t critical value for ``df`` degrees of freedom (NaN for df < 1)."""
    if not df >= 1:  # also catches NaN
        return math.nan
    if df in _T975:
        return _T975[df]
    keys = sorted(_T975)
    hi = next(k for k in keys if k > df)
    lo = keys[keys.index(hi) - 1]
    w = (1 / lo - 1 / df) / (1 / lo - (0 if hi == math.inf else 1 / hi))
    return _T975[lo] + w * (_T975[hi] - _T975[lo])


@dataclass(frozen=True)
class Interval:
    """A mean (or a difference of means) with its 95% interval; ``n`` counts the finite values used."""

    mean: float
    lo: float
    hi: float
    n: int
    std: float = math.nan  # a mean's sample std; for a Welch difference, the difference's standard error
    df: float = math.nan

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2


def _finite(values) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return a[np.isfinite(a)]


def mean_interval(values) -> Interval:
    """Mean and 95% t-interval of the finite values (NaNs, i.e. failed runs, are not counted)."""
    a = _finite(values)
    n = len(a)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(a.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    std = float(a.std(ddof=1))
    half = t_critical(n - 1) * std / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, std, n - 1)


def welch_interval(a, b) -> Interval:
    """mean(a) - mean(b) with Welch's 95% interval (unequal variances, Welch-Satterthwaite df); ``n`` = min(n_a, n_b)."""
    a, b = _finite(a), _finite(b)
    if len(a) == 0 or len(b) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return Interval(diff, math.nan, math.nan, min(len(a), len(b)))
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:  # identical replicates on both sides: the difference is exact
        return Interval(diff, diff, diff, min(len(a), len(b)), 0.0, math.inf)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_critical(df) * se
    return Interval(diff, diff - half, diff + half, min(len(a), len(b)), se, df)


def seed_summary(df: pd.DataFrame, by: list[str], value: str = "value") -> pd.DataFrame:
    """One row per ``by`` group: mean, std, n (finite values), 95% t-interval, runs and failed runs in the group."""
    rows = []
    for key, g in df.groupby(by, dropna=False, sort=True):
        iv = mean_interval(g[value])
        rows.append(
            {
                **dict(zip(by, key if isinstance(key, tuple) else (key,))),
                "mean": iv.mean,
                "std": iv.std,
                "n": iv.n,
                "ci_lo": iv.lo,
                "ci_hi": iv.hi,
                "runs": len(g),
                "failed": int((g["status"] != "ok").sum()),
            }
        )
    return pd.DataFrame(rows, columns=[*by, "mean", "std", "n", "ci_lo", "ci_hi", "runs", "failed"])


def delta_vs_base(
    df: pd.DataFrame, axes: list[str], base: dict, within: list[str], value: str = "value"
) -> pd.DataFrame:
    """Each ``axes`` cell minus the declared base cell (same ``within`` keys, e.g. metric and shots), Welch interval.

    ``base`` maps columns to their base level (axes that only label a level may be left out). The base row itself
    is listed with delta 0 and no interval.
    """
    unknown = [a for a in base if a not in axes]
    if unknown:
        raise ValueError(f"base {base} sets {unknown}, which are not among the axes {axes}")
    rows = []
    for wkey, part in df.groupby(within, dropna=False, sort=True):
        wkey = dict(zip(within, wkey if isinstance(wkey, tuple) else (wkey,)))
        is_base = pd.Series(np.logical_and.reduce([part[a] == v for a, v in base.items()]), index=part.index)
        base_vals = part.loc[is_base, value]
        for key, g in part.groupby(axes, dropna=False, sort=True):
            if is_base[g.index].all():  # the base row against itself: 0 where it has a value, no interval
                n = len(_finite(g[value]))
                iv = Interval(0.0 if n else math.nan, math.nan, math.nan, n)
            else:
                iv = welch_interval(g[value], base_vals)
            rows.append(
                {
                    **dict(zip(axes, key if isinstance(key, tuple) else (key,))),
                    **wkey,
                    "delta": iv.mean,
                    "ci_lo": iv.lo,
                    "ci_hi": iv.hi,
                    "n": len(_finite(g[value])),
                    "n_base": len(_finite(base_vals)),
                }
            )
    return pd.DataFrame(rows, columns=[*axes, *within, "delta", "ci_lo", "ci_hi", "n", "n_base"])


def paired_differences(df: pd.DataFrame, axis: str, hi, lo, blocks: list[str], value: str = "value") -> pd.Series:
    """value(axis=hi) - value(axis=lo) for every block (all other axes + seed) that has both levels finite.

    Indexed by the ``blocks`` columns, so a caller can count the seeds the blocks came from.
    """
    if not blocks:
        raise ValueError("paired differences need block columns (at least the seed)")
    wide = df[df[axis].isin([hi, lo])].pivot_table(
        index=blocks, columns=axis, values=value, aggfunc="mean", dropna=False
    )
    if hi not in wide or lo not in wide:
        return pd.Series(dtype=float)
    diff = (wide[hi] - wide[lo]).astype(float)
    return diff[np.isfinite(diff)]


def spreads(df: pd.DataFrame, axis: str, blocks: list[str], value: str = "value") -> pd.Series:
    """Per block, max - min of the value across the levels of ``axis`` (blocks with at least two finite levels).

    Indexed by the ``blocks`` columns, like ``paired_differences``.
    """
    keys, out = [], []
    for key, g in df.groupby(blocks, dropna=False):
        vals = _finite(g.groupby(axis, dropna=False)[value].mean())
        if len(vals) >= 2:
            keys.append(key if isinstance(key, tuple) else (key,))
            out.append(vals.max() - vals.min())
    return pd.Series(out, index=pd.MultiIndex.from_tuples(keys, names=blocks) if keys else None, dtype=float)


# Expected range of k independent standard normal values (the d2 constants of quality control): the range of k scores
# that differ by noise alone is d2(k) x their sd on average, not 0.
RANGE_D2 = {2: 1.128, 3: 1.693, 4: 2.059, 5: 2.326, 6: 2.534, 7: 2.704, 8: 2.847, 9: 2.970, 10: 3.078}


def range_noise_floor(df: pd.DataFrame, axis: str, blocks: list[str], value: str = "value") -> float:
    """What :func:`spreads` averages when ``axis`` has no effect at all: d2(k) x the seed sd of one cell, with k the
    levels of ``axis`` and the sd pooled over the cells (every block column but the seed, plus ``axis``) that have two
    or more seeds. NaN without such cells (one seed): the floor is then unknown."""
    cells = [b for b in blocks if b != "seed"] + [axis]
    per_cell = df[np.isfinite(df[value])].groupby(cells, dropna=False)[value]
    var, n = per_cell.var(ddof=1), per_cell.count()
    ok = (n >= 2) & np.isfinite(var)
    k = df[np.isfinite(df[value])][axis].nunique()
    if not ok.any() or k not in RANGE_D2:
        return math.nan
    pooled = float(np.sqrt(np.sum(var[ok] * (n[ok] - 1)) / np.sum(n[ok] - 1)))
    return RANGE_D2[k] * pooled


# -- power ------------------------------------------------------------------------------------------------------------
ALPHA = 0.05  # two-sided, as the verdicts' 95% intervals
POWER = 0.8
SEED_CAP = 200  # seeds_to_resolve stops searching here and says "> 200"


@functools.lru_cache(maxsize=64)  # 32 KB a df; a power search reuses one df for a quantile and both tails
def _chi_nodes(df: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``s`` and weights ``w`` (summing to 1) with sum(w * f(s)) = E[f(S)], S = sqrt(X / df), X ~ chi2(df).

    With s = e^u the density of u is proportional to exp(df*u - df*e^(2u)/2): smooth, one mode at u = 0, no
    s^(df-1) kink at s = 0 for small df. A coarse pass finds where it is above e^-60 of its peak; Simpson's rule on
    2001 nodes there, normalised numerically (so the chi normalising constant is never needed).
    """
    if df == math.inf:
        return np.ones(1), np.ones(1)

    def log_density(u):
        return df * u - df * np.exp(2 * u) / 2

    u = np.linspace(-(50 / df + min(1.0, 20 / math.sqrt(df))), min(3.0, 20 / math.sqrt(df)), 4001)
    g = log_density(u)
    keep = np.flatnonzero(g > g.max() - 60)
    u = np.linspace(u[max(keep[0] - 1, 0)], u[min(keep[-1] + 1, len(u) - 1)], 2001)
    g = log_density(u)
    simpson = np.ones(len(u))
    simpson[1:-1:2], simpson[2:-1:2] = 4, 2
    w = np.exp(g - g.max()) * simpson
    return np.exp(u), w / w.sum()


_ERFC = np.frompyfunc(math.erfc, 1, 1)


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * _ERFC(-np.asarray(x, dtype=float) / math.sqrt(2)).astype(float)


def _check_df(df: float) -> None:
    if not df > 0:  # also catches NaN
        raise ValueError(f"degrees of freedom must be > 0 (or math.inf), got {df}")


def t_cdf(x: float, df: float, nc: float = 0.0) -> float:
    """P(T <= x) for the (noncentral) Student t: T = (Z + nc) / S, Z standard normal, S = sqrt(chi2(df) / df).

    Computed as E_S[Phi(x S - nc)] by quadrature over S (``_chi_nodes``); ``nc = 0`` is the central t.
    """
    _check_df(df)
    s, w = _chi_nodes(float(df))
    return float(np.dot(w, _norm_cdf(x * s - nc)))


def t_sf(x: float, df: float, nc: float = 0.0) -> float:
    """P(T > x) = E_S[Phi(nc - x S)], computed directly so a small tail keeps its digits (no 1 - cdf)."""
    _check_df(df)
    s, w = _chi_nodes(float(df))
    return float(np.dot(w, _norm_cdf(nc - x * s)))


def _t_pdf(x: float, df: float) -> float:
    if df == math.inf:
        return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))


@functools.lru_cache(maxsize=4096)
def t_quantile(p: float, df: float) -> float:
    """The x with P(T <= x) = p for the central Student t with ``df`` degrees of freedom (Newton on ``t_sf``)."""
    _check_df(df)
    if not 0 < p < 1:
        raise ValueError(f"t_quantile needs 0 < p < 1, got {p}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    z = NormalDist().inv_cdf(p)
    if p == 0.5 or df == math.inf:
        return z
    x = z + (z**3 + z) / (4 * df)  # Cornish-Fisher start
    lo, hi = 0.0, math.inf  # the root stays bracketed; a Newton step leaving the bracket is replaced by bisection
    for _ in range(200):
        f = t_sf(x, df) - (1 - p)  # decreasing in x
        lo, hi = (x, hi) if f > 0 else (lo, x)
        step = x + f / _t_pdf(x, df)
        nxt = step if lo < step < hi else ((lo + hi) / 2 if hi < math.inf else 2 * x)
        if abs(nxt - x) <= 1e-12 * (1 + abs(x)):
            return nxt
        x = nxt
    return x


def t_test_power(nc: float, df: float, alpha: float = ALPHA) -> float:
    """Two-sided power of a t-test: P(|T| > t_{1-alpha/2, df}) with T noncentral t(df, nc).

    ``nc`` is the true effect over its standard error (one-sample: effect * sqrt(n) / sd, df = n - 1). For Welch's
    test T is only approximately noncentral t with the Welch-Satterthwaite df; that approximation is used as is.
    """
    c = t_quantile(1 - alpha / 2, df)
    return t_sf(c, df, nc) + t_cdf(-c, df, nc)


def minimum_detectable_effect(se: float, df: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """MDE = (t_{1-alpha/2, df} + t_{power, df}) * se: the smallest true effect a two-sided test detects with
    probability ``power``.

    One-sample / paired: se = sd / sqrt(n), df = n - 1. Welch: se = sqrt(sd_a^2/n_a + sd_b^2/n_b) and the
    Welch-Satterthwaite df. The formula is the usual approximation of the noncentral t by a shifted central t that
    ignores the opposite tail; at 2-3 blocks it overstates the power (the exact MDE is up to ~10% larger at df = 2).
    NaN when se or df is not finite (fewer than two values on a side).
    """
    if not (math.isfinite(se) and df > 0):
        return math.nan
    return (t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * se


def _se_df(sds: tuple[float, ...], ns: tuple[float, ...]) -> tuple[float, float]:
    """Standard error and df of a one-sample mean (one arm) or of Welch's difference (two arms)."""
    v = [sd * sd / n for sd, n in zip(sds, ns)]
    se = math.sqrt(sum(v))
    if len(v) == 1:
        return se, ns[0] - 1
    den = sum(vi * vi / (n - 1) for vi, n in zip(v, ns))
    return se, (sum(v) ** 2 / den if den > 0 else math.inf)


def sample_se_df(a, b=None) -> tuple[float, float]:
    """(se, df) of the test the verdicts apply: one-sample t over ``a``, or Welch for mean(a) - mean(b).

    NaN for both when a side has fewer than two finite values (its sd cannot be estimated).
    """
    arms = [_finite(a)] + ([] if b is None else [_finite(b)])
    if any(len(x) < 2 for x in arms):
        return math.nan, math.nan
    return _se_df(tuple(float(x.std(ddof=1)) for x in arms), tuple(float(len(x)) for x in arms))


@dataclass(frozen=True)
class SeedPlan:
    """How many seeds per cell would detect an effect at the target power. ``seeds`` is NaN unless ``status`` is
    ``"ok"``; the status otherwise says why (``"> 200"``, ``"observed effect is 0"``, ``"no sd: ..."``)."""

    seeds: float
    status: str
    power: float = math.nan  # the power reached at ``seeds``


def seeds_to_resolve(
    effect: float,
    sds: tuple[float, ...],
    blocks_per_seed: tuple[float, ...],
    alpha: float = ALPHA,
    power: float = POWER,
    cap: int = SEED_CAP,
) -> SeedPlan:
    """Fewest seeds per cell s at which the test has ``power`` to detect ``effect`` (two-sided, level ``alpha``).

    One arm (``sds = (sd,)``): a one-sample t-test over n = k * s blocks, k = ``blocks_per_seed`` (a block is one
    combination of the other factors x one seed, so a seed adds k blocks). Two arms: Welch's test with n_i = k_i * s.
    Power is the noncentral t (``t_test_power``) with nc = effect / se(s); for Welch, with the Welch-Satterthwaite
    df (an approximation). Plugging in the observed effect and sd answers "how many seeds would this effect need if
    it were the true one"; both are estimates, so read the answer as an order of magnitude. Power grows with s, so
    the smallest s is found by bisection between the fewest seeds that give every arm two blocks and ``cap``.
    """
    if not (math.isfinite(effect) and all(math.isfinite(sd) for sd in sds)):
        return SeedPlan(math.nan, "no sd: needs >= 2 blocks per side" if math.isfinite(effect) else "no effect")
    if effect == 0:
        return SeedPlan(math.nan, "observed effect is 0")
    if any(not k > 0 for k in blocks_per_seed) or len(sds) != len(blocks_per_seed):
        raise ValueError(f"blocks_per_seed must be one positive number per arm, got {blocks_per_seed} for sds {sds}")
    lo = max(1, math.ceil(2 / min(blocks_per_seed) - 1e-9))  # every arm needs two blocks for an sd

    def power_at(s: int) -> float:
        se, df = _se_df(tuple(sds), tuple(k * s for k in blocks_per_seed))
        return 1.0 if se == 0 else t_test_power(effect / se, df, alpha)

    if lo > cap or power_at(cap) < power:
        return SeedPlan(math.nan, f"> {cap}")
    hi = cap  # power_at(hi) >= power throughout
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power_at(mid) >= power else (mid + 1, hi)
    return SeedPlan(float(lo), "ok", power_at(lo))


# -- A/A false-positive rate ------------------------------------------------------------------------------------------
def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k / n (NaN bounds for n = 0)."""
    if n <= 0:
        return math.nan, math.nan
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def jackknife_interval(estimate: Callable[[list], float], units: list,
                       bounds: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, float]:
    """Delete-one jackknife 95% interval of ``estimate(units)``: the spread over fresh draws of the units, not over
    resamples of these.

    ``units``: the independent draws the statistic is computed from (seeds), at least 3. Each leave-one-out estimate
    ``estimate(units without unit i)`` gives a pseudo-replicate; SE = sqrt((n-1)/n * sum((theta_i - mean)^2)) and the
    interval is estimate +- t_(n-1) * SE, clipped to ``bounds``; NaN where a leave-one-out is undefined. For a
    statistic averaged over every subset of the units (an A/A rate over all seed splits is a U-statistic) this SE is
    consistent where a binomial interval over the subsets, which share units, is far too narrow. Symmetric, so near
    a bound it covers less than 95% (about 90% for an A/A rate from 8 seeds, ``tests/test_power.py``).
    """
    n = len(units)
    if n < 3:
        return math.nan, math.nan
    full = estimate(list(units))
    loo = np.array([estimate([u for j, u in enumerate(units) if j != i]) for i in range(n)], dtype=float)
    se = math.sqrt((n - 1) / n * float(((loo - loo.mean()) ** 2).sum()))
    if not (math.isfinite(full) and math.isfinite(se)):  # a leave-one-out the statistic is undefined on
        return math.nan, math.nan
    half = t_critical(n - 1) * se
    return max(bounds[0], full - half), min(bounds[1], full + half)


@functools.cache
def welch_null_rate(m: int, draws: int = 20000) -> float:
    """Long-run share of ``m``-vs-``m`` :func:`welch_interval` intervals that exclude 0 when both arms are iid normal.

    What an A/A rate should be compared with: at 2-4 Welch df the interval is conservative (3.3% for m = 3 with this
    module's interpolated t table, about 3.4% with exact quantiles; not 5%). Simulated with a fixed seed, so a
    constant for each m.
    """
    if m < 2:
        raise ValueError(f"welch_null_rate needs at least 2 seeds per arm, got {m}")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(draws, m)), rng.normal(size=(draws, m))
    va, vb = a.var(axis=1, ddof=1) / m, b.var(axis=1, ddof=1) / m
    df = (va + vb) ** 2 / ((va**2 + vb**2) / (m - 1))
    t = np.abs(a.mean(axis=1) - b.mean(axis=1)) / np.sqrt(va + vb)
    return float(np.mean(t > np.array([t_critical(d) for d in df])))


def _rate(hits: int, splits: int, **extra) -> dict:
    lo, hi = wilson_interval(hits, splits)
    return {"rate": hits / splits, "ci_lo": lo, "ci_hi": hi, "hits": hits, "splits": splits, **extra}


def _arm_size(arm_size: int | None, default: int, most: int, what: str) -> int:
    m = default if arm_size is None else int(arm_size)
    if not 2 <= m <= most:
        raise ValueError(f"arm_size must be between 2 and {most} ({what}), got {m}")
    return m


def aa_false_positive_rate(
    values, n_splits: int = 200, arm_size: int | None = None, rng: np.random.Generator | int | None = 0
) -> dict:
    """A/A test: how often the verdicts' Welch 95% interval excludes 0 between two halves of ONE configuration.

    ``values``: per-seed scores of a single configuration, shape (n_seeds,), at least 8 finite. Each of ``n_splits``
    draws shuffles the seeds and compares the first ``arm_size`` (default n // 2) with the next ``arm_size``
    (disjoint arms) with ``welch_interval``; a hit is an interval that excludes 0. Nominally 5% of splits are hits;
    more means the interval is too narrow for this metric's seed noise.

    Returns ``rate`` (hits / splits), its Wilson 95% interval ``ci_lo``/``ci_hi``, ``hits``, ``splits``,
    ``arm_size`` and ``n_values``. The Wilson interval treats splits as independent draws: it is the Monte Carlo
    uncertainty of the rate for these seeds, not the spread over fresh sets of seeds.
    """
    v = _finite(values)
    if len(v) < 8:
        raise ValueError(f"aa_false_positive_rate needs >= 8 finite per-seed values of one configuration, got {len(v)}")
    if n_splits < 1:
        raise ValueError(f"n_splits must be >= 1, got {n_splits}")
    m = _arm_size(arm_size, len(v) // 2, len(v) // 2, f"two disjoint arms from {len(v)} seeds")
    gen = np.random.default_rng(rng)
    hits = 0
    for _ in range(n_splits):
        idx = gen.permutation(len(v))
        iv = welch_interval(v[idx[:m]], v[idx[m : 2 * m]])
        hits += bool(iv.lo > 0 or iv.hi < 0)
    return _rate(hits, n_splits, arm_size=m, n_values=len(v))


def detection_rate(
    a,
    b,
    n_splits: int = 200,
    arm_size: int | None = None,
    sign: int = 1,
    rng: np.random.Generator | int | None = 0,
) -> dict:
    """Positive control: how often ``arm_size`` seeds per arm detect a difference known to exist.

    ``a``, ``b``: per-seed scores of two configurations, shapes (n_a,) and (n_b,). Each draw takes ``arm_size``
    seeds from each without replacement (default: min(n_a, n_b) // 2, so draws differ) and applies
    ``welch_interval(a, b)``; a hit is an interval wholly on the side ``sign`` says (+1: mean(a) > mean(b)).
    Returns the same fields as ``aa_false_positive_rate`` plus ``n_a`` and ``n_b``.
    """
    a, b = _finite(a), _finite(b)
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 (mean(a) > mean(b)) or -1, got {sign}")
    if n_splits < 1:
        raise ValueError(f"n_splits must be >= 1, got {n_splits}")
    small = min(len(a), len(b))
    m = _arm_size(arm_size, small // 2, small, f"seeds per arm drawn from {len(a)} and {len(b)}")
    gen = np.random.default_rng(rng)
    hits = 0
    for _ in range(n_splits):
        iv = welch_interval(gen.choice(a, m, replace=False), gen.choice(b, m, replace=False))
        hits += bool(iv.lo > 0) if sign == 1 else bool(iv.hi < 0)
    return _rate(hits, n_splits, arm_size=m, n_a=len(a), n_b=len(b))


CHANCE_SE = 2.0  # one-sided, about 98 %: "above the majority baseline" means value - baseline > 2 stderr


def at_chance(entry: dict) -> bool:
    """True when a VQA entry with a ``majority_baseline`` does not beat it by ``CHANCE_SE`` standard errors.
    NaN scores (failed points) are not "at chance": they have no score at all, and their status says why."""
    vals = [entry.get(k) for k in ("value", "majority_baseline", "stderr")]
    if any(v is None or math.isnan(float(v)) for v in vals):
        return False
    value, base, se = vals
    return value - base <= CHANCE_SE * se


def seeds_at_chance(values, stderrs, baseline: float) -> bool | None:
    """Whether a question type's scores over seeds stay at the majority answer (not learned), or None with no
    finite score (a failed point has no score at all, and its status says why).

    At chance unless both hold: the seed mean beats ``baseline`` by ``CHANCE_SE`` times the mean evaluation stderr
    (every seed scores the same test questions, so averaging seeds does not shrink that error), and, with two or
    more seeds, the 95% interval of the mean lies above ``baseline``."""
    iv = mean_interval(values)
    if iv.n == 0:
        return None
    finite = [float(s) for v, s in zip(values, stderrs, strict=True) if math.isfinite(float(v))]
    se = mean_interval(finite).mean
    above = not at_chance({"value": iv.mean, "majority_baseline": baseline, "stderr": se})
    return not above or (iv.n > 1 and iv.lo <= baseline)
