"""The calibration study: does the verdict machinery detect effects that exist, and only those?

``python sweep.py experiment=calibration`` trains one configuration (the base) at 8 seeds, two positive controls and
two runtime switches at 3 seeds each, and the token control again in a second setup (the world with the split dot,
at 5000 steps) where its base learns the question (``sweeps/experiment/calibration.yaml``); ``python -m
harness.tables calibration`` reads them here. Each run is put in one *arm* by what differs from the base: its
resolution, its visual tokens, or its ``switch:<name>`` tag. Three checks, all with the Welch 95% interval the MM1
verdicts use (``stats.welch_interval``), on 0-shot scores:

- **Positive controls** (the world's controls, ``harness/world/scene.py``): the base must beat ``resolution=32`` on
  the pattern question and ``visual_tokens=4`` on the dot question (and on the split-dot question, in a world that
  has it: ``world.split=true``). A control passes when the interval lies above 0. Its *detection rate* is the share
  of 3-vs-3 seed draws that would also have found it. A control whose question the world does not ask has no row.
  A miss is excused only where the base never learned the question: its seed mean within 2 evaluation standard
  errors of the majority answer (``stats.at_chance``). There is no effect to find, so such a row reads "not a
  control here" and counts neither way; a detection or a reversal is always reported as such, and a base that some
  seeds learn and others do not is a miss (a power miss is the verdicts' to own). The summary over setups says, per
  mechanism, in which setups a valid control detected or missed it.
- **Negative controls**: runtime switches that compute the same thing (packing, the frozen-feature cache) must not
  move the headline scores. A control passes when the interval contains 0.
- **A/A**: every split of the base's seeds into two disjoint arms of 3 is a comparison with no true effect (280
  splits from 8 seeds). The false-positive rate is the share whose interval excludes 0; nominal 5%, and 3.3% for
  a 3-vs-3 Welch interval on normal data (``stats.welch_null_rate``). Every split is counted, so the rate is exact
  for these seeds; its interval for the long-run rate is a delete-one-seed jackknife (``stats.jackknife_interval``),
  since the splits share seeds.

The study runs in more than one *setup*: its own last six points are the world with the split dot at 5000 steps,
and a user can add others (``python sweep.py experiment=calibration world.split=true world.dot=false
train.stages.0.steps=3000 'hydra.sweeper.points=[...]'``, with a point list of its own, since a point's own
settings win over the command line's). Runs are grouped by their config outside what the arms vary, seed,
evaluation and runtime, and each setup gets its own arms, controls and A/A, never pooled. A setup is named by the
settings that differ from what ``experiment=calibration`` composes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.analysis.stats import (
    at_chance,
    detection_rate,
    jackknife_interval,
    mean_interval,
    welch_interval,
    welch_null_rate,
)
from harness.analysis.studies import _restrict, context_id, declared_config, differences, override_value
from harness.config.schema import UNHASHED_SECTIONS

NAME = "calibration"
COMMAND = "python sweep.py experiment=calibration"
BASE = {"resolution": 64, "visual_tokens": 16}
# (task, metric, subset) -> label; 0-shot throughout.
HEADLINE = {("caption", "cider", "all"): "CIDEr", ("vqa", "vqa_accuracy", "all"): "VQA acc"}
VARIED = ("resolution", "visual_tokens", "hr_resolution")  # what the arms change (hr_resolution follows resolution)
DEFAULT_SETUP = "default setup"
NOT_RUN = "not run (no runs of this arm in this setup)"
NOT_A_CONTROL = "not a control here: the base is at the majority answer"
AA_ARM = 3  # seeds per arm in the A/A splits and the detection draws


@dataclass(frozen=True)
class Control:
    name: str
    arm: str  # compared with the base
    metric: tuple[str, str, str]
    positive: bool  # True: base > arm must be found; False: no difference may be found
    mechanism: str = ""  # a positive control's MM1 mechanism (what the study must detect in at least one setup)


CONTROLS = (
    Control("pattern needs resolution (64 vs 32 px)", "resolution=32", ("vqa", "vqa_accuracy", "pattern"), True,
            "resolution"),
    Control("dot column needs visual tokens (16 vs 4)", "visual_tokens=4", ("vqa", "vqa_accuracy", "dot"), True,
            "visual tokens"),
    Control("split dot needs visual tokens (16 vs 4)", "visual_tokens=4", ("vqa", "vqa_accuracy", "split"), True,
            "visual tokens"),
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
    # Grouped by the setup's whole config; the label only names it (it lists what differs from the composed
    # experiment, so two configs could share one: then the hash tells them apart, and they are never pooled).
    configs = members["config_json"].unique()  # once per run config, not per metric row
    key = members["config_json"].map({c: setup_key(c) for c in configs})
    label = members["config_json"].map({c: setup_label(c) for c in configs})
    shared = label.groupby(label).transform(lambda s: key[s.index].nunique() > 1)
    members["setup"] = label.where(~shared, label + " [" + key + "]")
    ok = members["arm"].notna() & (members["status"] == "ok") & (members["shots"] == 0)
    return members[ok]


def _context(config_json: str) -> str:
    """The studies' context (``studies.context_id``: the config without the seed, evaluation and what never changes
    results) with what this study varies also left out."""
    return context_id(json.loads(config_json), VARIED)


def _setup_config(cfg: dict) -> dict:
    """What a setup is: the config outside the seed, evaluation, what never changes results, and what the arms vary
    (the token count reaches the connector's ``num_tokens`` too)."""
    skip = (*UNHASHED_SECTIONS, "hydra", "seed", "eval", *VARIED)
    out = {k: v for k, v in cfg.items() if k not in skip}
    if isinstance(out.get("connector"), dict):
        out["connector"] = {k: v for k, v in out["connector"].items() if k != "num_tokens"}
    return out


def setup_key(config_json: str) -> str:
    """Short hash of the setup's config (``_setup_config``): runs with the same key are one setup."""
    cfg = _setup_config(json.loads(config_json))
    return hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:8]


