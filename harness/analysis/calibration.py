"""The calibration study: does the verdict machinery detect effects that exist, and only those?

``python sweep.py experiment=calibration`` trains one configuration (the base) at 8 seeds, two positive controls and
two runtime switches at 3 seeds each (``sweeps/experiment/calibration.yaml``); ``python -m harness.tables
calibration`` reads them here. Each run is put in one *arm* by what differs from the base: its resolution, its visual
tokens, or its ``switch:<name>`` tag. Three checks, all with the Welch 95% interval the MM1 verdicts use
(``stats.welch_interval``), on 0-shot scores:

- **Positive controls** (the world's controls, ``harness/world/scene.py``): the base must beat ``resolution=32`` on
  the pattern question and ``visual_tokens=4`` on the dot question. A control passes when the interval lies above 0.
  Its *detection rate* is the share of 3-vs-3 seed draws that would also have found it.
- **Negative controls**: runtime switches that compute the same thing (packing, the frozen-feature cache) must not
  move the headline scores. A control passes when the interval contains 0.
- **A/A**: every split of the base's seeds into two disjoint arms of 3 is a comparison with no true effect (280
  splits from 8 seeds). The false-positive rate is the share whose interval excludes 0; nominal 5%. The splits share
  seeds, so the rate's Wilson interval is the uncertainty for these seeds, not over fresh ones.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.analysis.stats import detection_rate, mean_interval, welch_interval, wilson_interval
from harness.analysis.studies import context_id

NAME = "calibration"
COMMAND = "python sweep.py experiment=calibration"
BASE = {"resolution": 64, "visual_tokens": 16}
# (task, metric, subset) -> label; 0-shot throughout.
HEADLINE = {("caption", "cider", "all"): "CIDEr", ("vqa", "vqa_accuracy", "all"): "VQA acc"}
VARIED = ("resolution", "visual_tokens", "hr_resolution")  # what the arms change (hr_resolution follows resolution)
AA_ARM = 3  # seeds per arm in the A/A splits and the detection draws


@dataclass(frozen=True)
class Control:
    name: str
    arm: str  # compared with the base
    metric: tuple[str, str, str]
    positive: bool  # True: base > arm must be found; False: no difference may be found


CONTROLS = (
    Control("pattern needs resolution (64 vs 32 px)", "resolution=32", ("vqa", "vqa_accuracy", "pattern"), True),
    Control("dot column needs visual tokens (16 vs 4)", "visual_tokens=4", ("vqa", "vqa_accuracy", "dot"), True),
    *(
        Control(f"{switch} leaves {label} unchanged", f"switch:{switch}", key, False)
        for switch in ("packing", "no_feature_cache")
        for key, label in HEADLINE.items()
    ),
)


def arm_of(run: pd.Series) -> str | None:
    """The arm a run belongs to, or None when it differs from the base in more than one way (not in this study)."""
    if run["switch"]:
        return f"switch:{run['switch']}" if _is_base(run) else None
    diffs = [f"{k}={run[k]}" for k, v in BASE.items() if run[k] != v]
    return "base" if not diffs else diffs[0] if len(diffs) == 1 else None


def _is_base(run: pd.Series) -> bool:
    return all(run[k] == v for k, v in BASE.items())


def calibration_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished 0-shot metric rows of the study's runs, with an ``arm`` column.

    Membership: launched as ``experiment=calibration``, or the same config as such a run outside resolution, visual
    tokens, seed and runtime (the Quickstart's avg_pool point is the base's seed 0)."""
    if runs.empty:
        return runs.assign(arm=pd.Series(dtype=object))
    labelled = runs[runs["experiment"] == NAME]
    if labelled.empty:
        return runs.iloc[:0].assign(arm=pd.Series(dtype=object))
    context = {_context(c) for c in labelled["config_json"].unique()}
    members = runs[runs["config_json"].map(_context).isin(context)].copy()
    members["arm"] = members.apply(arm_of, axis=1)
    ok = members["arm"].notna() & (members["status"] == "ok") & (members["shots"] == 0)
    return members[ok]


