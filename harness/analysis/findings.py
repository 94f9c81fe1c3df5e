"""Does each MM1 lesson hold in our runs? Measured effects with 95% intervals and a three-way verdict.

Each lesson (MM1 §3.2-3.3 design lessons, summarised in ``docs/mm1_reference.md``) is a set of claims checked on
the runs of one study, per headline metric, shot count and context (step budget and every other fixed setting):

- an *effect* is paired: value(axis = hi) - value(axis = lo) within blocks that match on the study's other factors
  and the seed, so it compares like with like; ``max``/``min`` pick the extreme levels present;
- a *spread* is, per block, the range of the value across the levels of one axis (how much connector type moves it),
  less its noise floor (:func:`~harness.analysis.stats.range_noise_floor`: the range that seed noise alone gives);
  "effect > spread" holds only if it also holds against the raw range, since the floor overcorrects real spreads;
- a claim is "effect > 0" (one-sample t-interval over the blocks) or "effect A > effect B" (Welch interval of the
  difference; the two sets of block values are treated as independent samples).

Verdict: ``holds`` when the interval lies above 0, ``does not hold`` when it lies below 0, ``inconclusive`` when it
crosses 0 or when runs are missing, with the missing runs named (a level never run, fewer than two pairs, no
few-shot scores). The step budget is printed beside every verdict: MM1 trains 200k steps, our points a few hundred,
and connector gaps in particular shrink with training.

Power: every measured row carries ``mde``, the minimum detectable effect at its blocks with 80% power (two-sided 5%;
``stats.minimum_detectable_effect``), and ``seeds``, the finished seeds per cell it used. An inconclusive row also
carries ``seeds_to_resolve``: the seeds per cell at which the observed effect, were it the true one with the
observed sd, would be detected with 80% power (``stats.seeds_to_resolve``; a block is one combination of the other
factors x one seed, so a seed adds blocks/seeds blocks). ``seeds_status`` says why it is NaN otherwise: "resolved"
(holds / does not hold), "> 200", "observed effect is 0", "no sd ..." or "no effect measured".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.stats import (
    Interval,
    at_chance,
    mean_interval,
    minimum_detectable_effect,
    paired_differences,
    range_noise_floor,
    sample_se_df,
    seeds_to_resolve,
    spreads,
    welch_interval,
)
from harness.analysis.studies import STUDIES, Study, headline, study_runs

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
BIAS_BOUND = "bias-bound"  # internal: holds against the noise-corrected spread only (reported as inconclusive)
SEEDS_HINT = "add seeds, e.g. seed=0,1,2"


@dataclass(frozen=True)
class Contrast:
    """value(axis = hi) - value(axis = lo). ``"max"``/``"min"`` (on either side) pick the extreme levels ranked by
    ``order``; any other value is a literal level."""

    axis: str
    hi: Any
    lo: Any
    label: str
    order: str | None = None  # column whose mean ranks the levels (default: the axis itself)


@dataclass(frozen=True)
class Spread:
    """Per block, max - min across the levels of ``axis``."""

    axis: str
    label: str


@dataclass(frozen=True)
class Claim:
    text: str
    effect: Contrast
    versus: Contrast | Spread | None = None  # None: the effect itself must be > 0
    shots: str = "all"  # all | zero | few
    tasks: tuple[str, ...] | None = None  # None: the headline metrics; else these tasks' overall scores
    absent_hint: str = ""  # why scores for ``tasks`` may be absent
    # A VQA question type instead: one of the world's controls (docs/embedded_default.md, "The world's controls"),
    # whose dependence on one mechanism is built in. Such a claim checks less MM1's finding than whether this budget
    # lets the mechanism show at all (and whether the connector gets in its way); absent in a world without it.
    vqa_type: str | None = None


@dataclass(frozen=True)
class Lesson:
    statement: str
    source: str
    study: str
    claims: tuple[Claim, ...]


_RES = Contrast("resolution", "max", "min", "higher resolution")
_TOKENS = Contrast("visual_tokens", "max", "min", "more visual tokens")
_TEXT = Contrast("text_only", "with text", "no text", "with text-only data")
LESSONS = (
    Lesson(
        "Image resolution > encoder size > encoder pre-training data",
        "MM1 §3.2 [P]",
        "table1",
        (
            Claim(
                "resolution gain > encoder-size gain",
                _RES,
                Contrast("encoder_arch", "max", "min", "larger encoder", order="encoder_params"),
            ),
            Claim(
                "resolution gain > encoder-size gain, on the resolution control",
                _RES,
                Contrast("encoder_arch", "max", "min", "larger encoder", order="encoder_params"),
                vqa_type="pattern",
            ),
            Claim(
                "encoder-size gain > pre-training-data gain",
                Contrast("encoder_arch", "max", "min", "larger encoder", order="encoder_params"),
                Contrast("encoder_data", "dense", "caption", "dense captions"),
            ),
        ),
    ),
    Lesson(
        "Visual tokens and resolution matter more than connector type",
        "MM1 §3.2 [P]",
        "figure4",
        (
            Claim("more-tokens gain > connector spread", _TOKENS, Spread("connector", "connector spread")),
            Claim("resolution gain > connector spread", _RES, Spread("connector", "connector spread")),
            # the same claims on the controls built for them (world v3): the pattern needs resolution, the dot's
            # column needs tokens; so does the split dot, in a world that has it (world.split=true)
            Claim("resolution gain > connector spread, on the resolution control", _RES,
                  Spread("connector", "connector spread"), vqa_type="pattern"),
            Claim("more-tokens gain > connector spread, on the token control", _TOKENS,
                  Spread("connector", "connector spread"), vqa_type="dot"),
            Claim("more-tokens gain > connector spread, on the split-dot control", _TOKENS,
                  Spread("connector", "connector spread"), vqa_type="split"),
        ),
    ),
    Lesson(
        "Interleaved data drives few-shot, captions drive 0-shot",
        "MM1 §3.3 [P]",
        "figure5a",
        (
            Claim(
                "more caption data raises 0-shot",
                Contrast("caption_share", "max", "min", "more captions"),
                shots="zero",
            ),
            Claim(
                "more interleaved data raises few-shot",
                Contrast("caption_share", "min", "max", "more interleaved"),
                shots="few",
            ),
        ),
    ),
    Lesson(
        "Text-only data helps few-shot and text tasks",
        "MM1 §3.3 [P]",
        "figure5b",
        (
            Claim("text-only data raises few-shot", _TEXT, shots="few"),
            Claim(
                "text-only data raises text-task scores",
                _TEXT,
                tasks=("textcore",),  # the record's TextCore average (subset "all")
                absent_hint="TextCore runs with eval.text_tasks set and lm-eval installed (pip install -e '.[eval]')",
            ),
        ),
    ),
    Lesson(
        # MM1 Figure 5c: 91/9 image:text (5:5:1) is the best balance; more text costs multimodal scores, none costs
        # text scores. Our grid: text shares 0, 0.1 (mm1_45_45_10) and 0.333.
        "Careful mixture of image and text data gives the best multimodal scores and keeps text performance",
        "MM1 §3.3 [P]",
        "figure5c",
        (
            Claim(
                "a small text share beats a large one on multimodal scores",
                Contrast("text_share", 0.1, "max", "10% text vs the largest text share"),
            ),
            Claim(
                "a small text share raises text-task scores over none",
                Contrast("text_share", 0.1, "min", "10% text vs no text"),
                tasks=("textcore",),
                absent_hint="TextCore runs with eval.text_tasks set and lm-eval installed (pip install -e '.[eval]')",
            ),
        ),
    ),
    Lesson(
        "Synthetic captions help few-shot",
        "MM1 §3.3 [P]",
        "figure5d",
        (
            Claim(
                "synthetic captions raise few-shot",
                Contrast("synthetic", "with synthetic", "without synthetic", "with synthetic captions"),
                shots="few",
            ),
        ),
    ),
)


def _levels(df: pd.DataFrame, c: Contrast) -> tuple[Any, Any, str]:
    """Resolve hi/lo to levels present among finished runs; the third item names what is missing, if anything."""
    done = df[np.isfinite(df["value"])]
    present = list(pd.unique(done[c.axis]))
    absent = [lvl for lvl in (c.hi, c.lo) if lvl not in ("max", "min") and lvl not in present]
    if absent:
        return None, None, f"no finished runs with {c.axis}={', '.join(map(str, absent))}"
    pick = {}
    if {c.hi, c.lo} & {"max", "min"}:  # ranking needs an ordered axis (or `order`); literal levels do not
        rank = done.groupby(c.axis)[c.order or c.axis].mean().sort_values()
        if len(rank) < 2:
            return None, None, f"only {len(rank)} {c.axis} level(s) {list(rank.index)} among finished runs"
        pick = {"max": rank.index[-1], "min": rank.index[0]}
    hi, lo = pick.get(c.hi, c.hi), pick.get(c.lo, c.lo)  # each side: an extreme level, or the literal one
    if hi == lo:
        return None, None, f"{c.axis}: {c.hi!r} and {c.lo!r} are the same level ({hi}) among finished runs"
    return hi, lo, ""


def _samples(df: pd.DataFrame, e: Contrast | Spread, study: Study) -> tuple[np.ndarray, str, str, int, float]:
    """Per-block effect samples, a description of the effect, what is missing (empty when enough), the number of
    seeds the blocks came from, and the noise floor taken off a spread's samples (0 for a contrast, or unknown)."""
    blocks = [f for f in study.factors if f != e.axis] + ["seed"]
    if isinstance(e, Spread):
        # A range of noisy scores is positive even when the axis changes nothing (three connectors that differ by
        # noise alone spread 1.69 seed sds on average), while a paired effect is not biased: the spread is taken less
        # that floor, else a lesson "does not hold" against pure noise. With real differences the floor overcorrects
        # (noise adds less than that to a wide range), so _check lets a claim hold only if it also beats the raw range.
        floor = range_noise_floor(df, e.axis, blocks)
        desc = (f"{e.label} (range less its noise floor {floor:.3f})" if math.isfinite(floor)
                else f"{e.label} (range; its noise floor is unknown at one seed)")
        floor = floor if math.isfinite(floor) else 0.0
        s = spreads(df, e.axis, blocks) - floor
    else:
        hi, lo, missing = _levels(df, e)
        if missing:
            return np.array([]), e.label, missing, 0, 0.0
        s = paired_differences(df, e.axis, hi, lo, blocks)
        desc, floor = f"{e.label} ({e.axis} {hi} vs {lo})", 0.0
    seeds = s.index.get_level_values("seed").nunique() if len(s) else 0
    if len(s) < 2:
        return s.to_numpy(), desc, f"{len(s)} matched block(s) for {desc}; need >= 2 ({SEEDS_HINT})", seeds, floor
    return s.to_numpy(), desc, "", seeds, floor


