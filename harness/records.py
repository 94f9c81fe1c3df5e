"""Run records: the one structured output of a sweep point, written atomically; analysis only reads them.

``results/runs/<cfg_hash>/record.json`` holds what a result row needs to be trusted and reproduced: the resolved
config, the Hydra choices, the config hash, git sha and dirtiness, library versions, seed, step budget, tokens and
images seen, parameter counts, wall time, status, and the metrics as a flat list of entries
``{task, shots, metric, subset, value, stderr, n, ...}``: ``subset`` is the slice of the task's queries an entry
scores, ``all`` for the whole task, else a slice such as a VQA question type (a TextCore entry's task is its lm-eval
task, marked ``suite: "textcore"``; older records' ``{task: "textcore", subset: <lm-eval task>}`` entries are read
in that form, harness.eval.aggregates.canonical_entry). Missing values are NaN (written as JSON ``NaN``) with a
status, never 0. Records are never rewritten by analysis (anti-pattern: derived z-scores written back into raw
results).
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

from harness.artifacts import atomic_write

SCHEMA_VERSION = 1
# running: in progress (or killed without a word); ok: finished; failed: an error, recorded with NaN metrics;
# preempted: a stop signal arrived, the checkpoint is written and running the same command resumes from it.
STATUSES = ("running", "ok", "failed", "preempted")
# Read-side only (never written): a 'running' record whose process is known to be gone, see effective_status.
INTERRUPTED = "interrupted"
RECORD = "record.json"
WEIGHTS = "weights.pt"  # runtime.save_weights: the trained parts (harness.train.checkpoint.save_trained)
# record["model"] keys of the pre-trained backbones a run was built from (each holds its cache "artifact")
PRETRAINED_PARTS = ("encoder_pretraining", "hr_encoder_pretraining", "llm_pretraining")


def write_json_atomic(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON (NaN kept as ``NaN``), written atomically: readers see the old or the new file."""
    text = json.dumps(obj, indent=2, default=str, allow_nan=True)
    with atomic_write(path) as fh:
        fh.write(text)


def read_record(run_dir: Path) -> dict | None:
    p = Path(run_dir) / RECORD
    if not p.is_file():
        return None
    rec = json.loads(p.read_text())
    if rec.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{p}: record schema {rec.get('schema_version')} != supported {SCHEMA_VERSION}")
    if rec.get("metrics"):  # entries of older records read as this version writes them (TextCore's ``subset``)
        from harness.eval.aggregates import canonical_entry

        rec["metrics"] = [canonical_entry(e) for e in rec["metrics"]]
    return rec


def is_done(run_dir: Path) -> bool:
    try:
        rec = read_record(run_dir)
    except (ValueError, json.JSONDecodeError):
        return False
    return bool(rec) and rec.get("status") == "ok"


def effective_status(rec: dict) -> str:
    """The record's status, except that a ``running`` record written on this host by a process that no longer
    exists reads as ``interrupted`` (killed without a word: OOM, ``kill -9``, a closed terminal). Running the same
    command resumes it from its last checkpoint. A record from another host (a SLURM node) cannot be checked from
    here and keeps ``running``."""
    status = rec.get("status") or "running"
    if status != "running" or rec.get("host") != socket.gethostname() or not isinstance(rec.get("pid"), int):
        return status
    try:
        os.kill(rec["pid"], 0)  # signal 0: existence check only
    except ProcessLookupError:
        return INTERRUPTED
    except PermissionError:  # alive, owned by someone else
        return status
    return status


def eval_failures(rec: dict) -> list[str]:
    """Evaluation units the latest evaluation of a trained point could not score (empty when all were scored)."""
    evals = rec.get("evaluations") or []
    return list(evals[-1].get("failed") or []) if evals else []


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


# ISA extensions that select different float kernels (and so can change a result's last digits).
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile",
             "asimd", "sve")


def machine_info() -> dict[str, Any]:
    """What decides whether a result reproduces to the digit: the CPU model and the ISA extensions its float kernels
    use, the kernels torch dispatches to (CPU capability, BLAS), and the GPU if one is used. Two runs of one
    config on machines whose fields all match give the same numbers; otherwise expect agreement within the seed
    interval, not to the digit."""
    import torch

    cpu, flags = platform.processor() or None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu in (None, "", platform.machine()):
                cpu = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:  # not Linux: the model name from platform is what there is
        pass
    cfg = torch.__config__.show()
    blas = next((part.split("=", 1)[1] for part in cfg.replace(",", " ").split() if part.startswith("BLAS_INFO=")),
                None)
    out: dict[str, Any] = {
        "cpu": cpu, "machine": platform.machine(), "cores": os.cpu_count(),
        "isa": [f for f in ISA_FLAGS if f in flags],
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "blas": blas,
        "mkldnn": torch.backends.mkldnn.is_available(), "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
        out["cuda"] = torch.version.cuda
    return out


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
