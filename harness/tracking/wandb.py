"""Weights & Biases: one run per point, grouped by sweep id, offline by default.

Offline needs no account or network: the run lands in ``<dir>/wandb/offline-run-<time>-<id>/`` and
``wandb sync <that folder>`` uploads it later. A resumed point calls ``wandb.init`` with the stored id and
``resume="allow"``: offline, that is a second folder with the same id, which ``wandb sync`` merges into one run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.tracking.base import SAMPLE_KEYS, Backend, RunContext


class WandbBackend(Backend):
    name = "wandb"

    def __init__(self, cfg):
        self.cfg = cfg

    def start(self, ctx: RunContext, state: dict | None) -> dict:
        import wandb

        c = self.cfg
        root = c.dir or str(ctx.results_dir)
        Path(root).expanduser().mkdir(parents=True, exist_ok=True)  # W&B falls back to a temp dir if it is missing
        self.run = wandb.init(
            project=c.project, entity=c.entity or None, dir=str(Path(root).expanduser()),
            id=state["id"] if state else None, name=ctx.cfg_hash, group=ctx.group or None,
            tags=list(ctx.tags) or None, mode=c.mode, resume="allow",
            settings=wandb.Settings(silent=True, console="off"),
        )
        return {"id": self.run.id, "project": c.project, "mode": c.mode}

    def params(self, flat: dict[str, Any], choices: dict[str, str]) -> None:
        self.run.config.update(flat | {f"choice.{k}": v for k, v in choices.items()}, allow_val_change=True)

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def samples(self, name: str, rows: list[dict], step: int) -> None:
        import wandb

        data = [[" / ".join(map(str, r[k][:3])) if isinstance(r[k], list) else r[k] for k in SAMPLE_KEYS] for r in rows]
        out: dict[str, Any] = {f"samples/{name}": wandb.Table(columns=list(SAMPLE_KEYS), data=data)}
        # images beside the table, captioned: W&B 0.31 writes an image inside an offline table as the bare word "Image"
        images = [wandb.Image(r["pixels"], caption=f"{r['prompt']} -> {r['prediction']}") for r in rows
                  if r.get("pixels") is not None]
        if images:
            out[f"sample_images/{name}"] = images
        self.run.log(out, step=step)

    def close(self, status: str) -> None:
        self.run.summary["status"] = status
        self.run.finish(exit_code=0 if status == "ok" else 1)