def _mean(samples: np.ndarray) -> float:
    return float(np.mean(samples)) if len(samples) else math.nan


def _verdict(iv: Interval, missing: str) -> str:
    if missing or not math.isfinite(iv.lo):
        return INCONCLUSIVE
    return HOLDS if iv.lo > 0 else FAILS if iv.hi < 0 else INCONCLUSIVE


def _shots(df: pd.DataFrame, which: str) -> tuple[list[int], str]:
    present = sorted(int(k) for k in pd.unique(df["shots"]))
    chosen = {"all": present, "zero": [k for k in present if k == 0], "few": [k for k in present if k > 0]}[which]
    what = {"all": "any", "zero": "0-shot", "few": "few-shot"}[which]
    return chosen, ("" if chosen else f"no {what} scores (run with eval.shots=[0,4,8])")


def _scores(members: pd.DataFrame, claim: Claim) -> pd.DataFrame:
    if claim.vqa_type is not None:
        part = members[(members["task"] == "vqa") & (members["subset"] == claim.vqa_type)]
        return part.assign(metric=f"VQA {claim.vqa_type}", shots=part["shots"].astype(int))
    if claim.tasks is None:
        return headline(members)
    return members[members["task"].isin(claim.tasks) & (members["subset"] == "all")]


def _row(lesson: Lesson, claim: Claim, **kw) -> dict:
    return {
        "lesson": lesson.statement,
        "source": lesson.source,
        "study": lesson.study,
        "claim": claim.text,
        "metric": "",
        "shots": "",
        "effect": math.nan,
        "ci_lo": math.nan,
        "ci_hi": math.nan,
        "blocks": "",
        "steps": "",
        "setup": "",
        "verdict": INCONCLUSIVE,
        "detail": "",
        "seeds": math.nan,
        "mde": math.nan,
        "seeds_to_resolve": math.nan,
        "seeds_status": "no effect measured",
    } | kw


