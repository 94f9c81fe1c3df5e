"""Fixture run records for the analysis tests: written in the record format, with known effects built in.

Scores are a linear model of the factors plus a small seeded jitter, so every verdict has a known answer:

- figure4: resolution (+0.05) and more tokens (+0.04) dwarf the connector gap (0.002): lesson holds. One
  attn_pool point failed (NaN metrics) and is the only run of its cell.
- table1: resolution (+0.06) > encoder size (+0.02) > encoder data (+0.005): lesson holds.
- figure5a: captions raise 0-shot, interleaved raises few-shot, 3 seeds: both claims hold. One caption-only point
  is unlabelled (launched without experiment=): it still belongs, as its config matches. A run with another step
  budget is labelled too and forms its own context, where one level is all there is: inconclusive.
- figure5b: only the with-text points are labelled figure5b; the no-text ones come from figure5a. Text-only data
  lowers few-shot by 0.03 in every block: does not hold. No text-task scores: inconclusive.
- figure5c: one labelled run; the figure4 base points (same config as its mm1_45_45_10 level) join it.
- figure5d: no records at all.
- a duplicate cfg_hash: an older ok record and a newer failed one (the ok one must win), and two ok copies.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from harness.records import SCHEMA_VERSION, Record, write_json_atomic

BASE_CONFIG = {
    "paths": {"cache_dir": "/tmp/cache", "results_dir": "/tmp/results", "runs_dir": "/tmp/results/runs"},
    "world": {"name": "shapes", "seed": 0},
    "encoder": {"name": "clip_tiny", "width": 96, "layers": 4, "pretrain_captions": "dense"},
    "hr_encoder": {"name": "conv_tiny"},
    "connector": {"name": "c_abstractor", "num_tokens": 16},
    "llm": {"name": "llama_tiny"},
    "data": {"name": "mm1_45_45_10", "mixture": {"caption": 0.45, "interleaved": 0.45, "text": 0.10}},
    "train": {"name": "default", "stages": [{"name": "pretrain", "steps": 600}]},
    "eval": {"name": "default", "shots": [0, 4, 8]},
    "runtime": {"threads": 1},
    "resolution": 64,
    "hr_resolution": 128,
    "visual_tokens": 16,
    "seed": 0,
    "tags": [],
}
SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"


def mixture(data: str) -> dict[str, float]:
    """The mixture of a data option, read from its YAML so fixture and configs cannot drift apart."""
    return dict(OmegaConf.load(SWEEPS / "data" / f"{data}.yaml").mixture)


class Writer:
    def __init__(self, root: Path, start: int = 0):
        self.root = root
        self.count = start  # config hashes are h<count>: a second writer into one folder starts elsewhere

    def record(
        self,
        *,
        experiment=None,
        seed=0,
        status="ok",
        scores=None,
        tags=(),
        steps=600,
        cfg_hash=None,
        finished_at="2026-01-01T00:00:00+00:00",
        subdir="runs",
        **overrides,
    ) -> Record:
        """One record; ``overrides`` set config sections (``connector="avg_pool"``, ``data="caption_only"``, ...)."""
        self.count += 1
        cfg = copy.deepcopy(BASE_CONFIG)
        cfg["seed"], cfg["tags"] = seed, list(tags)
        cfg["train"]["stages"][0]["steps"] = steps
        for key, value in overrides.items():
            if key == "connector":
                cfg["connector"]["name"] = value
            elif key == "data":
                cfg["data"] = {"name": value, "mixture": mixture(value)}
            elif key in ("layers", "pretrain_captions"):
                cfg["encoder"][key] = value
            else:
                cfg[key] = value
        cfg["connector"]["num_tokens"] = cfg["visual_tokens"]
        h = cfg_hash or f"h{self.count:04d}"
        ok = status == "ok"
        metrics = []
        for key, value in (scores or {}).items():
            task, shots, subset = key if len(key) == 3 else (*key, "all")  # (task, shots[, VQA question type])
            metric = "cider" if task == "caption" else "vqa_accuracy"
            metrics.append(
                {
                    "task": task,
                    "shots": shots,
                    "metric": metric,
                    "subset": subset,
                    "value": value if ok else math.nan,
                    "stderr": 0.01 if ok else math.nan,
                    "n": 400 if ok else 0,
                }
            )
        rec = {
            "schema_version": SCHEMA_VERSION,
            "cfg_hash": h,
            "status": status,
            "error": None if ok else "RuntimeError: fixture failure",
            "choices": {
                "experiment": experiment,
                "connector": cfg["connector"]["name"],
                "encoder": "clip_tiny",
                "data": cfg["data"]["name"],
                "train": "default",
                "eval": "default",
                "llm": "llama_tiny",
                "world": "shapes",
                "hr_encoder": "conv_tiny",
            },
            "resolution": cfg["resolution"],
            "visual_tokens": cfg["visual_tokens"],
            "seed": seed,
            "tags": list(tags),
            "config": cfg,
            "step_budget": steps,
            "metrics": metrics,
            "wall_s": 100.0,
            "started_at": finished_at,
            "finished_at": finished_at,
        }
        if ok:
            params = 250_000 * cfg["encoder"]["layers"] // 2
            rec["model"] = {
                "params": {"encoder": params, "connector": 10_000},
                "visual_tokens_emitted": cfg["visual_tokens"],
            }
        write_json_atomic(self.root / subdir / h / "record.json", rec)
        return Record.from_json(rec)


def scores(value: float | dict[int, float]) -> dict:
    """Both headline metrics (CIDEr on twice the VQA scale), at 0/4/8 shots unless given per shot count."""
    per_shot = value if isinstance(value, dict) else dict.fromkeys((0, 4, 8), value)
    return {(task, k): scale * v for k, v in per_shot.items() for task, scale in (("caption", 2), ("vqa", 1))}


def write_fixture_results(root: Path) -> Path:
    rng = np.random.default_rng(0)
    w = Writer(root)

    def jitter(scale: float = 0.003):
        return float(rng.normal(0, scale))

    for conn, c_eff in (("avg_pool", 0.0), ("c_abstractor", 0.002)):
        for res in (32, 64):
            for tokens in (4, 16):
                for seed in (0, 1):
                    v = 0.3 + 0.05 * (res == 64) + 0.04 * (tokens == 16) + c_eff + jitter()
                    # the world's controls: the pattern needs resolution, the dot's column tokens; neither cares
                    # which connector
                    controls = {("vqa", 0, "pattern"): 0.25 + 0.6 * (res == 64) + jitter(),
                                ("vqa", 0, "dot"): 0.25 + 0.3 * (tokens == 16) + jitter()}
                    w.record(
                        experiment="figure4",
                        connector=conn,
                        resolution=res,
                        visual_tokens=tokens,
                        seed=seed,
                        scores=scores(v) | controls,
                    )
    w.record(
        experiment="figure4",
        connector="attn_pool",
        resolution=64,
        visual_tokens=16,
        status="failed",
        scores=scores(0.0),
    )

    for layers in (2, 4):
        for res in (32, 64):
            for captions in ("caption", "dense"):
                v = 0.3 + 0.06 * (res == 64) + 0.02 * (layers == 4) + 0.005 * (captions == "dense") + jitter()
                w.record(
                    experiment="table1",
                    layers=layers,
                    resolution=res,
                    pretrain_captions=captions,
                    # a context of its own (eval settings no longer separate contexts: a trained point is the
                    # same point whichever units it was scored on), so figure4's points do not join table1
                    hr_resolution=160,
                    eval={"name": "default", "shots": [0]},
                    scores=scores({0: v}) | {("vqa", 0, "pattern"): 0.25 + 0.6 * (res == 64) + jitter()},
                )

    # Figures 5a/5b share one model of the data mixture: captions lift 0-shot, interleaved lifts few-shot, text-only
    # data costs 0.03 everywhere. Each no-text point is written once (by 5a, caption-only seed 0 unlabelled) and
    # figure5b must still find it.
    for data, share, text in (
        ("caption_only", 1.0, 0),
        ("mix_50_50_0", 0.5, 0),
        ("interleaved_only", 0.0, 0),
        ("mix_90_0_10", 1.0, 1),
        ("mix_0_90_10", 0.0, 1),
    ):
        for seed in (0, 1, 2):
            zero, few = 0.2 + 0.1 * share - 0.03 * text, 0.3 - 0.1 * share - 0.03 * text
            experiment = "figure5b" if text else None if (data, seed) == ("caption_only", 0) else "figure5a"
            w.record(
                experiment=experiment,
                data=data,
                seed=seed,
                scores=scores({0: zero + jitter(0.001), 4: few + jitter(0.001), 8: few + jitter(0.001)}),
            )
    w.record(experiment="figure5a", data="caption_only", steps=50, scores=scores(0.1))
    w.record(experiment="figure5c", data="mm1_45_45_10", seed=9, scores=scores(0.392))

    dup = {"connector": "avg_pool", "visual_tokens": 9, "seed": 0, "tags": ("connectors",), "eval": {"shots": [0]}}
    w.record(cfg_hash="dupe_ok_then_failed", finished_at="2026-01-01T00:00:00+00:00", scores=scores(0.25), **dup)
    w.record(
        cfg_hash="dupe_ok_then_failed",
        finished_at="2026-02-01T00:00:00+00:00",
        status="failed",
        scores=scores(0.0),
        subdir="copied/runs",
        **dup,
    )
    two = dup | {"connector": "c_abstractor"}
    w.record(cfg_hash="dupe_two_ok", finished_at="2026-01-01T00:00:00+00:00", scores=scores(0.20), **two)
    w.record(
        cfg_hash="dupe_two_ok",
        finished_at="2026-03-01T00:00:00+00:00",
        scores=scores(0.22),
        subdir="copied/runs",
        **two,
    )
    return root
