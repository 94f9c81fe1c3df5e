"""One pre-trained tiny backbone, cached content-addressed: trained on a cold cache, loaded from it afterwards."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from harness.artifacts import build_once, read_meta


def pretrained_once(path: Path, weights: str, cfg, make_model: Callable[[], torch.nn.Module],
                    pretrain: Callable[[torch.nn.Module], dict[str, Any]]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``(model, meta)``: ``make_model()`` with the weights cached in ``path/weights``. On a cold cache a fresh
    ``make_model()`` is trained by ``pretrain(model)`` (which returns its metadata) and its state dict saved, with the
    metadata and ``asdict(cfg)`` in the artifact's ``meta.json`` (``harness.artifacts.build_once``). ``meta`` adds the
    artifact's folder (``artifact``) to that metadata."""

    def build(tmp: Path) -> dict:
        # The weights must follow from the key alone, so the architecture's initialisation is seeded too (pretrain
        # seeds only its own loop), in a forked RNG that leaves the caller's stream as it was. Unseeded, the initial
        # weights came from whatever the building job had drawn before (its sweep seed, what it built first): two
        # fresh caches of one config differed, and with them mining's scores (key version 2 since).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.pretrain_seed)
            model = make_model()
            meta = pretrain(model)
        torch.save(model.state_dict(), tmp / weights)
        return meta | {"cfg": asdict(cfg)}

    build_once(path, build)
    with torch.random.fork_rng(devices=[]):  # its initial weights are overwritten: the caller's stream stays as it was
        model = make_model()
    model.load_state_dict(torch.load(path / weights, map_location="cpu", weights_only=True))
    return model, read_meta(path) | {"artifact": str(path)}