NOT_LEARNED = ("not learned: every score within 2 s.e. of the majority answer; more seeds only measure noise "
               "(needs a budget where the question is learned)")


def _never_learned(df: pd.DataFrame) -> bool:
    """Every finished score of these rows is at the majority answer (``stats.at_chance``: not above it by 2
    standard errors), so no cell of the comparison learned the question type."""
    rows = df[["value", "majority_baseline", "stderr"]].dropna()
    return not rows.empty and all(at_chance(r) for r in rows.to_dict("records"))


def _power(iv: Interval, verdict: str, arms: list[np.ndarray], seeds: list[int]) -> dict:
    """The power columns of one measured row: seeds used, MDE at these blocks, seeds that would resolve it.

    ``arms``: the effect's block samples (and the compared effect's, for a Welch claim); ``seeds``: how many seeds
    each arm's blocks came from. A new seed is assumed to add as many blocks as an existing one did on average.
    """
    now = min(seeds)
    mde = minimum_detectable_effect(*sample_se_df(*arms))
    if verdict != INCONCLUSIVE:
        return {"seeds": now, "mde": mde, "seeds_to_resolve": math.nan, "seeds_status": "resolved"}
    if not math.isfinite(iv.mean):
        return {"seeds": now, "mde": mde}  # the _row defaults: no effect measured
    if any(len(x) < 2 for x in arms):
        return {"seeds": now, "mde": mde, "seeds_status": "no sd: needs >= 2 blocks per side"}
    plan = seeds_to_resolve(
        iv.mean, tuple(float(x.std(ddof=1)) for x in arms), tuple(len(x) / n for x, n in zip(arms, seeds))
    )
    return {"seeds": now, "mde": mde, "seeds_to_resolve": plan.seeds, "seeds_status": plan.status}


