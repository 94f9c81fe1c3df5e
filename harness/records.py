"""Run records: the one structured output of a sweep point, written atomically; analysis only reads them.

``results/runs/<cfg_hash>/record.json`` holds what a result row needs to be trusted and reproduced. Its fields are
defined once, by :class:`Record` (types and meanings), and read back through :func:`read_record`, which upgrades any
readable older layout, so readers use typed fields instead of guessing with ``.get(...) or {}``. The metrics are a
flat list of :class:`Metric` entries ``{task, shots, metric, subset, value, stderr, n, ...}``: ``subset`` is the
slice of the task's queries an entry scores, ``all`` for the whole task, else a slice such as a VQA question type (a
TextCore entry's task is its lm-eval task, marked ``suite: "textcore"``; older records'
``{task: "textcore", subset: <lm-eval task>}`` entries are read in that form, harness.eval.aggregates.canonical_entry).
Missing values are NaN (written as JSON ``NaN``) with a status, never 0. Records are never rewritten by analysis
(anti-pattern: derived z-scores written back into raw results).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from harness.artifacts import atomic_write

SCHEMA_VERSION = 1
READABLE = (1,)  # schema versions read_record upgrades to the current layout
# running: in progress (or killed without a word); ok: finished; failed: an error, recorded with NaN metrics;
# preempted: a stop signal arrived, the checkpoint is written and running the same command resumes from it.
STATUSES = ("running", "ok", "failed", "preempted")
# Read-side only (never written): a 'running' record whose process is known to be gone, see effective_status.
INTERRUPTED = "interrupted"
RECORD = "record.json"
WEIGHTS = "weights.pt"  # runtime.save_weights: the trained parts (harness.models.weights.save_trained)
# record["model"] keys of the pre-trained backbones a run was built from (each holds its cache "artifact")
PRETRAINED_PARTS = ("encoder_pretraining", "hr_encoder_pretraining", "llm_pretraining")


def write_json_atomic(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON (NaN kept as ``NaN``), written atomically: readers see the old or the new file."""
    text = json.dumps(obj, indent=2, default=str, allow_nan=True)
    with atomic_write(path) as fh:
        fh.write(text)


class Metric(TypedDict, total=False):
    """One entry of ``Record.metrics``: one number of one task at one shot count (or a NaN with its status)."""

    task: str  # caption, vqa, bench:<name>, or an lm-eval task (then suite == "textcore")
    shots: int
    metric: str  # cider, vqa_accuracy, acc, ...
    subset: str  # the slice of the task's queries scored: "all", else e.g. a VQA question type; never a task
    value: float  # NaN when not scored (see status)
    stderr: float
    n: int  # queries scored
    status: str  # ok, skipped, failed
    unit: str  # the evaluation unit that produced it (caption@0, vqa@4, text:<task>, bench:<name>@0)
    suite: str  # "textcore" for text-only tasks
    protocol: str  # hash of the eval settings that decide the number (harness.evaluate.protocol)


