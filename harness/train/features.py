"""Per-run memo of frozen-encoder features, filled lazily by image index.

With a frozen encoder the features of an image never change during a run, and a connector step is far cheaper than
re-encoding (shared/docs/embedded_world.md: encoding dominates small runs). Each image is encoded once, the first
time a batch needs it, and kept in memory in float16 (half the memory; the connector sees float32). High-resolution
maps for mining are recomputed per batch: at stride 4 they are ~50x larger than the ViT tokens.
"""

from __future__ import annotations

import numpy as np
import torch

from harness.models.vlm import VLM, VisualInputs


class FeatureBank:
    def __init__(self, vlm: VLM, images: np.ndarray, chunk: int = 256):
        self.vlm = vlm
        self.images = images  # [N, H, W, 3] uint8 (memory-mapped)
        self.chunk = chunk
        self.store: torch.Tensor | None = None
        self.filled = np.zeros(len(images), dtype=bool)
        self.encoded = 0  # images actually run through the encoder (for the record)

    @property
    def frozen(self) -> bool:
        return not any(p.requires_grad for p in self.vlm.encoder.parameters())

    def _pixels(self, idx: list[int]) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.images[np.asarray(idx)]))

    @torch.no_grad()
    def _fill(self, idx: np.ndarray) -> None:
        todo = np.unique(idx[~self.filled[idx]])
        for s in range(0, len(todo), self.chunk):
            part = todo[s : s + self.chunk].tolist()
            feats = self.vlm.encoder.encode(self._pixels(part))
            if self.store is None:
                self.store = torch.empty((len(self.images), *feats.shape[1:]), dtype=torch.float16, device=feats.device)
            self.store[part] = feats.to(torch.float16)
            self.encoded += len(part)
        self.filled[todo] = True

    def get(self, idx: list[int]) -> VisualInputs:
        if not idx:
            return VisualInputs(torch.empty(0))
        if not self.frozen:  # a stage that trains the encoder needs fresh features with gradients
            return self.vlm.encode_images(self._pixels(idx))
        arr = np.asarray(idx)
        self._fill(arr)
        feats = self.store[torch.from_numpy(arr).to(self.store.device)].float()
        hr = None
        if self.vlm.hr_encoder is not None:
            with torch.no_grad():
                hr = self.vlm.hr_encoder.encode_maps(self._pixels(idx))
        return VisualInputs(feats, hr)