def _context(config_json: str) -> str:
    """The studies' context (``studies.context_id``: the config without the seed, evaluation and what never changes
    results) with what this study varies also left out."""
    return context_id(json.loads(config_json), VARIED)


def per_seed(members: pd.DataFrame, arm: str, key: tuple[str, str, str]) -> pd.Series:
    """One value per seed of ``arm`` for metric ``key`` (task, metric, subset), indexed by seed."""
    task, metric, subset = key
    m = members[(members["arm"] == arm) & (members["task"] == task) & (members["metric"] == metric)
                & (members["subset"] == subset)]  # fmt: skip
    return m.groupby("seed")["value"].mean()


def metric_keys(members: pd.DataFrame) -> list[tuple[str, str, str]]:
    """Headline metrics first, then VQA accuracy per question type."""
    types = sorted(set(members.loc[(members["task"] == "vqa") & (members["subset"] != "all"), "subset"]))
    keys = [k for k in HEADLINE if not per_seed(members, "base", k).empty]
    return keys + [("vqa", "vqa_accuracy", t) for t in types]


def label(key: tuple[str, str, str]) -> str:
    return HEADLINE.get(key, key[2])


def arms_table(members: pd.DataFrame) -> pd.DataFrame:
    """Mean [95% interval] per arm (rows) and metric (columns), with the seeds each arm has."""
    keys = metric_keys(members)
    order = ["base", *sorted(a for a in members["arm"].unique() if a != "base")]
    rows = []
    for arm in order:
        row = {"arm": arm, "seeds": int(members.loc[members["arm"] == arm, "seed"].nunique())}
        for key in keys:
            iv = mean_interval(per_seed(members, arm, key).to_numpy())
            row[label(key)] = _fmt_mean(iv)
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt_mean(iv) -> str:
    if iv.n == 0:
        return "-"
    return f"{iv.mean:.3f}" if iv.n < 2 else f"{iv.mean:.3f} [{iv.lo:.3f}, {iv.hi:.3f}]"


