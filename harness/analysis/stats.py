"""Seed statistics: means with 95% t-intervals, Welch intervals for differences, paired effects across blocks.

A sweep point is one training run; its seed is the replicate. Everything here is computed from the per-run values
in the tidy frame (``harness.analysis.load``), so an interval always reflects run-to-run variation, never the
evaluation-sample stderr stored in the record (which would claim certainty a single training run does not have).

Missing values stay missing: NaN values (failed runs) are dropped before counting ``n``, a cell with no finished run
has mean NaN and ``n = 0``, and an interval needs at least two values (``n = 1`` gives NaN bounds, never 0 width).

scipy is not a dependency, so the Student-t quantile comes from a table (two-sided 95%, df 1-30, 40, 60, 120, inf),
interpolated linearly in 1/df for the non-integer degrees of freedom of Welch's test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def paired_differences(df: pd.DataFrame, axis: str, hi, lo, blocks: list[str], value: str = "value") -> np.ndarray:
    """value(axis=hi) - value(axis=lo) for every block (all other axes + seed) that has both levels finite."""
    if not blocks:
        raise ValueError("paired differences need block columns (at least the seed)")
    wide = df[df[axis].isin([hi, lo])].pivot_table(
        index=blocks, columns=axis, values=value, aggfunc="mean", dropna=False
    )
    if hi not in wide or lo not in wide:
        return np.array([])
    return _finite((wide[hi] - wide[lo]).to_numpy())


def spreads(df: pd.DataFrame, axis: str, blocks: list[str], value: str = "value") -> np.ndarray:
    """Per block, max - min of the value across the levels of ``axis`` (blocks with at least two finite levels)."""
    out = []
    for _, g in df.groupby(blocks, dropna=False):
        vals = _finite(g.groupby(axis, dropna=False)[value].mean())
        if len(vals) >= 2:
            out.append(vals.max() - vals.min())
    return np.asarray(out, dtype=float)