def _check(lesson: Lesson, claim: Claim, scores: pd.DataFrame, study: Study, steps: str) -> list[dict]:
    rows = []
    for metric, by_metric in scores.groupby("metric", sort=True):
        shots, missing = _shots(by_metric, claim.shots)
        if missing:
            rows.append(_row(lesson, claim, metric=metric, steps=steps, detail=missing))
        for k in shots:
            df = by_metric[by_metric["shots"] == k]
            a, desc, missing, seeds, _ = _samples(df, claim.effect, study)
            arms, arm_seeds = [a], [seeds]
            if claim.versus is None:
                iv, n = mean_interval(a), f"{len(a)}"
            else:
                b, desc_b, missing_b, seeds_b, floor = _samples(df, claim.versus, study)
                arms, arm_seeds = [a, b], [seeds, seeds_b]
                iv, n = welch_interval(a, b), f"{len(a)} vs {len(b)}"
                desc = f"{desc}: {_mean(a):+.3f}; {desc_b}: {_mean(b):+.3f}"
                missing = "; ".join(m for m in (missing, missing_b) if m)
            verdict = _verdict(iv, missing)
            if verdict == HOLDS and isinstance(claim.versus, Spread):
                raw = welch_interval(a, b + floor)
                if raw.lo <= 0:  # beats the noise-corrected spread, not the raw one: the bias decides, not the data
                    verdict = BIAS_BOUND
                    desc += f"; against the raw range {raw.mean:+.3f} [{raw.lo:+.3f}, {raw.hi:+.3f}]"
            power = _power(iv, INCONCLUSIVE if verdict == BIAS_BOUND else verdict, arms, arm_seeds)
            if verdict == INCONCLUSIVE and math.isfinite(iv.mean) and claim.vqa_type is not None and _never_learned(df):
                # both sides of the comparison are noise around the majority answer: the plan would "resolve" noise
                power |= {"seeds_to_resolve": math.nan, "seeds_status": NOT_LEARNED}
            if verdict == BIAS_BOUND:
                # every seed adds a block with the same range bias: seeds narrow the interval, not the bias
                verdict = INCONCLUSIVE
                power |= {"seeds_to_resolve": math.nan,
                          "seeds_status": "not by seeds: holds against the spread less its noise floor, not the raw"
                                          " range (average seeds within a block to shrink the floor)"}
            rows.append(
                _row(
                    lesson,
                    claim,
                    metric=metric,
                    shots=k,
                    effect=iv.mean,
                    ci_lo=iv.lo,
                    ci_hi=iv.hi,
                    blocks=n,
                    steps=steps,
                    verdict=verdict,
                    detail=missing or desc,
                    **power,
                )
            )
    return rows


def lesson_verdicts(lesson: Lesson, runs: pd.DataFrame) -> list[dict]:
    study = STUDIES.get(lesson.study)
    members = study_runs(runs, study)
    if members.empty:
        return [_row(lesson, c, detail=f"no {study.name} records: run `{study.command}`") for c in lesson.claims]
    rows = []
    for setup, part in members.groupby("context", sort=True):
        steps = ", ".join(str(s) for s in sorted(pd.unique(part["step_budget"].dropna())))
        for claim in lesson.claims:
            scores = _scores(part, claim)
            if scores.empty and claim.vqa_type is not None:
                continue  # a world without this control (v2, or switched off): the headline claims cover it
            if scores.empty:
                absent = f"no scores for task(s) {', '.join(claim.tasks or ())} in the records: {claim.absent_hint}"
                rows.append(_row(lesson, claim, steps=steps, setup=setup, detail=absent))
            else:
                rows.extend(r | {"setup": setup} for r in _check(lesson, claim, scores, study, steps))
    return rows


def verdicts(runs: pd.DataFrame, study: str | None = None) -> pd.DataFrame:
    """The verdict table for every lesson (or those checked on ``study``), one row per claim x metric x shots."""
    if study is not None:
        STUDIES.entry(study)  # unknown names fail with did-you-mean
    rows = [r for lesson in LESSONS if study in (None, lesson.study) for r in lesson_verdicts(lesson, runs)]
    return pd.DataFrame(rows, columns=list(_row(LESSONS[0], LESSONS[0].claims[0])))
