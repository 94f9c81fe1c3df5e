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
batch 32, ~100 images). At real scale a split's maps outgrow memory and disk (ConvNeXt-L: 6.3 MiB per image at 384
px, 25 MiB at 768 px; 50 GiB for the world's 8000 training images at 384 px), so a store larger than
``runtime.feature_cache_gb`` is not built: that split is encoded per batch, only the images a batch uses, with the
features rounded to float16 as a store would hold them. A store is written into its file as it is encoded, never
held whole in memory.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from harness.artifacts import build_once, content_hash
from harness.models.vlm import VLM, VisualInputs
from harness.progress import HEARTBEAT_S, progress

DEFAULT_MAX_GB = 16.0  # runtime.feature_cache_gb's default
AUTO_CHUNK_MAX, AUTO_CHUNK_BYTES = 256, 64 * 2**20  # runtime.feature_chunk=0 (FeatureBank.auto_chunk)


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

    def _encode_all(self, alloc: Callable[[tuple], np.ndarray] | None = None) -> np.ndarray:
        """Every image's features, encoded ``chunk`` images at a time into ``alloc(shape)`` (default: memory; the
        cache passes a memory-mapped file, so a large store never sits in memory whole)."""
        t0, out = time.time(), None
        alloc = alloc or (lambda shape: np.empty(shape, dtype=np.float16))
        k = self.key or {}
        from harness.train.checkpoint import check_stop

        what = f"{k.get('split', 'uncached')} {k.get('kind', 'tokens')}"
        bar, said = progress(self.n, f"features {what}", "img"), t0
        for s in range(0, self.n, self.chunk):
            check_stop(f"encoding the {what} features ({s}/{self.n} images)")
            if s and not isinstance(bar, tqdm) and time.time() - said > HEARTBEAT_S:  # a log file has no bar
                rate = s / (time.time() - t0)
                print(f"[features] encoding {what}: {s}/{self.n} images ({rate:.1f}/s, about "
                      f"{(self.n - s) / rate / 60:.0f} min left)", flush=True)
                said = time.time()
            part = self.encode(range(s, min(s + self.chunk, self.n)))
            if out is None:
                out = alloc((self.n, *part.shape[1:]))
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
                    out = self._encode_all(lambda shape: np.lib.format.open_memmap(
                        tmp / "features.npy", mode="w+", dtype=np.float16, shape=shape))
                    out.flush()
                    del out  # closes the map: the file is complete before build_once renames the folder
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
                 hr_key: dict | None = None, chunk: int = 0, online: bool = False,
                 max_gb: float | None = DEFAULT_MAX_GB, name: str = "", rounded: bool = False):
        self.vlm = vlm
        self.images = images  # [N, H, W, 3] uint8 (memory-mapped)
        # online: encode every batch's images afresh, as peer harnesses do (runtime.feature_cache=false); the
        # baseline of `python -m harness.bench cache`, and the path for encoders without a cacheable identity.
        self.online = online
        self.online_encoded, self.online_s = 0, 0.0
        # Images per encoder forward: a store is built in chunks of at most 256 from image 0 (its numbers were
        # always computed so); a batch encoded online is split only where its features pass 64 MiB.
        self.online_chunk = self.batch_chunk(vlm, chunk)
        self.chunk = chunk = chunk or self.auto_chunk(vlm)
        # A store over max_gb is not built (module docstring): encoded per batch, rounded as the store would be.
        self.store_bytes = len(images) * self.bytes_per_image(vlm)
        self.too_big = not online and max_gb is not None and self.store_bytes > max_gb * 2**30
        if self.too_big:
            print(f"[features] {name or 'split'}: {len(images)} images x {self.bytes_per_image(vlm) / 2**20:.2f} MiB "
                  f"= {self.store_bytes / 2**30:.1f} GiB of features > runtime.feature_cache_gb={max_gb:g}: not "
                  "stored; each batch's images are encoded as it needs them", flush=True)
            self.online = True
        # float16-rounded as a store holds them: a split too big to store, or one with nowhere to store it
        self.rounded = rounded or self.too_big
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

    @staticmethod
    def bytes_per_image(vlm: VLM) -> int:
        """float16 bytes of one image's stored features: its tokens ``N x D``, plus the maps ``sum C*H*W`` of a
        high-resolution encoder (mining)."""
        spec = vlm.encoder.spec
        n = spec.num_patches * spec.dim
        if vlm.hr_encoder is not None:
            ms = vlm.hr_encoder.map_spec
            n += sum(c * h * w for c, (h, w) in zip(ms.channels, ms.sizes, strict=True))
        return 2 * n

    @classmethod
    def batch_chunk(cls, vlm: VLM, chunk: int = 0) -> int:
        """Images per encoder or connector call on a batch (not a store): ``runtime.feature_chunk``, else auto
        uncapped, so an embedded batch is never split."""
        return chunk or cls.auto_chunk(vlm, cap=None)

    @classmethod
    def auto_chunk(cls, vlm: VLM, cap: int | None = AUTO_CHUNK_MAX) -> int:
        """``runtime.feature_chunk=0``: images per encoder forward such that their float16 features take 64 MiB (at
        most ``cap``). A proxy for the forward's working set, which grows with the features' size. It is 256 for a
        store of every embedded encoder, as before the setting existed, and over a thousand uncapped, so their
        evaluation batches are never split: some connectors' bits depend on the batch size (c_abstractor's differ
        between batches of 5 and 64 images), and a split would move shipped scores."""
        n = max(1, AUTO_CHUNK_BYTES // cls.bytes_per_image(vlm))
        return n if cap is None else min(cap, n)

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
                step = self.online_chunk  # an 8-shot batch holds hundreds of images
                parts = [self.vlm.encode_images(self._pixels(idx[s : s + step])) for s in range(0, len(idx), step)]
            self.online_encoded += len(idx) * (2 if self.maps is not None else 1)
            self.online_s += time.time() - t0
            vis = parts[0] if len(parts) == 1 else VisualInputs(
                torch.cat([v.feats for v in parts]),
                None if parts[0].hr is None else [torch.cat(h) for h in zip(*(v.hr for v in parts), strict=True)])
            return as_stored(vis) if self.rounded else vis  # the numbers a store would have given
        dev = next(self.vlm.connector.parameters()).device
        feats = self.tokens.rows(idx).to(dev, torch.float32)
        hr = None
        if self.maps is not None:
            hr = self._split_maps(self.maps.rows(idx).to(dev, torch.float32))
        return VisualInputs(feats, hr)


def as_stored(vis: VisualInputs) -> VisualInputs:
    """``vis`` rounded to float16 and back, as a store holds features: an image encoded on demand (a split too large
    to store, a TSV benchmark's image) scores as the same image read from a store."""
    return VisualInputs(vis.feats.to(torch.float16).to(torch.float32),
                        None if vis.hr is None else [h.to(torch.float16).to(torch.float32) for h in vis.hr])


def bank_options(runtime) -> dict:
    """``bank_for``'s size options from a run's ``runtime`` config (a dict or DictConfig; defaults where a record
    written before the settings existed lacks them)."""
    get = runtime.get if hasattr(runtime, "get") else lambda k, d: getattr(runtime, k, d)
    return {"max_gb": float(get("feature_cache_gb", DEFAULT_MAX_GB)), "chunk": int(get("feature_chunk", 0))}


def bank_for(vlm: VLM, data, split: str, cache_dir: Path | None, online: bool = False,
             max_gb: float | None = DEFAULT_MAX_GB, chunk: int = 0, first: int | None = None) -> FeatureBank:
    """The feature bank of one split of ``data`` (a ``Corpus`` for training, a ``World`` for evaluation: anything
    with ``images(split)`` and a content ``hash``), disk-cached when the encoders have a cacheable identity
    (``online``: no cache, every batch encoded afresh; ``max_gb``: the largest store, runtime.feature_cache_gb;
    ``chunk``: images per encoder forward, runtime.feature_chunk, 0 = auto; ``cache_dir`` None: nothing stored, each
    batch's images encoded and rounded as a store would hold them). ``first``: only the split's first
    images (an evaluation scores the first ``eval.max_images``), a store of their own; the chunks start at image 0
    either way, and the embedded encoders give the same bits at any chunk length, so the numbers are the whole
    split's."""
    images = data.images(split)
    if first is not None and first < len(images):
        images = images[:first]
    else:
        first = None
    if online:
        return FeatureBank(vlm, images, online=True, chunk=chunk)
    if cache_dir is None:  # nowhere to store it (an evaluation of a point trained with runtime.feature_cache=false):
        # encode the images each batch uses, rounded as a store would hold them, not the whole split in memory first
        # (8000 world images for twelve 2-shot queries)
        return FeatureBank(vlm, images, online=True, chunk=chunk, rounded=True)

    def keyed(encoder, kind: str = "tokens") -> dict | None:
        key = feature_key(encoder, split, data.hash, kind) if cache_dir is not None and encoder is not None else None
        return key if key is None or first is None else key | {"images": first}

    key, hr_key = keyed(vlm.encoder), keyed(vlm.hr_encoder, "maps")
    return FeatureBank(vlm, images, cache_dir, key, hr_key, chunk, max_gb=max_gb,
                       name=split if first is None else f"{split}[:{first}]")