@dataclass
class Record:
    """A sweep point's record, ``results/runs/<cfg_hash>/record.json``: the one place its fields are defined.

    Written by ``harness.launch`` (a ``running`` record at the start, the full one at the end) and extended by
    ``harness.evaluate`` (new units, ``evaluations``); read through :func:`read_record`, which upgrades every
    readable older layout to this one, so a reader never guesses whether a field exists: a section a point never
    reached (a failed build has no ``model``) is ``None``, a list is empty.
    """

    cfg_hash: str
    status: str  # one of STATUSES
    schema_version: int = SCHEMA_VERSION
    error: str | None = None  # "<ExceptionType>: <message>" when failed or preempted
    choices: dict[str, str] = field(default_factory=dict)  # Hydra group -> option name (experiment too)
    resolution: int | None = None
    visual_tokens: int | None = None
    seed: int | None = None
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config the hash was taken over
    git: dict[str, Any] = field(default_factory=dict)  # sha, dirty
    versions: dict[str, str | None] = field(default_factory=dict)  # python and library versions
    host: str | None = None
    pid: int | None = None  # with host: a running record whose process is gone reads as interrupted
    threads: int | None = None
    machine: dict[str, Any] | None = None  # CPU model, ISA flags, torch kernels, GPU (machine_info)
    started_at: str | None = None
    finished_at: str | None = None
    step_budget: int | None = None  # training steps over all stages
    resumed_from_step: int | None = None
    metrics: list[Metric] = field(default_factory=list)
    superseded_metrics: list[Metric] = field(default_factory=list)  # replaced by a re-evaluation, never dropped
    # each evaluation pass: when, by, units, failed; the code (git), torch threads and device it ran with
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    distributed: dict[str, Any] | None = None  # strategy, world_size, grad_accum
    data: dict[str, Any] | None = None  # per source: format, files, records read, skipped by reason
    model: dict[str, Any] | None = None  # parameter counts, visual tokens, the backbones' pre-training
    world: dict[str, Any] | None = None  # name, hash, root, generation_s
    build_wall_s: float | None = None
    train: dict[str, Any] | None = None  # steps, tokens, images, losses, stages, wall time (harness.train.loop)
    weights: dict[str, Any] | None = None  # weights.pt: file, bytes, parts
    eval_wall_s: float | None = None
    wall_s: float | None = None
    divergence: dict[str, Any] | None = None  # a non-finite loss: where, and the checkpoint kept

    @classmethod
    def from_json(cls, raw: dict[str, Any], where: str | Path = "") -> Record:
        """A record as read from disk, upgraded to this layout. Schema versions other than READABLE, and keys this
        class does not know, fail with the file named (a newer harness wrote it, or the file is not a record)."""
        if raw.get("schema_version") not in READABLE:
            raise ValueError(f"{where}: record schema {raw.get('schema_version')} is not one this harness reads "
                             f"({', '.join(map(str, READABLE))})")
        unknown = sorted(set(raw) - _FIELDS)
        if unknown:
            raise ValueError(f"{where}: unknown record fields {', '.join(unknown)}")
        missing = [k for k in _REQUIRED if k not in raw]
        if missing:
            raise ValueError(f"{where}: not a record: it lacks {', '.join(missing)}")
        rec = cls(**raw)
        from harness.eval.aggregates import canonical_entry  # older TextCore entries: task/subset swapped

        rec.metrics = [canonical_entry(e) for e in rec.metrics or []]
        rec.superseded_metrics = [canonical_entry(e) for e in rec.superseded_metrics or []]
        rec.tags, rec.evaluations = list(rec.tags or []), list(rec.evaluations or [])
        rec.choices, rec.config, rec.git = rec.choices or {}, rec.config or {}, rec.git or {}
        return rec

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write(self, run_dir: Path) -> None:
        write_json_atomic(Path(run_dir) / RECORD, self.to_json())

    def eval_failures(self) -> list[str]:
        """Units the latest evaluation of this trained point could not score (empty when all were scored)."""
        return list(self.evaluations[-1].get("failed") or []) if self.evaluations else []


_FIELDS = {f.name for f in dataclasses.fields(Record)}
_REQUIRED = [f.name for f in dataclasses.fields(Record)
             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


def read_record(run_dir: Path) -> Record | None:
    """``run_dir``'s record (upgraded, see :class:`Record`), or None if it has none."""
    p = Path(run_dir) / RECORD
    if not p.is_file():
        return None
    return Record.from_json(json.loads(p.read_text()), p)


def is_done(run_dir: Path) -> bool:
    try:
        rec = read_record(run_dir)
    except (ValueError, json.JSONDecodeError):
        return False
    return rec is not None and rec.status == "ok"


def effective_status(rec: Record) -> str:
    """The record's status, except that a ``running`` record written on this host by a process that no longer
    exists reads as ``interrupted`` (killed without a word: OOM, ``kill -9``, a closed terminal). Running the same
    command resumes it from its last checkpoint. A record from another host (a SLURM node) cannot be checked from
    here and keeps ``running``."""
    status = rec.status or "running"
    if status != "running" or rec.host != socket.gethostname() or not isinstance(rec.pid, int):
        return status
    try:
        os.kill(rec.pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return INTERRUPTED
    except PermissionError:  # alive, owned by someone else
        return status
    return status


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


def metric_value(record: Record, task: str, shots: int, metric: str, subset: str = "all") -> float:
    for e in record.metrics:
        if (e["task"], e["shots"], e["metric"], e["subset"]) == (task, shots, metric, subset):
            return float(e["value"])
    return math.nan
