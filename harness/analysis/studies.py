"""The MM1 studies: which runs belong to each, and how the paper lays its numbers out.

One registry entry per study, under the name of its ``sweeps/experiment/<name>.yaml`` (launch it with
``python sweep.py experiment=<name>``). A study declares:

- ``grid``: the override keys its experiment file sweeps and their values (a test checks they match the file;
  seeds are never restricted, so extra seeds always count);
- ``factors``: the tidy columns it varies (derived ones, such as a mixture's caption share, are computed from the
  mixture shares by ``derive``), and ``labels``: columns that only name a factor level (the data option's name);
- the paper reference it reproduces, the figures to draw, and the base row that deltas are taken against.

Membership. A run launched as ``experiment=<name>`` (or tagged ``tags=[<name>]``) belongs to the study. But neither
the experiment choice nor the tags are part of ``cfg_hash``, and a point already done is skipped, so a point two
studies share (the base configuration, the caption-only mixture, ...) carries only the label of whichever study ran
it first. A study therefore also takes every run that sits on its grid and whose config equals a labelled run's
outside the swept keys and the seed (its "context"). Runs of different contexts (e.g. another step budget) are
never averaged together: ``context`` is part of every grouping.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis import paper
from harness.analysis.paper import PaperRef
from harness.analysis.stats import delta_vs_base, seed_summary
from harness.config.schema import UNHASHED_SECTIONS
from harness.eval.tasks import WORLD_TASKS
from harness.registry import Registry

# (task, metric) -> column label: the world tasks that declare a ``headline`` (harness.eval.tasks: caption's CIDEr,
# vqa's accuracy), scored over all their queries ("subset" all).
HEADLINE = {(t.name, t.metric): t.headline for t in map(WORLD_TASKS.get, WORLD_TASKS.names()) if t.headline}


@dataclass(frozen=True)
class FigureSpec:
    """Metric vs ``x``; every other factor level gets its own line (``harness.analysis.figures``)."""

    x: str  # tidy column on the x axis
    categorical: bool = False  # x levels are names (connectors, on/off), not numbers


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    question: str  # what the study measures, in one line
    factors: tuple[str, ...]
    grid: dict[str, tuple]  # override key (as in sweeper params) -> values; membership of unlabelled runs
    paper: PaperRef
    figures: tuple[FigureSpec, ...]
    base: dict[str, Any] | None = None  # factor levels of the row deltas are taken against
    labels: tuple[str, ...] = ()
    derive: Callable[[pd.DataFrame], pd.DataFrame] | None = field(default=None, compare=False)

    @property
    def command(self) -> str:
        return f"python sweep.py experiment={self.name}"

    @property
    def swept(self) -> tuple[str, ...]:
        """Top-level config keys the grid changes (``encoder.layers`` changes the ``encoder`` section)."""
        return tuple(sorted({key.split(".")[0] for key in self.grid}))

    @property
    def rows(self) -> list[str]:
        """The columns that identify one layout row, labels first (as the paper's tables read)."""
        return [*self.labels, *self.factors]


STUDIES: Registry[Study] = Registry("study")


def _register(study: Study) -> None:
    STUDIES.register(study.name)(study)


def _on_off(mask: pd.Series, on: str, off: str) -> pd.Series:
    return pd.Series(np.where(mask, on, off), index=mask.index)


def _caption_share(df: pd.DataFrame) -> pd.DataFrame:
    image = df["mix_caption"] + df["mix_interleaved"]
    return df.assign(caption_share=(df["mix_caption"] / image).round(3))


def _text_on_off(df: pd.DataFrame) -> pd.DataFrame:
    cap, inter = df["mix_caption"] > 0, df["mix_interleaved"] > 0
    image = np.select([cap & inter, cap], ["caption+interleaved", "caption"], "interleaved")
    return df.assign(image_data=image, text_only=_on_off(df["mix_text"] > 0, "with text", "no text"))


def _text_share(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(text_share=df["mix_text"].round(3))


def _synthetic(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(synthetic=_on_off(df["mix_synthetic_caption"] > 0, "with synthetic", "without synthetic"))


_register(
    Study(
        "connectors",
        "Walking skeleton: four connectors at one visual-token budget",
        "Do the MM1 / Mini-Gemini connectors differ at one token budget?",
        factors=("connector", "visual_tokens"),
        grid={"connector": ("avg_pool", "attn_pool", "c_abstractor", "mining")},
        paper=paper.CONNECTORS,
        figures=(FigureSpec("connector", categorical=True),),
        base={"connector": "c_abstractor", "visual_tokens": 16},
    )
)
_register(
    Study(
        "table1",
        "MM1 Table 1: image encoder ablation",
        "Encoder size x input resolution x encoder pre-training captions (plain vs dense, the VeCap arm)",
        factors=("encoder_arch", "resolution", "encoder_data"),
        paper=paper.TABLE1,
        grid={"encoder.layers": (2, 4), "encoder.pretrain_captions": ("caption", "dense"), "resolution": (32, 64)},
        figures=(FigureSpec("resolution"),),
        base={"encoder_arch": "clip_tiny w96 L4", "resolution": 64, "encoder_data": "dense"},
    )
)
_register(
    Study(
        "figure4",
        "MM1 Figure 4: VL connector ablation",
        "Connector type x input resolution x visual tokens, at 0/4/8 shots",
        factors=("connector", "resolution", "visual_tokens"),
        grid={"connector": ("avg_pool", "attn_pool", "c_abstractor"), "resolution": (32, 64), "visual_tokens": (4, 16)},
        paper=paper.FIGURE4,
        figures=(FigureSpec("visual_tokens"), FigureSpec("resolution")),
        base={"connector": "c_abstractor", "resolution": 64, "visual_tokens": 16},
    )
)
_register(
    Study(
        "figure5a",
        "MM1 Figure 5a: caption vs interleaved data",
        "Share of captioned pairs in the image data (the rest interleaved documents), no text-only data",
        factors=("caption_share",),
        labels=("data",),
        grid={"data": ("caption_only", "mix_50_50_0", "interleaved_only")},
        paper=paper.FIGURE5A,
        derive=_caption_share,
        figures=(FigureSpec("caption_share"),),
        base={"caption_share": 0.5},
    )
)
_register(
    Study(
        "figure5b",
        "MM1 Figure 5b: adding text-only data",
        "Caption-only and interleaved-only data, each with and without 10% text-only data",
        factors=("image_data", "text_only"),
        labels=("data",),
        paper=paper.FIGURE5B,
        derive=_text_on_off,
        grid={"data": ("caption_only", "mix_90_0_10", "interleaved_only", "mix_0_90_10")},
        figures=(FigureSpec("text_only", categorical=True),),
    )
)
_register(
    Study(
        "figure5c",
        "MM1 Figure 5c: image vs text-only data",
        "Share of text-only data beside image data (caption:interleaved 1:1)",
        factors=("text_share",),
        labels=("data",),
        grid={"data": ("mix_50_50_0", "mm1_45_45_10", "mix_33_33_33")},
        paper=paper.FIGURE5C,
        derive=_text_share,
        figures=(FigureSpec("text_share"),),
        base={"text_share": 0.1},
    )
)
_register(
    Study(
        "figure5d",
        "MM1 Figure 5d: synthetic captions",
        "MM1's 45/45/10 mixture with part of the caption share given to dense synthetic captions (VeCap's role)",
        factors=("synthetic",),
        labels=("data",),
        grid={"data": ("mm1_45_45_10", "mm1_45_45_10_synth")},
        paper=paper.FIGURE5D,
        derive=_synthetic,
        figures=(FigureSpec("synthetic", categorical=True),),
        base={"synthetic": "without synthetic"},
    )
)


def _at(cfg: dict, key: str):
    """The value an override key sets in a resolved config; a group option is identified by its ``name``."""
    node: Any = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node.get("name") if isinstance(node, dict) else node


def _on_grid(cfg: dict, study: Study) -> bool:
    """Whether a run's config sets every key of the study's grid to one of the grid's values."""
    return all(str(_at(cfg, k)) in map(str, v) for k, v in study.grid.items())


# Parts of a swept section that none of its options sets, so they stay in the context: a mixture option (data=...)
# changes the shares, not where the images come from (data.sources, recorded only when a source is set: own data)
# nor the sequence length. Without this, runs on one's own photos joined the world's mixture studies.
KEPT_WHEN_SWEPT = {"data": ("sources", "max_len")}


def _context_config(cfg: dict, swept: tuple[str, ...]) -> dict:
    out = {k: v for k, v in cfg.items() if k not in (*UNHASHED_SECTIONS, "hydra", "seed", "eval", *swept)}
    for key in swept:
        section = cfg.get(key)
        kept = {sub: section[sub] for sub in KEPT_WHEN_SWEPT.get(key, ())
                if isinstance(section, dict) and sub in section}
        if kept:
            out[key] = kept
    return out


def context_id(cfg: dict, swept: tuple[str, ...]) -> str:
    """Short hash of the config outside the swept keys, the seed, and what never changes a trained point. ``eval``
    is left out as in the config hash: which units a point was scored on is a property of its metrics (a unit it
    lacks is simply absent), and a point evaluated later under another eval config is still the same point."""
    return hashlib.sha1(json.dumps(_context_config(cfg, swept), sort_keys=True).encode()).hexdigest()[:8]


def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"train.stages.0.steps": 600, ...}``: every leaf under its override path."""
    if isinstance(node, dict):
        return {k: v for key, sub in node.items() for k, v in leaves(sub, f"{prefix}{key}.").items()}
    if isinstance(node, list):
        return {k: v for i, sub in enumerate(node) for k, v in leaves(sub, f"{prefix}{i}.").items()}
    return {prefix[:-1]: node}


AS_DECLARED = "as declared"


def override_value(v: Any) -> str:
    """A config value as Hydra's command line spells it: ``true``, ``null``, ``[connector,llm]``, ``{a:1}``."""
    if isinstance(v, bool):
        return str(v).lower()
    if v is None:
        return "null"
    if isinstance(v, list):
        return "[" + ",".join(override_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{override_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def differences(ours: Any, ref: Any, prefix: str = "") -> dict[str, Any]:
    """Override paths where ``ours`` differs from ``ref``. Dicts recurse over the keys both have (a key only one side
    has is a group option's own setting, e.g. a connector's depth, and goes with the option's name); lists of equal
    length recurse by index; anything else that differs (a list of another length, a null against a dict) is
    reported whole, so ``train.stages.0.trainable=[connector]`` reads as the override that made it."""
    if isinstance(ours, dict) and isinstance(ref, dict):
        return {k: v for key in ours if key in ref
                for k, v in differences(ours[key], ref[key], f"{prefix}{key}.").items()}  # fmt: skip
    if isinstance(ours, list) and isinstance(ref, list) and len(ours) == len(ref):
        return {k: v for i, (o, r) in enumerate(zip(ours, ref)) for k, v in differences(o, r, f"{prefix}{i}.").items()}
    return {} if ours == ref else {prefix[:-1]: ours}


def context_label(cfg: dict, study: Study) -> str:
    """A context's name for tables and verdicts: its settings that differ from what ``experiment=<study>`` composes
    today, in override syntax (``connector.name=avg_pool``; ``differences``), or "as declared". Two contexts can
    share a name (they differ only where one side has keys the other lacks): ``study_runs`` then adds the hash, so
    the name a setup gets can depend on which other setups are read with it. A context that differs from the
    declared one only in such keys is named by its hash, never "as declared". Without the repository's ``sweeps/``
    to compose from, the short hash."""
    declared = declared_config(study.name)
    if declared is None:
        return context_id(cfg, study.swept)
    ref = _restrict(declared, cfg)
    diff = differences(_context_config(cfg, study.swept), _context_config(ref, study.swept))
    if diff:
        return " ".join(f"{k}={override_value(v)}" for k, v in sorted(diff.items()))
    same = context_id(ref, study.swept) == context_id(cfg, study.swept)
    return AS_DECLARED if same else f"setup {context_id(cfg, study.swept)}"


@functools.cache
def declared_config(name: str) -> dict | None:
    """The config ``python sweep.py experiment=<name>`` composes from ``sweeps/`` today, so that runs launched as
    plain ``-m`` sweeps with the same settings (the Quickstart's connector sweep, say) count too. None when
    ``sweeps/`` cannot be composed (an installed package without the repository): then only labelled runs anchor
    the study."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from harness.config.store import register_configs

    sweeps = Path(__file__).resolve().parents[2] / "sweeps"
    if not (sweeps / "experiment" / f"{name}.yaml").is_file():
        return None
    register_configs()
    with initialize_config_dir(str(sweeps), version_base=None):
        cfg = compose("sweep", overrides=[f"experiment={name}"])
    return OmegaConf.to_container(cfg, resolve=True)


def _restrict(declared: Any, recorded: Any) -> Any:
    """``declared`` limited to the keys ``recorded`` has, also inside lists (each training stage): a field added to
    the schema after a run was recorded (or left out of its record at its default, hashing.ADDED_LATER) does not
    take the run out of its study (its metrics are simply absent)."""
    if isinstance(declared, list) and isinstance(recorded, list) and len(declared) == len(recorded):
        return [_restrict(d, r) for d, r in zip(declared, recorded)]
    if not (isinstance(declared, dict) and isinstance(recorded, dict)):
        return declared
    return {k: _restrict(v, recorded[k]) for k, v in declared.items() if k in recorded}


def why_no_members(runs: pd.DataFrame, study: Study) -> str:
    """Why none of ``runs`` belongs to ``study``, in one line: how many were read, how many sit on its grid, and the
    settings in which those differ from what ``experiment=<study>`` composes (the most common first)."""
    if runs.empty:
        return "no runs were read"
    per_run = runs.drop_duplicates("cfg_hash").set_index("cfg_hash")
    configs = per_run["config_json"].map(json.loads)
    on_grid = configs[configs.map(lambda c: _on_grid(c, study))]
    head = f"{len(configs)} run{'s' if len(configs) != 1 else ''} read, none launched as {study.command}"
    if on_grid.empty:
        grid = "; ".join(f"{k} in {', '.join(map(str, v))}" for k, v in study.grid.items())
        return f"{head}, none on its grid ({grid})"
    declared = declared_config(study.name)
    if declared is None:
        return f"{head}; {len(on_grid)} on its grid, in other setups"
    counts: dict[str, int] = {}
    for c in on_grid:
        ours, ref = _context_config(c, study.swept), _context_config(_restrict(declared, c), study.swept)
        for key in {".".join(k.split(".")[:2]) for k in differences(ours, ref)}:  # data.sources, train.stages
            counts[key] = counts.get(key, 0) + 1
    top = ", ".join(f"{k} ({n})" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])[:4]) or "keys only one has"
    hint = (f"runs on other data are not this study's; add tags=[{study.name}] to count a run on purpose"
            if "data.sources" in counts else f"add tags=[{study.name}] to count a run")
    return f"{head}; {len(on_grid)} on its grid, in another setup than the study's (they differ in {top}); {hint}"


def study_runs(runs: pd.DataFrame, study: Study) -> pd.DataFrame:
    """The rows of ``runs`` that belong to ``study`` (labelled runs, and on-grid runs sharing a labelled run's
    context or the context the study's experiment file composes to), with a ``context`` column and the study's
    derived columns."""
    if runs.empty:
        return runs.assign(context=pd.Series(dtype=str))
    per_run = runs.drop_duplicates("cfg_hash").set_index("cfg_hash")
    configs = per_run["config_json"].map(json.loads)
    context = configs.map(lambda c: context_id(c, study.swept))
    on_grid = configs.map(lambda c: _on_grid(c, study))
    labelled = (per_run["experiment"] == study.name) | per_run["tags"].map(lambda t: study.name in t)
    declared = declared_config(study.name)
    as_declared = configs.map(lambda c: declared is not None and context_id(_restrict(declared, c), study.swept)
                              == context_id(c, study.swept))
    member = labelled | (on_grid & (context.isin(set(context[labelled])) | as_declared))
    member &= ~_repeats(per_run, configs, context, labelled, study)
    out = runs[runs["cfg_hash"].isin(per_run.index[member])]
    out = out.assign(context=out["cfg_hash"].map(_named(context[member], configs[member], study)))
    return study.derive(out) if study.derive else out


def _named(context: pd.Series, configs: pd.Series, study: Study) -> dict[str, str]:
    """cfg_hash -> its context's name (``context_label``), the hash added where two contexts share a name, so a
    name still groups exactly one context."""
    first = {ctx: configs[h] for h, ctx in context.items()}
    name = {ctx: context_label(cfg, study) for ctx, cfg in first.items()}
    shared = {n for n in name.values() if list(name.values()).count(n) > 1}
    name = {ctx: f"{n} [{ctx}]" if n in shared else n for ctx, n in name.items()}
    return {h: name[ctx] for h, ctx in context.items()}


def _repeats(per_run: pd.DataFrame, configs: pd.Series, context: pd.Series, labelled: pd.Series,
             study: Study) -> pd.Series:
    """Runs that repeat another run's trained point (same context, grid point and seed) and are not the one kept.

    Before evaluation had a hash of its own, the same trained point was recorded once per eval config (the
    Quickstart's 0-shot and a study's 0/4/8-shot records of one configuration and seed); counting both would count
    one seed twice. Kept: the run labelled with this study, then the one with the most metric entries, then the
    newest. A run failed or unfinished loses to one that finished."""
    point = configs.map(lambda c: json.dumps([str(_at(c, k)) for k in study.grid] + [c.get("seed")]))
    rank = pd.DataFrame({"key": context + point, "labelled": labelled.astype(int),
                         "ok": (per_run["status"] == "ok").astype(int), "entries": per_run["n_metrics"],
                         "finished_at": per_run["finished_at"].fillna("")}, index=per_run.index)
    rank = rank.sort_values(["labelled", "ok", "entries", "finished_at"], ascending=False, kind="stable")
    return pd.Series(rank.duplicated("key"), index=rank.index).reindex(per_run.index)


def missing_points(members: pd.DataFrame, study: Study) -> list[str]:
    """Grid points (seeds aside) without a finished run, e.g. ``connector=attn_pool, resolution=32, ...``."""
    done = members[members["status"] == "ok"].drop_duplicates("cfg_hash")["config_json"].map(json.loads)
    have = {tuple(str(_at(c, k)) for k in study.grid) for c in done}
    points = itertools.product(*([str(v) for v in values] for values in study.grid.values()))
    return [", ".join(f"{k}={v}" for k, v in zip(study.grid, p)) for p in points if p not in have]


def headline(df: pd.DataFrame) -> pd.DataFrame:
    """The overall scores of the two headline metrics, with a readable ``metric`` label."""
    known = pd.Series([k in HEADLINE for k in zip(df["task"], df["metric"])], index=df.index, dtype=bool)
    out = df[known & (df["subset"] == "all")]
    return out.assign(metric=[HEADLINE[k] for k in zip(out["task"], out["metric"])], shots=out["shots"].astype(int))


def layout(members: pd.DataFrame, study: Study) -> pd.DataFrame:
    """Seed statistics per study row x metric x shots (tidy; ``tables`` renders it the paper's way)."""
    return seed_summary(headline(members), by=[*study.rows, "metric", "shots", "step_budget", "context"])


def deltas(members: pd.DataFrame, study: Study) -> pd.DataFrame | None:
    """Each row minus the study's base row (same metric, shots, context); None when the study declares no base."""
    if study.base is None:
        return None
    return delta_vs_base(headline(members), study.rows, study.base, within=["metric", "shots", "context"])
