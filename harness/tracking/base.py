"""What every tracker backend gets, and the fan-out that sends it to all of them.

A :class:`Backend` writes one point's tracker run: its parameters (the resolved config, flattened, and the Hydra
choices), scalars at a global training step, a few sample predictions as text, and its end status. :class:`Tracker`
holds the backends chosen by ``logger=[...]``, turns the train log line and the record into those calls, and keeps
``<run_dir>/tracking.json`` (each backend's run id) so a resumed point continues the same tracker runs.

A tracker that breaks mid-run (a full disk, a dropped connection) prints one warning and is switched off: the point
it watches trains and records on, since its record, not the tracker, is the result. Failing to *open* a tracker is a
configuration problem and fails the point before training.
"""

from __future__ import annotations

import json
import math
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.records import Record

STATE_FILE = "tracking.json"
PREDICTIONS = "predictions"
SAMPLE_KEYS = ("type", "prompt", "prediction", "refs")  # of a predictions/*.jsonl row, in this order


@dataclass
class RunContext:
    """Where and what one tracker run is: the point's hash and folder, the sweep it belongs to."""

    cfg_hash: str
    run_dir: Path
    results_dir: Path
    group: str  # the sweep id ("" outside a multirun): TensorBoard folder, MLflow experiment, W&B group
    resumed_from_step: int | None  # global step of the checkpoint this process resumes, None = a fresh start
    tags: list[str]


class Backend(ABC):
    """One tracker. ``start`` returns what ``tracking.json`` keeps for it (its run id); ``state`` is what it kept
    last time, given only when the point resumes from a checkpoint (else a fresh tracker run starts)."""

    name = ""

    @abstractmethod
    def start(self, ctx: RunContext, state: dict | None) -> dict: ...

    @abstractmethod
    def params(self, flat: dict[str, Any], choices: dict[str, str]) -> None: ...

    @abstractmethod
    def scalars(self, values: dict[str, float], step: int) -> None: ...

    @abstractmethod
    def samples(self, name: str, rows: list[dict], step: int) -> None: ...

    @abstractmethod
    def close(self, status: str) -> None: ...


class Tracker:
    """The backends of one point on rank 0. Built by :func:`harness.tracking.open_run`."""

    def __init__(self, backends: list[Backend], ctx: RunContext, samples: int):
        self.backends = list(backends)
        self.ctx = ctx
        self.n_samples = samples
        self._last: tuple[float, dict[str, int]] | None = None  # (time, totals) at the previous train log line
        self._step = ctx.resumed_from_step or 0  # the last global step sent

    def open(self, resolved: dict, choices: dict[str, str]) -> None:
        path = self.ctx.run_dir / STATE_FILE
        old = json.loads(path.read_text()).get("backends", {}) if path.is_file() else {}
        resumed = self.ctx.resumed_from_step is not None
        state: dict[str, dict] = {}
        for b in self.backends:  # errors propagate: a tracker that cannot open is a config problem
            try:
                state[b.name] = b.start(self.ctx, old.get(b.name) if resumed else None)
            except Exception:
                self.backends = [o for o in self.backends if o.name in state]
                self._each("close", "failed")  # the ones already open end as failed, not as running forever
                raise
        self.ctx.run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"cfg_hash": self.ctx.cfg_hash, "backends": state}, indent=1) + "\n")
        if not resumed:  # parameters are written once per tracker run (MLflow refuses to change one)
            flat = flatten(resolved)
            self._each("params", flat, choices)

    def log_train(self, rec: dict, totals: dict[str, int], lr_names: list[str]) -> None:
        """One ``train_log.jsonl`` line, at global step ``totals['steps']``. Throughput is over the steps since the
        previous line; the first line of a process has no previous one and gives the averages over the run so far."""
        now = time.time()
        step = int(totals["steps"])
        if self._last is None:
            steps, dt = step, rec["s_per_step"] * step
            delta = dict(totals)
        else:
            t, before = self._last
            delta = {k: totals[k] - before.get(k, 0) for k in totals}
            steps, dt = delta["steps"], now - t
        self._last, self._step = (now, dict(totals)), step
        self._each("scalars", train_scalars(rec, lr_names, delta, steps, dt), step)

    def finish(self, record: Record) -> None:
        """Evaluation metrics and sample predictions at the last training step, then the end status. A preempted
        point only ends its tracker runs: the resumed process continues them and logs its metrics."""
        status = record.status or "failed"
        if status == "preempted":
            self._each("close", status)
            return
        # a point that failed before its end has no training summary: its NaN metrics go at the last step logged
        step = int((record.train or {}).get("steps") or self._step)
        values = {metric_name(e): _float(e.get("value")) for e in record.metrics}
        final = (record.train or {}).get("final_loss")
        if final is not None:
            values["train/final_loss"] = _float(final)
        if record.wall_s is not None:
            values["run/wall_s"] = _float(record.wall_s)
        self._each("scalars", values, step)
        # a failed point's predictions folder may hold an earlier attempt's files: samples only from a finished one
        shown = sample_predictions(self.ctx.run_dir, self.n_samples) if status == "ok" else {}
        for name, rows in with_images(shown, record).items():
            self._each("samples", name, rows, step)
        self._each("close", status)

    def _each(self, method: str, *args) -> None:
        if method == "scalars":
            args = ({scalar_key(k): v for k, v in args[0].items()}, *args[1:])
        for b in list(self.backends):
            try:
                getattr(b, method)(*args)
            except Exception as err:  # noqa: BLE001 - a tracker must not end the point it watches
                print(f"[tracking] {b.name}: {method} failed ({type(err).__name__}: {err}); this tracker is off for "
                      f"the rest of the point", flush=True)
                self.backends.remove(b)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{"train.stages.0.lr": 0.002, ...}``; lists of scalars stay one value (as JSON), lists with
    dicts (training stages) are indexed; scalars are kept as they are (None as "null")."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(node, list) and any(isinstance(v, dict) for v in node):
        out = {}
        for i, v in enumerate(node):
            out.update(flatten(v, f"{prefix}.{i}"))
        return out
    if isinstance(node, list):
        return {prefix: json.dumps(node)}
    return {prefix: "null" if node is None else node}


