"""TensorBoard: event files under ``<dir>/<sweep id or runs>/<cfg hash>`` (torch's SummaryWriter).

A resumed point writes a new event file in the same folder, opened with ``purge_step`` at its first step: steps the
killed process logged after its last checkpoint (and that the resumed one logs again) are dropped by TensorBoard's
reader, so every step shows once, as in ``train_log.jsonl``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from harness.tracking.base import Backend, RunContext, sample_markdown


class TensorBoardBackend(Backend):
    name = "tensorboard"

    def __init__(self, cfg):
        self.dir = cfg.dir

    def start(self, ctx: RunContext, state: dict | None) -> dict:
        from torch.utils.tensorboard import SummaryWriter

        root = Path(self.dir).expanduser() if self.dir else ctx.results_dir / "tensorboard"
        log_dir = Path(state["log_dir"]) if state else root / (ctx.group or "runs") / ctx.cfg_hash
        first = (ctx.resumed_from_step or 0) + 1
        self.writer = SummaryWriter(str(log_dir), purge_step=first if state else None)
        return {"log_dir": str(log_dir)}

    def params(self, flat: dict[str, Any], choices: dict[str, str]) -> None:
        self.writer.add_text("config", _code(flat), 0)
        self.writer.add_text("choices", _code(choices), 0)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for k, v in values.items():
            if not math.isnan(v):  # TensorBoard draws NaN as a gap anyway; the record keeps the NaN and its status
                self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def samples(self, name: str, rows: list[dict], step: int) -> None:
        self.writer.add_text(f"samples/{name}", sample_markdown(rows), step)
        for i, r in enumerate(rows):
            if r.get("pixels") is not None:
                self.writer.add_image(f"samples/{name}/{i}", r["pixels"], step, dataformats="HWC")

    def close(self, status: str) -> None:
        self.writer.add_text("status", status, 0)
        self.writer.close()


def _code(d: dict) -> str:
    """Four-space indented (a markdown code block, so TensorBoard shows it verbatim)."""
    return "\n".join("    " + line for line in json.dumps(d, indent=1, default=str).splitlines())
