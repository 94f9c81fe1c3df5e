"""Frozen-encoder features: computed once per (encoder weights, resolution, layer, split), cached on disk.

With a frozen encoder the features of an image never change, and in small runs encoding dominates a connector step
(shared/docs/embedded_world.md). The first run that needs a split encodes all of it once and stores float16
``[N_images, N_tokens, D]`` in ``<cache>/features/<key>/`` (built in a temporary folder and renamed, so a killed
writer never leaves a half-written entry that looks valid); every later sweep point with the same key memory-maps
it. The key hashes the encoder's artifact (its weights' provenance), its config, the resolution and the split, so a
changed key never reuses stale features. Encoders without a cacheable artifact, or a stage that trains the encoder,
fall back to encoding per batch. High-resolution maps for mining are recomputed per batch: at stride 4 they are
~50x larger than the ViT tokens.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from harness.artifacts import build_once, content_hash
from harness.models.vlm import VLM, VisualInputs


def feature_key(encoder, split: str, world_hash: str) -> dict | None:
    meta = getattr(encoder, "meta", None) or {}
    if "artifact" not in meta:
        return None
    cfg = getattr(encoder, "cfg", None)
    return {"artifact": Path(meta["artifact"]).name, "layer": getattr(cfg, "feature_layer", None),
            "resolution": encoder.resolution, "split": split, "world": world_hash, "dtype": "float16", "v": 1}


class FeatureBank:
    def __init__(self, vlm: VLM, images: np.ndarray, cache_dir: Path | None = None, key: dict | None = None,
                 chunk: int = 256):
        self.vlm = vlm
        self.images = images  # [N, H, W, 3] uint8 (memory-mapped)
        self.chunk = chunk
        self.store: torch.Tensor | None = None
        self.from_cache = False
        self.encoded = 0  # images run through the encoder by this bank (for the record)
        self.path = None if cache_dir is None or key is None else Path(cache_dir) / "features" / content_hash(key)
        self.key = key

    @property
    def frozen(self) -> bool:
        return not any(p.requires_grad for p in self.vlm.encoder.parameters())

    def _pixels(self, idx) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.images[np.asarray(idx)]))

    @torch.no_grad()
    def _encode_all(self) -> np.ndarray:
        out = None
        for s in range(0, len(self.images), self.chunk):
            feats = self.vlm.encoder.encode(self._pixels(range(s, min(s + self.chunk, len(self.images)))))
            if out is None:
                out = np.empty((len(self.images), *feats.shape[1:]), dtype=np.float16)
            out[s : s + len(feats)] = feats.to(torch.float16).cpu().numpy()
        self.encoded += len(self.images)
        return out

    def _load(self) -> None:
        if self.path is None:
            self.store = torch.from_numpy(self._encode_all())
            return
        existed = (self.path / "DONE").is_file()

        def build(tmp: Path) -> dict:
            np.save(tmp / "features.npy", self._encode_all())
            return {"key": self.key, "images": len(self.images)}

        build_once(self.path, build)
        self.from_cache = existed
        self.store = torch.from_numpy(np.load(self.path / "features.npy", mmap_mode="r"))

    def get(self, idx: list[int]) -> VisualInputs:
        if not idx:
            return VisualInputs(torch.empty(0))
        if not self.frozen:  # a stage that trains the encoder needs fresh features with gradients
            return self.vlm.encode_images(self._pixels(idx))
        if self.store is None:
            self._load()
        dev = next(self.vlm.connector.parameters()).device
        feats = self.store[torch.as_tensor(idx)].to(dev, torch.float32)
        hr = None
        if self.vlm.hr_encoder is not None:
            with torch.no_grad():
                hr = self.vlm.hr_encoder.encode_maps(self._pixels(idx))
        return VisualInputs(feats, hr)


def bank_for(vlm: VLM, world, split: str, cache_dir: Path | None) -> FeatureBank:
    """The feature bank of one split, disk-cached when the encoder has a cacheable identity."""
    key = feature_key(vlm.encoder, split, world.hash) if cache_dir is not None else None
    return FeatureBank(vlm, world.images(split), cache_dir, key)