def setup_label(config_json: str) -> str:
    """A setup's name: its settings that differ from what ``experiment=calibration`` composes today, in override
    syntax (``world.split=true train.stages.0.steps=1500``), or "default setup". Without the repository's
    ``sweeps/`` to compose from, the short hash of the setup."""
    cfg = _setup_config(json.loads(config_json))
    declared = declared_config(NAME)
    if declared is None:
        return "setup " + setup_key(config_json)
    diff = differences(cfg, _setup_config(_restrict(declared, cfg)))  # the studies' own naming of a setup
    return " ".join(f"{k}={override_value(v)}" for k, v in sorted(diff.items())) or DEFAULT_SETUP


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
    asked = {(t, m, s) for t, m, s in members[["task", "metric", "subset"]].drop_duplicates().itertuples(index=False)}
    for c in CONTROLS:
        if c.metric not in asked:  # a question this world does not ask (the dot in a world without it)
            continue
        base, arm = per_seed(members, "base", c.metric), per_seed(members, c.arm, c.metric)
        iv = welch_interval(base.to_numpy(), arm.to_numpy())
        measured = len(base) >= 2 and len(arm) >= 2 and math.isfinite(iv.lo)
        if c.arm not in set(members["arm"]):  # a setup launched without this arm (e.g. only the token control)
            verdict, passed = NOT_RUN, None
        elif not measured:
            verdict, passed = f"not measured ({len(base)} base, {len(arm)} arm seeds; need 2 each)", False
        elif c.positive:
            verdict = "detected" if iv.lo > 0 else "missed" if iv.hi >= 0 else "reversed"
            passed = verdict == "detected"
            excuse = _base_at_chance(members, c.metric) if verdict == "missed" else ""
            if excuse:
                # The base's seed mean is at the majority answer: no effect exists for the verdicts to find, so a
                # miss would blame them for the budget. Counted neither way. Only the seed mean is gated, by the
                # evaluation's own error, never the seed interval: that is the Welch test's own input, and gating
                # on it would excuse every miss of a base that some seeds learn (a power miss stays a miss).
                verdict, passed = f"{NOT_A_CONTROL} ({excuse})", None
        else:
            verdict = "no difference" if iv.lo <= 0 <= iv.hi else "false difference"
            passed = verdict == "no difference"
        det = (detection_rate(base, arm, arm_size=min(AA_ARM, len(base), len(arm)), rng=0)
               if c.positive and passed is not None and measured and min(len(base), len(arm)) >= 2
               else None)  # fmt: skip
        rows.append({
            "control": c.name, "kind": "positive" if c.positive else "negative", "mechanism": c.mechanism,
            "metric": label(c.metric),
            "arm": c.arm, "seeds": f"{len(base)} vs {len(arm)}", "base - arm": iv.mean, "ci_lo": iv.lo,
            "ci_hi": iv.hi, "verdict": verdict, "passes": passed,
            "detection_rate": det["rate"] if det else math.nan,
        })  # fmt: skip
    return pd.DataFrame(rows)