def controls_table(members: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for c in CONTROLS:
        base, arm = per_seed(members, "base", c.metric), per_seed(members, c.arm, c.metric)
        iv = welch_interval(base.to_numpy(), arm.to_numpy())
        measured = len(base) >= 2 and len(arm) >= 2 and math.isfinite(iv.lo)
        if not measured:
            verdict, passed = f"not measured ({len(base)} base, {len(arm)} arm seeds; need 2 each)", False
        elif c.positive:
            verdict = "detected" if iv.lo > 0 else "missed" if iv.hi >= 0 else "reversed"
            passed = verdict == "detected"
        else:
            verdict = "no difference" if iv.lo <= 0 <= iv.hi else "false difference"
            passed = verdict == "no difference"
        det = (detection_rate(base, arm, arm_size=min(AA_ARM, len(base), len(arm)), rng=0)
               if c.positive and measured and min(len(base), len(arm)) >= 2 else None)  # fmt: skip
        rows.append({
            "control": c.name, "kind": "positive" if c.positive else "negative", "metric": label(c.metric),
            "arm": c.arm, "seeds": f"{len(base)} vs {len(arm)}", "base - arm": iv.mean, "ci_lo": iv.lo,
            "ci_hi": iv.hi, "verdict": verdict, "passes": passed,
            "detection_rate": det["rate"] if det else math.nan,
        })  # fmt: skip
    return pd.DataFrame(rows)


def all_splits(n: int, m: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every unordered pair of disjoint arms of ``m`` items out of ``n`` (280 for n=8, m=3)."""
    out = []
    for a in itertools.combinations(range(n), m):
        rest = [i for i in range(n) if i not in a]
        out += [(a, b) for b in itertools.combinations(rest, m) if b[0] > a[0]]
    return out


def aa_table(members: pd.DataFrame, m: int = AA_ARM) -> pd.DataFrame:
    """A/A false-positive rate per metric over every split of the base's seeds, and pooled over the metrics."""
    rows, hits_all, splits_all = [], 0, 0
    for key in metric_keys(members):
        v = per_seed(members, "base", key).dropna().to_numpy()
        if len(v) < 2 * m:
            continue
        splits = all_splits(len(v), m)
        hits = sum(_excludes_zero(welch_interval(v[list(a)], v[list(b)])) for a, b in splits)
        lo, hi = wilson_interval(hits, len(splits))
        rows.append({"metric": label(key), "seeds": len(v), "splits": len(splits), "false positives": hits,
                     "rate": hits / len(splits), "ci_lo": lo, "ci_hi": hi})  # fmt: skip
        hits_all, splits_all = hits_all + hits, splits_all + len(splits)
    if splits_all:
        lo, hi = wilson_interval(hits_all, splits_all)
        rows.append({"metric": "all metrics", "seeds": rows[0]["seeds"], "splits": splits_all,
                     "false positives": hits_all, "rate": hits_all / splits_all, "ci_lo": lo, "ci_hi": hi})  # fmt: skip
    return pd.DataFrame(rows)


def _excludes_zero(iv) -> bool:
    return bool(np.isfinite(iv.lo) and (iv.lo > 0 or iv.hi < 0))


@dataclass
class CalibrationReport:
    members: pd.DataFrame
    arms: pd.DataFrame
    controls: pd.DataFrame
    aa: pd.DataFrame

    @property
    def empty(self) -> bool:
        return self.members.empty

    def markdown(self) -> str:
        seeds = int(self.members.loc[self.members["arm"] == "base", "seed"].nunique())
        aa = self.aa.iloc[-1] if not self.aa.empty else None
        aa_line = (f"A/A: {seeds} base seeds, fewer than {2 * AA_ARM}: no false-positive rate yet (the study runs 8)."
                   if aa is None else
                   f"A/A false-positive rate: **{aa['rate']:.1%}** [{aa['ci_lo']:.1%}, {aa['ci_hi']:.1%}] over "
                   f"{int(aa['splits'])} splits of {seeds} base seeds into arms of {AA_ARM} (nominal 5%).")  # fmt: skip
        passed = int(self.controls["passes"].sum())
        ctl = self.controls.assign(**{c: self.controls[c].map(lambda x: f"{x:+.3f}" if pd.notna(x) else "-")
                                      for c in ("base - arm", "ci_lo", "ci_hi")})  # fmt: skip
        ctl["detection_rate"] = self.controls["detection_rate"].map(lambda x: f"{x:.0%}" if pd.notna(x) else "-")
        aa_fmt = (self.aa.assign(**{c: self.aa[c].map(lambda x: f"{x:.1%}") for c in ("rate", "ci_lo", "ci_hi")})
                  if not self.aa.empty else self.aa)  # fmt: skip
        return "\n\n".join([
            "# Calibration: does the harness find effects that exist, and only those?",
            (f"Produced by `{COMMAND}` then `python -m harness.tables calibration`. 0-shot scores; intervals are "
            "95% (t over seeds for means, Welch for differences)."),
            f"Controls passed: **{passed} of {len(self.controls)}**. {aa_line}",
            "## Arms (mean [95% interval] over seeds)", self.arms.to_markdown(index=False),
            "## Controls", ctl.to_markdown(index=False),
            "## A/A false-positive rate per metric", aa_fmt.to_markdown(index=False) if not self.aa.empty else "-",
        ]) + "\n"  # fmt: skip


def build_calibration(runs: pd.DataFrame) -> CalibrationReport:
    members = calibration_runs(runs)
    if members.empty:
        return CalibrationReport(members, pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    return CalibrationReport(members, arms_table(members), controls_table(members), aa_table(members))
