"""Frozen-encoder features: computed once per (encoder weights, resolution, layer, split), cached on disk.

With a frozen encoder the features of an image never change, and in small runs encoding dominates a connector step
(docs/performance.md, "The frozen-feature cache"). The first run that needs a split encodes all of it once and
stores float16 arrays in ``<cache>/features/<key>/`` (built in a temporary folder and renamed, so a killed writer
never leaves a half-written entry that looks valid); every later sweep point with the same key memory-maps them. The
key hashes the encoder's artifact (its weights' provenance), its config, the resolution and the split, so a changed
key never reuses stale features. Encoders without a cacheable artifact, or a stage that trains the encoder, fall
back to encoding per batch.

Two kinds of entries: the low-resolution tokens ``[N_images, N_tokens, D]``, and, for mining, the high-resolution
encoder's per-stage maps flattened into one ``[N_images, sum_i C_i*H_i*W_i]`` row per image (60 KB per image for
conv_tiny at 128 px). Reading cached maps takes ~8 ms per mining step where encoding them took ~115 ms (2 cores,
batch 32, ~100 images). At real scale (ConvNeXt-L at 768 px: ~25 MB of maps per image) this cache would need a
size limit, which it does not have yet.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from harness.artifacts import build_once, content_hash
from harness.models.vlm import VLM, VisualInputs
from harness.progress import progress


def feature_key(encoder, split: str, data_hash: str, kind: str = "tokens") -> dict | None:
    """Cache key of one encoder's outputs on one split of the images whose content hash is ``data_hash`` (a corpus's
    or a world's), or None when the encoder has no cacheable identity. The key's field keeps its first name,
    ``world``, so existing cache entries stay valid."""
    meta = getattr(encoder, "meta", None) or {}
    if "artifact" not in meta:
        return None
    cfg = getattr(encoder, "cfg", None)
    key = {"artifact": Path(meta["artifact"]).name, "layer": getattr(cfg, "feature_layer", None),
           "resolution": encoder.resolution, "split": split, "world": data_hash, "dtype": "float16", "v": 1}
    return key if kind == "tokens" else key | {"kind": kind}


class _Cached:
    """One float16 array ``[N, ...]`` built by ``encode(idx) -> [n, ...]`` over all images once, then memory-mapped."""

    def __init__(self, n: int, encode: Callable[[range], np.ndarray], path: Path | None, key: dict | None,
                 chunk: int):
        self.n, self.encode, self.path, self.key, self.chunk = n, encode, path, key, chunk
        self.store: torch.Tensor | None = None
        self.from_cache = False
        self.encoded = 0
        self.encode_s = 0.0  # wall time spent encoding (0 when the features came from the cache)

    def _encode_all(self) -> np.ndarray:
        t0, out = time.time(), None
        k = self.key or {}
        bar = progress(self.n, f"features {k.get('split', 'uncached')} {k.get('kind', 'tokens')}", "img")
        for s in range(0, self.n, self.chunk):
            part = self.encode(range(s, min(s + self.chunk, self.n)))
            if out is None:
                out = np.empty((self.n, *part.shape[1:]), dtype=np.float16)
            out[s : s + len(part)] = part
            bar.update(len(part))
        bar.close()
        self.encoded += self.n
        self.encode_s += time.time() - t0
        return out

    def rows(self, idx: list[int]) -> torch.Tensor:
        if self.store is None:
            if self.path is None:
                self.store = torch.from_numpy(self._encode_all())
            else:

                def build(tmp: Path) -> dict:
                    np.save(tmp / "features.npy", self._encode_all())
                    return {"key": self.key, "images": self.n}

                build_once(self.path, build)
                # Read from the cache = this process encoded nothing: also true when a parallel job built the entry
                # while this one waited on its lock.
                self.from_cache = self.encoded == 0
                with warnings.catch_warnings():  # a read-only memory map: indexing copies rows out, nothing writes
                    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                    self.store = torch.from_numpy(np.load(self.path / "features.npy", mmap_mode="r"))
        return self.store[torch.as_tensor(idx)]


class FeatureBank:
    """Visual inputs of a split's images by index: cached when the encoders are frozen, fresh otherwise."""

    def __init__(self, vlm: VLM, images: np.ndarray, cache_dir: Path | None = None, key: dict | None = None,
                 hr_key: dict | None = None, chunk: int = 256, online: bool = False):
        self.vlm = vlm
        self.images = images  # [N, H, W, 3] uint8 (memory-mapped)
        # online: encode every batch's images afresh, as peer harnesses do (runtime.feature_cache=false); the
        # baseline of `python -m harness.bench cache`, and the path for encoders without a cacheable identity.
        self.online = online
        self.online_encoded, self.online_s = 0, 0.0
        root = None if cache_dir is None else Path(cache_dir) / "features"
        self.tokens = _Cached(len(images), self._encode_tokens, root / content_hash(key) if root and key else None,
                              key, chunk)
        self.maps = None
        if vlm.hr_encoder is not None:
            spec = vlm.hr_encoder.map_spec
            self._map_shapes = [(c, h, w) for c, (h, w) in zip(spec.channels, spec.sizes, strict=True)]
            self.maps = _Cached(len(images), self._encode_maps,
                                root / content_hash(hr_key) if root and hr_key else None, hr_key, chunk)

    @property
    def path(self) -> Path | None:
        return self.tokens.path

    @property
    def encoded(self) -> int:
        return self.tokens.encoded + (self.maps.encoded if self.maps else 0) + self.online_encoded

    @property
    def encode_s(self) -> float:
        return self.tokens.encode_s + (self.maps.encode_s if self.maps else 0.0) + self.online_s

    @property
    def from_cache(self) -> bool:
        return not self.online and self.tokens.from_cache and (self.maps is None or self.maps.from_cache)

    def _frozen(self, module) -> bool:
        return not any(p.requires_grad for p in module.parameters())

    def _pixels(self, idx) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.images[np.asarray(idx)]))

    @torch.no_grad()
    def _encode_tokens(self, idx) -> np.ndarray:
        return self.vlm.encoder.encode(self._pixels(idx)).to(torch.float16).cpu().numpy()

    @torch.no_grad()
    def _encode_maps(self, idx) -> np.ndarray:
        maps = self.vlm.hr_encoder.encode_maps(self._pixels(idx))
        return torch.cat([m.flatten(1) for m in maps], dim=1).to(torch.float16).cpu().numpy()

    def _split_maps(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """``[n, sum C*H*W] -> [[n, C_i, H_i, W_i], ...]``: the inverse of the flattening in ``_encode_maps``."""
        sizes = [math.prod(s) for s in self._map_shapes]
        return [p.reshape(len(flat), *s) for p, s in zip(flat.split(sizes, dim=1), self._map_shapes, strict=True)]

    def get(self, idx: list[int]) -> VisualInputs:
        if not idx:
            return VisualInputs(torch.empty(0))
        if not self._frozen(self.vlm.encoder):  # a stage that trains the encoder needs fresh features with gradients
            return self.vlm.encode_images(self._pixels(idx))
        # An encoder trained by an earlier stage is frozen now but is not the pre-trained one the cache holds.
        if self.online or "encoder" in getattr(self.vlm, "trained_parts", ()):
            t0 = time.time()
            with torch.no_grad():
                vis = self.vlm.encode_images(self._pixels(idx))
            self.online_encoded += len(idx) * (2 if self.maps is not None else 1)
            self.online_s += time.time() - t0
            return vis
        dev = next(self.vlm.connector.parameters()).device
        feats = self.tokens.rows(idx).to(dev, torch.float32)
        hr = None
        if self.maps is not None:
            hr = self._split_maps(self.maps.rows(idx).to(dev, torch.float32))
        return VisualInputs(feats, hr)


def bank_for(vlm: VLM, data, split: str, cache_dir: Path | None, online: bool = False) -> FeatureBank:
    """The feature bank of one split of ``data`` (a ``Corpus`` for training, a ``World`` for evaluation: anything
    with ``images(split)`` and a content ``hash``), disk-cached when the encoders have a cacheable identity
    (``online``: no cache, every batch encoded afresh)."""
    if online:
        return FeatureBank(vlm, data.images(split), online=True)
    key = feature_key(vlm.encoder, split, data.hash) if cache_dir is not None else None
    hr_key = None
    if vlm.hr_encoder is not None and cache_dir is not None:
        hr_key = feature_key(vlm.hr_encoder, split, data.hash, kind="maps")
    return FeatureBank(vlm, data.images(split), cache_dir, key, hr_key)
