"""Records -> one tidy DataFrame: a row per run x task x shots x metric x subset.

Every ``record.json`` under a results folder is read (recursively, so results copied in from several machines can
sit side by side). Run-level fields become columns beside each metric row: the Hydra choices, resolution, visual
tokens (asked for and emitted), seed, step budget, status, and the config scalars studies lay results out by
(encoder size and pre-training captions, normalised data-mixture shares).

Two runs of one ``cfg_hash`` (the same point run twice, or copied from two places) are resolved to one: the newest
``ok`` record, or the newest record when none finished. Runs tagged ``switch:<name>`` (the calibration study's
runtime switches, which share the base's hash on purpose) are left out unless ``switches=True``; then the switch is
part of the identity and appears in the ``switch`` column. A failed run keeps its NaN metric values and its status; a
record still ``running`` has no metrics yet and appears as one row with NaN task fields. Nothing is ever written back.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from harness.evaluate import caption_demo_of
from harness.records import RECORD, Record, effective_status, read_record

GROUPS = ("world", "encoder", "hr_encoder", "connector", "llm", "data", "train", "eval")
MIXTURE_SOURCES = ("caption", "synthetic_caption", "interleaved", "conversation", "text")  # harness.data.sources names
# A metric entry's ``n`` (evaluation samples) is ``n_eval`` here: in the seed statistics ``n`` counts runs.
METRIC_FIELDS = ("task", "shots", "metric", "subset", "value", "stderr", "n_eval", "majority_baseline", "trials",
                 "caption_demo")


def encoder_arch(enc: dict) -> str | None:
    """A readable encoder size label, e.g. ``clip_tiny w96 L4`` (width x transformer blocks when the config has them)."""
    name = enc.get("name")
    if name and "width" in enc and "layers" in enc:
        return f"{name} w{enc['width']} L{enc['layers']}"
    return name


def mixture_shares(mixture: dict[str, float]) -> dict[str, float]:
    """Weights normalised to shares (the mixture's own rule); a source left out of the mixture has share 0."""
    total = float(sum(mixture.values()))
    return {f"mix_{s}": (float(mixture.get(s, 0.0)) / total if total > 0 else math.nan) for s in MIXTURE_SOURCES}


SWITCH_TAG = "switch:"


def switch_of(rec: Record) -> str:
    """The runtime switch a calibration run was launched under (its ``switch:<name>`` tag), or "" for a normal run."""
    return next((t[len(SWITCH_TAG) :] for t in rec.tags if str(t).startswith(SWITCH_TAG)), "")


def run_fields(rec: Record) -> dict[str, Any]:
    """The run-level columns of one record (shared by the tidy loader and the end-of-sweep summary)."""
    cfg = rec.config
    model = rec.model or {}  # None: the point failed before its model was built
    params = model.get("params") or {}
    train = rec.train or {}
    enc = cfg.get("encoder") or {}
    return {
        "cfg_hash": rec.cfg_hash,
        "status": effective_status(rec),  # a dead "running" point reads as interrupted
        "error": rec.error,
        "experiment": rec.choices.get("experiment"),
        "tags": tuple(rec.tags),
        "switch": switch_of(rec),
        **{g: rec.choices.get(g, (cfg.get(g) or {}).get("name")) for g in GROUPS},
        "resolution": rec.resolution,
        "visual_tokens": rec.visual_tokens,
        "tokens_emitted": model.get("visual_tokens_emitted", math.nan),
        "seed": rec.seed,
        "step_budget": rec.step_budget,
        "encoder_arch": encoder_arch(enc),
        "encoder_data": enc.get("pretrain_captions"),
        "encoder_params": params.get("encoder", math.nan),
        "connector_params": params.get("connector", math.nan),
        **mixture_shares((cfg.get("data") or {}).get("mixture") or {}),
        "final_loss": train.get("final_loss", math.nan),
        "train_flops": train.get("flops_estimate", math.nan),
        "wall_s": math.nan if rec.wall_s is None else rec.wall_s,
        "finished_at": rec.finished_at or rec.started_at or "",
        "n_metrics": len(rec.metrics),
        "git_sha": rec.git.get("sha"),
    }


def metric_rows(rec: Record) -> list[dict[str, Any]]:
    rows = []
    for e in rec.metrics:
        rows.append(
            {
                "task": e["task"],
                "shots": e["shots"],
                "metric": e["metric"],
                "subset": e["subset"],
                "value": float(e["value"]),
                "stderr": float(e.get("stderr", math.nan)),
                "n_eval": e.get("n"),
                "majority_baseline": e.get("majority_baseline", math.nan),
                "trials": e.get("trials"),
                # how k-shot caption demonstrations read (eval.caption_demo); None for every other entry
                "caption_demo": caption_demo_of(rec, e),
            }
        )
    return rows or [dict.fromkeys(METRIC_FIELDS, math.nan) | {"task": None, "metric": None, "subset": None}]


def read_records(results_dir: Path) -> list[tuple[Path, Record]]:
    out = []
    for path in sorted(Path(results_dir).expanduser().rglob(RECORD)):
        rec = read_record(path.parent)  # an unsupported schema version raises with the path
        if rec is not None:
            out.append((path, rec))
    return out


def dedupe(records: list[tuple[Path, Record]]) -> list[tuple[Path, Record]]:
    """Keep one record per (cfg_hash, switch): the newest ok one, else the newest (finished_at, then file mtime)."""

    def rank(item):
        path, rec = item
        return (rec.status == "ok", rec.finished_at or rec.started_at or "", path.stat().st_mtime)

    best: dict[tuple[str, str], tuple[Path, Record]] = {}
    for item in records:
        h = (item[1].cfg_hash or str(item[0].parent), switch_of(item[1]))
        if h not in best or rank(item) > rank(best[h]):
            best[h] = item
    return sorted(best.values(), key=lambda it: str(it[0]))


def load_runs(results_dir: str | Path, switches: bool = False) -> pd.DataFrame:
    """The tidy frame of every run under ``results_dir`` (empty, with all columns, when there are none).

    ``config_json`` holds the resolved config (canonical JSON) so studies can tell which runs share a setup.
    ``switches``: also keep the calibration study's runtime-switch runs (left out by default: they repeat a point).
    """
    rows = []
    records = [(p, r) for p, r in read_records(Path(results_dir)) if switches or not switch_of(r)]
    for path, rec in dedupe(records):
        run = run_fields(rec) | {
            "record_path": str(path),
            "config_json": json.dumps(rec.config, sort_keys=True, default=str),
        }
        rows.extend(run | m for m in metric_rows(rec))
    columns = [*run_fields(Record(cfg_hash="", status="ok")), "record_path", "config_json", *METRIC_FIELDS]
    df = pd.DataFrame(rows, columns=columns)
    return df.astype({"value": float, "stderr": float})