def _base_at_chance(members: pd.DataFrame, key: tuple[str, str, str]) -> str:
    """Why the base has not learned a VQA question type (its seed mean within ``CHANCE_SE`` evaluation standard
    errors of the majority answer, ``stats.at_chance``), or "" when it has, or has no majority answer or score."""
    task, metric, subset = key
    m = members[(members["arm"] == "base") & (members["task"] == task) & (members["metric"] == metric)
                & (members["subset"] == subset)]  # fmt: skip
    baseline = m["majority_baseline"].dropna() if "majority_baseline" in m else pd.Series(dtype=float)
    per = m.groupby("seed")[["value", "stderr"]].mean().dropna()
    if baseline.empty or per.empty:
        return ""
    mean, se, majority = float(per["value"].mean()), float(per["stderr"].mean()), float(baseline.iloc[0])
    if not at_chance({"value": mean, "majority_baseline": majority, "stderr": se}):
        return ""
    return (f"base seed mean {mean:.3f}, {mean - majority:+.3f} from the majority answer {majority:.3f}; one "
            f"evaluation's standard error {se:.3f}")


def all_splits(n: int, m: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every unordered pair of disjoint arms of ``m`` items out of ``n`` (280 for n=8, m=3)."""
    out = []
    for a in itertools.combinations(range(n), m):
        rest = [i for i in range(n) if i not in a]
        out += [(a, b) for b in itertools.combinations(rest, m) if b[0] > a[0]]
    return out


def _aa_hits(values: np.ndarray, m: int) -> tuple[int, int]:
    """(false positives, splits) over every split of ``values`` (one per seed) into two arms of ``m``."""
    splits = all_splits(len(values), m)
    return sum(_excludes_zero(welch_interval(values[list(a)], values[list(b)])) for a, b in splits), len(splits)


def _aa_counts(per_metric: list[pd.Series], seeds: list, m: int) -> tuple[int, int]:
    """(false positives, splits) pooled over the metrics, on ``seeds`` only (the jackknife drops one at a time)."""
    counts = [_aa_hits(v.loc[seeds].to_numpy(), m) for v in per_metric]
    return sum(h for h, _ in counts), sum(n for _, n in counts)


def aa_table(members: pd.DataFrame, m: int = AA_ARM) -> pd.DataFrame:
    """A/A false-positive rate per metric over every split of the base's seeds, and pooled over the metrics.

    Every split is enumerated, so ``rate`` is exact for these seeds. What it estimates is the long-run rate of the
    verdicts' test on this configuration; ``ci_lo``/``ci_hi`` is its 95% interval over seeds (a delete-one-seed
    jackknife: the splits share seeds, so a binomial interval over them would be far too narrow). The interval is
    NaN where it cannot be estimated: fewer than 2m + 1 seeds (a leave-one-out must keep two arms), or no false
    positive in any split (the jackknife has no spread to measure). The pooled row uses the seeds every metric has.
    """
    rows: list[dict] = []
    kept: list[pd.Series] = []
    for key in metric_keys(members):
        v = per_seed(members, "base", key).dropna()
        if len(v) < 2 * m:
            continue
        kept.append(v)
        rows.append(_aa_row(label(key), [v], m))
    if kept:
        common = sorted(set.intersection(*(set(v.index) for v in kept)))
        if len(common) >= 2 * m:
            rows.append(_aa_row("all metrics", [v.loc[common] for v in kept], m))
    return pd.DataFrame(rows)


def _aa_row(name: str, per_metric: list[pd.Series], m: int) -> dict:
    seeds = list(per_metric[0].index)
    hits, splits = _aa_counts(per_metric, seeds, m)

    def rate(keep: list) -> float:
        h, n = _aa_counts(per_metric, keep, m)
        return h / n if n else math.nan

    lo, hi = (jackknife_interval(rate, seeds, bounds=(0.0, 1.0))
              if len(seeds) > 2 * m and hits else (math.nan, math.nan))  # fmt: skip
    return {"metric": name, "seeds": len(seeds), "splits": splits, "false positives": hits, "rate": hits / splits,
            "ci_lo": lo, "ci_hi": hi}  # fmt: skip


def _excludes_zero(iv) -> bool:
    return bool(np.isfinite(iv.lo) and (iv.lo > 0 or iv.hi < 0))


@dataclass
class CalibrationReport:
    """One setup's tables, or (``build_calibration``) every setup's, concatenated with a ``setup`` column."""

    members: pd.DataFrame
    arms: pd.DataFrame
    controls: pd.DataFrame
    aa: pd.DataFrame

    @property
    def empty(self) -> bool:
        return self.members.empty

    def setups(self) -> list[str]:
        """Setups in order: the default setup first, then by name."""
        names = set(self.members["setup"]) if "setup" in self.members else set()
        return sorted(names, key=lambda n: (n != DEFAULT_SETUP, n))

    def only(self, setup: str) -> CalibrationReport:
        def pick(df: pd.DataFrame) -> pd.DataFrame:
            return df[df["setup"] == setup].drop(columns="setup") if "setup" in df else df

        # the arms' metric columns are the union over setups: keep those this setup's world has
        arms = pick(self.arms).dropna(axis=1, how="all")
        return CalibrationReport(pick(self.members), arms, pick(self.controls), pick(self.aa))

    def markdown(self) -> str:
        head = "\n\n".join([
            "# Calibration: does the harness find effects that exist, and only those?",
            (f"Produced by `{COMMAND}` then `python -m harness.tables calibration`. 0-shot scores; intervals are "
            "95% (t over seeds for means, Welch for differences). A positive control that misses where its base "
            "never learned the question (the base's seed mean within 2 evaluation standard errors of the majority "
            "answer; one evaluation's standard error is over its test questions) reads \"not a control here\" and "
            "counts neither way: there was no effect to find. `detection_rate`: the share of 3-vs-3 draws of the "
            "seeds that would also have detected the control. A setup other than the default one comes from the "
            "overrides in its heading."),
        ])  # fmt: skip
        setups = self.setups()
        summary = "\n".join(f"- {line}" for line in self.summary_lines())
        if len(setups) <= 1:
            return (head + ("\n\n## Summary\n\n" + summary if summary else "")
                    + "\n\n" + self.only(setups[0] if setups else "")._body(2))  # fmt: skip
        return (head + "\n\n## Summary over setups\n\n" + summary
                + "".join(f"\n\n## Setup: {s}\n\n" + self.only(s)._body(3) for s in setups))

    def summary_lines(self) -> list[str]:
        """What the study found, over every setup: per mechanism, the setups whose positive control detected it (a
        mechanism counts as detected when a control whose base learns the question finds it somewhere); the
        negative controls; the A/A rate of each setup that has one."""
        ctl, lines = self.controls, []
        if ctl.empty:
            return lines
        ran = ctl[ctl["verdict"] != NOT_RUN]
        pos = ran[ran["kind"] == "positive"]
        for mech in dict.fromkeys(pos["mechanism"]):
            rows = pos[pos["mechanism"] == mech]
            # counted: detected, missed or reversed (not "not a control here", not "not measured")
            valid = rows[rows["verdict"].isin(["detected", "missed", "reversed"])]
            counts = valid["verdict"].value_counts()
            where = f"{len(valid)} setup{'s' if len(valid) != 1 else ''} where the base learned the question"
            told = ", ".join(f"{v} in {counts[v]}" for v in ("detected", "missed", "reversed") if v in counts)
            status = (f"**{told}** of the {where}" if len(valid)
                      else "**no valid control**: the base learned the question in no setup")  # fmt: skip
            each = "; ".join(f"{r['setup']}: {r['metric']} {_effect(r)}, {r['verdict']}"
                             for r in rows.to_dict("records"))  # fmt: skip
            lines.append(f"{mech}: {status}. {each}.")
        neg = ran[ran["kind"] == "negative"]
        for setup, part in neg.groupby("setup", sort=False):
            ok = int((part["passes"] == True).sum())
            lines.append(f"negative controls, {setup}: {ok} of {len(part)} leave the scores unchanged.")
        for row in self.aa[self.aa["metric"] == "all metrics"].itertuples() if not self.aa.empty else ():
            ci = f"; long-run rate [{row.ci_lo:.1%}, {row.ci_hi:.1%}]" if pd.notna(row.ci_lo) else ""
            per = _splits_per_metric(row.seeds)
            lines.append(f"A/A, {row.setup}: {row.rate:.1%} false positives over {row.splits} comparisons ({per} "
                         f"splits of {row.seeds} seeds x {row.splits // per} metrics){ci} (references: nominal 5%, "
                         f"{welch_null_rate(AA_ARM):.1%} for this test).")
        return lines

    def _body(self, level: int) -> str:
        h = "#" * level
        seeds = int(self.members.loc[self.members["arm"] == "base", "seed"].nunique())
        aa = self.aa.iloc[-1] if not self.aa.empty else None
        null = (f"nominal 5%, and {welch_null_rate(AA_ARM):.1%} for this {AA_ARM}-vs-{AA_ARM} Welch interval on "
                "normal data")
        if aa is None:
            aa_line = (f"A/A: {seeds} base seeds, fewer than {2 * AA_ARM}: no false-positive rate yet "
                       "(the study runs 8).")
        else:
            ci = (f"long-run rate [{aa['ci_lo']:.1%}, {aa['ci_hi']:.1%}] (95%, jackknife over seeds)"
                  if pd.notna(aa["ci_lo"]) else
                  f"no interval for the long-run rate below {2 * AA_ARM + 1} seeds" if aa["seeds"] <= 2 * AA_ARM else
                  "no interval for the long-run rate: no split had a false positive")  # fmt: skip
            per = _splits_per_metric(int(aa["seeds"]))
            aa_line = (f"A/A false-positive rate: **{aa['rate']:.1%}** over {int(aa['splits'])} comparisons ({per} "
                       f"splits x {int(aa['splits']) // per} metrics) of {seeds} base "
                       f"seeds into arms of {AA_ARM}; {ci}. References: {null}.")  # fmt: skip
        if self.controls.empty:  # a setup whose world asks none of the control metrics
            return "No control metric in this setup's records.\n"
        passes = self.controls["passes"]
        passed = int((passes == True).sum())  # None: not a control here
        not_run = int((self.controls["verdict"] == NOT_RUN).sum())
        invalid = int(self.controls["verdict"].str.startswith(NOT_A_CONTROL).sum())
        notes = [f"{invalid} not a control in this setup: its base does not learn the question"] if invalid else []
        notes += [f"{not_run} not run in this setup"] if not_run else []
        counted = len(self.controls) - not_run - invalid
        of = f"{counted}" + (f" ({'; '.join(notes)})" if notes else "")
        ctl = self.controls.assign(**{c: self.controls[c].map(lambda x: f"{x:+.3f}" if pd.notna(x) else "-")
                                      for c in ("base - arm", "ci_lo", "ci_hi")})  # fmt: skip
        ctl["detection_rate"] = self.controls["detection_rate"].map(lambda x: f"{x:.0%}" if pd.notna(x) else "-")
        ctl["passes"] = self.controls["passes"].map(lambda x: "-" if x is None or pd.isna(x) else str(bool(x)))
        ctl = ctl.drop(columns="mechanism")
        aa_fmt = (self.aa.assign(**{c: self.aa[c].map(lambda x: f"{x:.1%}" if pd.notna(x) else "-")
                                  for c in ("rate", "ci_lo", "ci_hi")})
                  if not self.aa.empty else self.aa)  # fmt: skip
        return "\n\n".join([
            (f"Controls passed: **{passed} of {of}**." if counted else
             f"Controls passed: none to count ({'; '.join(notes)}).") + f" {aa_line}",
            f"{h} Arms (mean [95% interval] over seeds)", self.arms.to_markdown(index=False),
            f"{h} Controls", ctl.to_markdown(index=False),
            f"{h} A/A false-positive rate per metric", aa_fmt.to_markdown(index=False) if not self.aa.empty else "-",
        ]) + "\n"  # fmt: skip


def _splits_per_metric(seeds: int) -> int:
    """``len(all_splits(seeds, AA_ARM))`` without enumerating them."""
    return math.comb(seeds, AA_ARM) * math.comb(seeds - AA_ARM, AA_ARM) // 2


def _effect(row: dict) -> str:
    """``+0.460 [+0.416, +0.504]`` for a controls row, or "-" when not measured."""
    d = row["base - arm"]
    return "-" if pd.isna(d) else f"{d:+.3f} [{row['ci_lo']:+.3f}, {row['ci_hi']:+.3f}]"


def build_calibration(runs: pd.DataFrame) -> CalibrationReport:
    """Every setup's arms, controls and A/A, each table with a ``setup`` column (first) naming its setup."""
    members = calibration_runs(runs)
    if members.empty:
        return CalibrationReport(members, pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    tables: list[list[pd.DataFrame]] = [[], [], []]
    for setup, part in members.groupby("setup", sort=False):
        for out, df in zip(tables, (arms_table(part), controls_table(part), aa_table(part)), strict=True):
            out.append(df.assign(setup=setup)[["setup", *df.columns]] if not df.empty else df)
    report = CalibrationReport(members, *(pd.concat(t, ignore_index=True) for t in tables))
    order = {s: i for i, s in enumerate(report.setups())}
    for name in ("arms", "controls", "aa"):
        df = getattr(report, name)
        if "setup" in df:  # stable: the default setup first, each setup's rows in their own order
            setattr(report, name, df.sort_values("setup", key=lambda c: c.map(order), kind="stable",
                                                 ignore_index=True))
    return report