def scalar_key(name: str) -> str:
    """A scalar's name in the characters every backend accepts (MLflow's are the fewest: ``connector+encoder``, the
    parameter group's name, is refused)."""
    return re.sub(r"[^A-Za-z0-9_\-./ :]", "_", name)


def metric_name(e: dict) -> str:
    """``eval/<task>/<k>shot/<subset>/<metric>``: the record's metric entry as one scalar name; a TextCore task's
    ``eval/textcore/<k>shot/<lm-eval task>/<metric>`` (the names runs have always logged)."""
    from harness.eval.aggregates import text_task_of

    shots = e.get("shots")
    k = f"{shots}shot" if shots is not None else "na"
    text = text_task_of(e)
    if text is not None:
        return f"eval/textcore/{k}/{text}/{e.get('metric')}"
    return f"eval/{e.get('task')}/{k}/{e.get('subset', 'all')}/{e.get('metric')}"


def train_scalars(rec: dict, lr_names: list[str], delta: dict[str, int], steps: int, dt: float) -> dict[str, float]:
    """A train log line as scalars: loss, one learning rate per parameter group, realised mixture (cumulative and
    over the last window), padding, s/step and, over ``steps`` steps in ``dt`` seconds, tokens/images/samples per
    second (NaN where no time passed)."""
    out = {"train/loss": _float(rec["loss"]), "train/s_per_step": _float(rec["s_per_step"]),
           "train/padding_fraction": _float(rec.get("padding_fraction"))}
    lrs = rec.get("lr") or []
    names = lr_names if len(lr_names) == len(lrs) else [str(i) for i in range(len(lrs))]
    out |= {f"train/lr/{n}": _float(v) for n, v in zip(names, lrs)}
    out |= {f"train/mixture/{k}": _float(v) for k, v in (rec.get("realised_mixture") or {}).items()}
    out |= {f"train/mixture_window/{k}": _float(v) for k, v in (rec.get("realised_window") or {}).items()}
    ok = steps > 0 and dt > 0
    for key, name in (("tokens", "tokens_per_s"), ("images", "images_per_s"), ("sequences", "samples_per_s")):
        out[f"train/{name}"] = delta.get(key, 0) / dt if ok else math.nan
    return out


def sample_predictions(run_dir: Path, n: int) -> dict[str, list[dict]]:
    """The first ``n`` rows of each ``predictions/*.jsonl`` (prompt, prediction, references), by file stem."""
    out: dict[str, list[dict]] = {}
    if n <= 0:
        return out
    for path in sorted((run_dir / PREDICTIONS).glob("*.jsonl")):
        rows = []
        with open(path) as f:
            for line in f:
                if len(rows) >= n:
                    break
                if line.strip():
                    r = json.loads(line)
                    rows.append({k: r.get(k) for k in (*SAMPLE_KEYS, "task", "image")})
        if rows:
            out[path.stem] = rows
    return out


def with_images(samples: dict[str, list[dict]], record: Record) -> dict[str, list[dict]]:
    """Each row of the world's own tasks (caption, vqa) gets ``pixels``, its uint8 ``[R, R, 3]`` test image, read
    from the world folder the record names; rows of TSV benchmarks (images of their own) and points without a world
    folder stay text only."""
    root = (record.world or {}).get("root")
    split = (record.config.get("eval") or {}).get("split")
    path = Path(root) / f"images_{split}.npy" if root and split else None
    if path is None or not path.is_file():
        return samples
    import numpy as np

    from harness.eval.tasks import is_world_task  # rows whose "image" indexes the world's eval split

    images = np.load(path, mmap_mode="r")
    for rows in samples.values():
        for r in rows:
            i = r.get("image")
            if is_world_task(r.get("task")) and isinstance(i, int) and 0 <= i < len(images):
                r["pixels"] = np.asarray(images[i])
    return samples


def sample_markdown(rows: list[dict]) -> str:
    """Rows as a markdown table (TensorBoard's text plugin and MLflow's artifact view render it)."""
    def cell(v: Any) -> str:
        text = " / ".join(map(str, v[:3])) if isinstance(v, list) else str(v)
        return text.replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(SAMPLE_KEYS) + " |\n|" + "---|" * len(SAMPLE_KEYS) + "\n"
    return head + "".join("| " + " | ".join(cell(r.get(k)) for k in SAMPLE_KEYS) + " |\n" for r in rows)


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan
