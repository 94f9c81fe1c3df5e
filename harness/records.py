"""Run records: the one structured output of a sweep point, written atomically; analysis only reads them.

``results/runs/<cfg_hash>/record.json`` holds what a result row needs to be trusted and reproduced: the resolved
config, the Hydra choices, the config hash, git sha and dirtiness, library versions, seed, step budget, tokens and
images seen, parameter counts, wall time, status, and the metrics as a flat list of entries
``{task, shots, metric, subset, value, stderr, n, ...}``. Missing values are NaN (written as JSON ``NaN``) with a
status, never 0. Records are never rewritten by analysis (anti-pattern: derived z-scores written back into raw
results, shared/docs/style.md §3).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import uuid
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
# running: in progress (or killed without a word); ok: finished; failed: an error, recorded with NaN metrics;
# preempted: a stop signal arrived, the checkpoint is written and running the same command resumes from it.
STATUSES = ("running", "ok", "failed", "preempted")
RECORD = "record.json"
WEIGHTS = "weights.pt"  # runtime.save_weights: the trained parts (harness.train.checkpoint.save_trained)
# record["model"] keys of the pre-trained backbones a run was built from (each holds its cache "artifact")
PRETRAINED_PARTS = ("encoder_pretraining", "hr_encoder_pretraining", "llm_pretraining")


def write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str, allow_nan=True))
    os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new file, never half of one


def read_record(run_dir: Path) -> dict | None:
    p = Path(run_dir) / RECORD
    if not p.is_file():
        return None
    rec = json.loads(p.read_text())
    if rec.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{p}: record schema {rec.get('schema_version')} != supported {SCHEMA_VERSION}")
    return rec


def is_done(run_dir: Path) -> bool:
    try:
        rec = read_record(run_dir)
    except (ValueError, json.JSONDecodeError):
        return False
    return bool(rec) and rec.get("status") == "ok"


def git_info(repo: Path | None = None) -> dict[str, Any]:
    cwd = str(repo or Path(__file__).resolve().parents[1])
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True,
                             timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                    capture_output=True, text=True, timeout=10, check=False).stdout.strip())
        return {"sha": sha, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def library_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("mm-ablate", "torch", "transformers", "tokenizers", "open_clip_torch", "timm", "hydra-core",
                "numpy", "pycocoevalcap"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def metric_value(record: dict, task: str, shots: int, metric: str, subset: str = "all") -> float:
    for e in record.get("metrics", []):
        if (e["task"], e["shots"], e["metric"], e["subset"]) == (task, shots, metric, subset):
            return float(e["value"])
    return math.nan
