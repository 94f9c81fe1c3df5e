"""Experiment trackers: ``logger=[jsonl,tensorboard,mlflow,wandb]`` (any subset; sweeps/logger/ has one option each).

``jsonl`` is the run folder's ``train_log.jsonl``, written by the training loop whatever this list says (resume and
the record read it). The others each get, per point: the resolved config (flattened) and Hydra choices, the train
log line's scalars at its global step (loss, learning rate per parameter group, realised mixture, s/step,
tokens/images/samples per second), every evaluation metric as ``eval/<task>/<k>shot/<subset>/<metric>``, and the
first ``logger.samples`` rows of each predictions file as text. The ``logger`` section is not hashed: adding a tracker
never retrains a point. Only rank 0 logs.

``launch.execute`` opens the trackers once the point is validated (``open_run``), the loop calls
``Tracker.log_train`` where it writes the train log, and ``Tracker.finish`` sends the record's metrics and closes.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from harness.config.schema import ConfigError
from harness.records import Record
from harness.tracking.base import RunContext, Tracker

# name -> (module.Class of its backend, the package it needs); jsonl has no backend: the loop writes it
BACKENDS: dict[str, tuple[str | None, str | None]] = {
    "jsonl": (None, None),
    "tensorboard": ("harness.tracking.tensorboard.TensorBoardBackend", "tensorboard"),
    "mlflow": ("harness.tracking.mlflow.MlflowBackend", "mlflow"),
    "wandb": ("harness.tracking.wandb.WandbBackend", "wandb"),
}


def selected(cfg) -> list[str]:
    """The backends whose section ``cfg.logger`` holds (configs older than the logger section: none)."""
    node = cfg.get("logger") if hasattr(cfg, "get") else None
    return [n for n in BACKENDS if node is not None and node.get(n) is not None]


def check(cfg) -> None:
    """A chosen tracker whose package is missing is a one-line ``ConfigError`` before anything is built."""
    for name in selected(cfg):
        pkg = BACKENDS[name][1]
        if pkg and importlib.util.find_spec(pkg) is None:
            raise ConfigError(f"logger={name} needs the '{pkg}' package, which is not installed: pip install {pkg} "
                              f"(or pip install -e '.[tracking]' for every tracker), or drop {name} from logger=[...]")


def open_run(cfg, cfg_hash: str, run_dir: Path, record: Record) -> Tracker | None:
    """The point's trackers, opened (continuing the runs in ``run_dir/tracking.json`` when ``record`` resumes a
    checkpoint); None when only ``jsonl`` is chosen. Call on rank 0 only."""
    names = [n for n in selected(cfg) if BACKENDS[n][0]]
    if not names:
        return None
    backends = []
    for name in names:
        module, cls = BACKENDS[name][0].rsplit(".", 1)
        backends.append(getattr(importlib.import_module(module), cls)(cfg.logger[name]))
    ctx = RunContext(cfg_hash=cfg_hash, run_dir=run_dir, results_dir=Path(cfg.paths.results_dir).expanduser(),
                     group=cfg.logger.group or sweep_id(), resumed_from_step=record.resumed_from_step,
                     tags=list(record.tags))
    tracker = Tracker(backends, ctx, int(cfg.logger.samples))
    tracker.open(record.config, record.choices)
    return tracker


def sweep_id() -> str:
    """``<date>_<time>`` of the running Hydra multirun (the name of its summary folder in results/sweeps/), else
    "" (a single point, or a call outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode != RunMode.MULTIRUN:
            return ""
        d = Path(hc.sweep.dir)
        return f"{d.parent.name}_{d.name}".replace(":", "-")
    except (ValueError, ImportError):  # not running under Hydra
        return ""
