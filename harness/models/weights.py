"""The trained weights of a VLM: which parts differ from a fresh build, and the file a finished run keeps.

A fresh build (``harness.models.build.build_vlm``) gets the frozen backbones back from the content-addressed cache,
so only the parts training changed are stored: the connector always (small, randomly initialised, never cached) and
every part a stage trains. Training checkpoints (``harness.train.checkpoint``) store the same parts mid-run;
``weights.pt`` (``runtime.save_weights``) stores them once the run is done, for ``harness.models.load.load_vlm`` and
``harness.evaluate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from harness.artifacts import atomic_write
from harness.records import WEIGHTS


def save_atomic(path: Path, obj: dict[str, Any]) -> None:
    """``torch.save`` to a hidden sibling, fsync, rename (``atomic_write``): a kill mid-write leaves the previous
    file whole."""
    with atomic_write(path, "wb", fsync=True) as fh:
        torch.save(obj, fh)


def trained_modules(vlm, stages, upto: int) -> dict[str, torch.nn.Module]:
    """The modules whose weights differ from a fresh build: the connector, and every part a stage up to ``upto``
    (inclusive) trains."""
    parts = {"connector"} | {p for s in list(stages)[: upto + 1] for p in s.trainable}
    modules = {"encoder": vlm.encoder, "connector": vlm.connector, "llm": vlm.lm}
    return {p: modules[p] for p in sorted(parts)}


def weights(vlm, stages, upto: int) -> dict[str, dict[str, torch.Tensor]]:
    """Full CPU copies of the trained modules' weights (gathered from the shards under FSDP: a collective)."""
    from harness.train.distributed import full_state

    return {p: full_state(m) for p, m in trained_modules(vlm, stages, upto).items()}


def load_weights(vlm, stages, upto: int, saved: dict[str, dict[str, torch.Tensor]]) -> None:
    for part, module in trained_modules(vlm, stages, upto).items():
        module.load_state_dict(saved[part])


def restore_finished(vlm, stages, saved: dict[str, dict[str, torch.Tensor]]):
    """A fresh build given a finished run's weights, left as evaluation needs it: every parameter frozen and
    ``trained_parts`` naming what training changed. Frozen, because the feature bank reads its float16 cache only
    for a frozen, untrained encoder; a fresh build requires grad everywhere, which made an evaluation from
    ``weights.pt`` (or of an FSDP run) encode every image afresh in float32 and decode near ties differently from
    the run's own evaluation (8-shot CIDEr 0.5815 against 0.5821 on one table1 point). Returns ``vlm`` in eval mode."""
    last = len(stages) - 1
    load_weights(vlm, stages, last, saved)
    vlm.requires_grad_(False)
    vlm.trained_parts = set(trained_modules(vlm, stages, last))
    return vlm.eval()


# A finished run's trained weights (runtime.save_weights): what harness.models.load.load_vlm needs besides the
# record and the cache. Only the trained parts, as in a checkpoint: frozen backbones come from the cache, so a run
# that trains only the connector keeps a file of kilobytes, not the encoder's and the LLM's megabytes.
WEIGHTS_FORMAT = 1


def save_trained(run_dir: Path, vlm, stages, cfg_hash: str) -> tuple[Path, list[str]]:
    """Write ``<run_dir>/weights.pt``: the weights of every part any stage trained, plus the connector. Returns the
    file and the parts it holds."""
    last = len(list(stages)) - 1
    parts = weights(vlm, stages, last)
    path = Path(run_dir) / WEIGHTS
    save_atomic(path, {"format": WEIGHTS_FORMAT, "cfg_hash": cfg_hash, "parts": sorted(parts), "weights": parts})
    return path, sorted(parts)


def read_trained(path: Path, cfg_hash: str) -> dict[str, dict[str, torch.Tensor]]:
    """The weights :func:`save_trained` wrote for the run ``cfg_hash`` (tensors on CPU; no pickled code)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if (state.get("format"), state.get("cfg_hash")) != (WEIGHTS_FORMAT, cfg_hash):
        raise ValueError(
            f"{path} has format {state.get('format')} / config {state.get('cfg_hash')}, expected "
            f"{WEIGHTS_FORMAT} / {cfg_hash}; rerun the point with runtime.save_weights=true runtime.rerun=true"
        )
    return state["weights"]
