"""Generation of a whole world and its content-addressed on-disk cache.

A world is a pure function of :class:`WorldCfg`: the folder name carries a hash of the config, so a cached world can
never disagree with the config that asked for it (bump ``version`` whenever the generation code changes its output).
Every image, document and passage draws from its own generator seeded by (seed, split, stream, index), so the output
does not depend on generation order and is byte-identical across runs.

Parallel sweep jobs may ask for the same world at once. Each builds into a private temporary folder, writes ``DONE``
last and renames the folder into place; the rename is atomic, so a folder under the final name is always complete.
A loser of the race deletes its copy and uses the winner's. A final-name folder without ``DONE`` (copied by hand, or
left by an older tool) is never read: it is moved aside and rebuilt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.format import open_memmap

from harness.artifacts import file_lock
from harness.progress import progress
from harness.world.language import QUESTION_TYPES, describe, make_docs, qa_line, text_passage
from harness.world.render import render_scene
from harness.world.scene import Scene, sample_scene

SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_IDS = {s: i for i, s in enumerate(SPLITS)}
# Independent random streams per item; appending a stream never changes the others.
_STREAMS = {"scene": 0, "render": 1, "captions": 2, "qa": 3, "doc": 4, "text": 5}
MIN_EVAL_DOCS, MIN_EVAL_TEXTS = 50, 200


class StaleWorldError(RuntimeError):
    """A cached world whose content no longer matches what the code generates for its config."""


@dataclass
class WorldCfg:
    name: str = "shapes"
    # Bump when generation code changes output, so caches never go stale. v2: doc themes = question type. v3: the
    # pattern and dot controls, the ASCII tokenizer's world captions mention them.
    version: int = 3
    seed: int = 0
    native_resolution: int = 128
    n_train: int = 8000
    n_val: int = 500
    n_test: int = 1000
    min_objects: int = 1
    max_objects: int = 4
    glyph: bool = True  # the small digit in the bottom-right corner
    pattern: bool = True  # the resolution control: a fine pattern legible at 64 px and averaged out at 32 px
    dot: bool = True  # the visual-token control: a dot whose column 2x2 pooled tokens cannot tell apart
    dot_radius: float = 0.1  # fraction of the image side (< 1/8 - 1/64, so the dot never leaves its column band)
    pair: bool = False  # a second visual-token control (opt-in): do two small dots share a cell of the 4x4 grid?
    split: bool = False  # a third (opt-in): is the black dot split between two cells of the 4x4 grid?
    glyph_jitter: bool = True  # sub-pixel position jitter of the glyph
    ink_jitter: bool = True  # random ink darkness of the glyph
    pixel_noise: float = 12.0  # +- uniform pixel noise amplitude (0..255 scale)
    captions_per_image: int = 5  # reference captions (different phrasings) per image
    n_docs: int = 3000  # interleaved documents for train; val/test scale with split size, at least 50
    doc_min_images: int = 2
    doc_max_images: int = 4
    n_texts: int = 6000  # text-only passages for train; val/test scale with split size, at least 200


def _coerce(cfg: WorldCfg | Mapping[str, Any]) -> WorldCfg:
    """Accept a WorldCfg or a flat mapping (e.g. a Hydra DictConfig) and cast each field to its default's type, so
    ``pixel_noise=12`` and ``pixel_noise=12.0`` hash the same. Unknown keys raise TypeError."""
    c = cfg if isinstance(cfg, WorldCfg) else WorldCfg(**{str(k): cfg[k] for k in cfg})
    values = {f.name: type(f.default)(getattr(c, f.name)) for f in dataclasses.fields(WorldCfg)}
    if c.max_objects < c.min_objects or not 1 <= c.doc_min_images <= c.doc_max_images:
        raise ValueError(f"bad object or doc-image ranges in {c}")
    if c.split and c.dot:
        raise ValueError("world.split=true moves the black dot onto cell edges, so it replaces the column dot: add "
                         "world.dot=false")
    if c.split and c.pair:
        raise ValueError("world.split=true and world.pair=true would draw the split dot over the pair's dots: switch "
                         "on one of them")
    return WorldCfg(**values)


# Fields added after worlds were cached, left out of the hash at the value those worlds had, so their keys stand.
ADDED_LATER: dict[str, Any] = {"pair": False, "split": False}


def world_hash(cfg: WorldCfg) -> str:
    """First 12 hex digits of sha1 over the canonical JSON of the config, less ADDED_LATER fields at their old value."""
    fields = {k: v for k, v in dataclasses.asdict(_coerce(cfg)).items()
              if not (k in ADDED_LATER and ADDED_LATER[k] == v)}  # fmt: skip
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(canonical.encode()).hexdigest()[:12]


def world_dir(cfg: WorldCfg | Mapping[str, Any], cache_root: str | Path) -> Path:
    """Where ``cfg``'s world lives under ``cache_root`` (whether or not it has been built)."""
    c = _coerce(cfg)
    return Path(cache_root) / "world" / f"{c.name}-{world_hash(c)}"


def split_sizes(cfg: WorldCfg) -> dict[str, dict[str, int]]:
    """Images, documents and text passages per split; eval splits scale docs/texts by their share of images."""
    out = {}
    for split, n in zip(SPLITS, (cfg.n_train, cfg.n_val, cfg.n_test), strict=True):
        if split == "train":
            out[split] = {"images": n, "docs": cfg.n_docs, "texts": cfg.n_texts}
        else:
            ratio = n / max(cfg.n_train, 1)
            out[split] = {
                "images": n,
                "docs": max(MIN_EVAL_DOCS, round(cfg.n_docs * ratio)),
                "texts": max(MIN_EVAL_TEXTS, round(cfg.n_texts * ratio)),
            }
    return out


def _rng(cfg: WorldCfg, split: str, stream: str, index: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, _SPLIT_IDS[split], _STREAMS[stream], index])


def _write_jsonl(path: Path, rows: list) -> None:
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def _read_jsonl(path: Path) -> list:
    with open(path) as f:
        return [json.loads(line) for line in f]


def _item(cfg: WorldCfg, split: str, i: int) -> tuple[np.ndarray, dict]:
    """Image ``i`` of ``split`` and its texts (captions, dense caption, questions): a pure function of the config."""
    scene = sample_scene(
        _rng(cfg, split, "scene", i), cfg.min_objects, cfg.max_objects, cfg.glyph, cfg.pattern, cfg.dot, cfg.dot_radius,
        cfg.pair, cfg.split,
    )
    image = render_scene(
        scene,
        _rng(cfg, split, "render", i),
        cfg.native_resolution,
        glyph_jitter=cfg.glyph_jitter,
        ink_jitter=cfg.ink_jitter,
        pixel_noise=cfg.pixel_noise,
        dot_radius=cfg.dot_radius,
    )
    text = describe(scene, _rng(cfg, split, "captions", i), cfg.captions_per_image, _rng(cfg, split, "qa", i))
    return image, {"id": i, **text}


def _generate_split(cfg: WorldCfg, split: str, sizes: dict[str, int], out: Path) -> None:
    r = cfg.native_resolution
    images = open_memmap(out / f"images_{split}.npy", mode="w+", dtype=np.uint8, shape=(sizes["images"], r, r, 3))
    samples = []
    for i in progress(range(sizes["images"]), f"world {split}", "img"):
        images[i], sample = _item(cfg, split, i)
        samples.append(sample)
    images.flush()
    del images
    docs = make_docs(
        samples, sizes["docs"], lambda j: _rng(cfg, split, "doc", j), cfg.doc_min_images, cfg.doc_max_images
    )
    texts = []
    for j in range(sizes["texts"]):
        rng = _rng(cfg, split, "text", j)
        scene = sample_scene(  # described, never rendered
            rng, cfg.min_objects, cfg.max_objects, cfg.glyph, cfg.pattern, cfg.dot, cfg.dot_radius, cfg.pair,
            cfg.split,
        )
        texts.append({"id": j, "text": text_passage(scene, rng)})
    _write_jsonl(out / f"samples_{split}.jsonl", samples)
    _write_jsonl(out / f"docs_{split}.jsonl", docs)
    _write_jsonl(out / f"texts_{split}.jsonl", texts)


def _majority(samples: list[dict]) -> dict[str, str]:
    """Most frequent train answer per question type; ties go to the smallest answer so the result is stable."""
    counts: dict[str, Counter] = {}
    for s in samples:
        for q in s["qa"]:
            counts.setdefault(q["type"], Counter())[q["answer"]] += 1
    return {t: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for t, c in counts.items()}


def _generate(cfg: WorldCfg, h: str, out: Path) -> None:
    sizes = split_sizes(cfg)
    start = time.perf_counter()
    for split in SPLITS:
        _generate_split(cfg, split, sizes[split], out)
    seconds = time.perf_counter() - start
    n_images = sum(s["images"] for s in sizes.values())
    majority = _majority(_read_jsonl(out / "samples_train.jsonl"))
    meta = {
        "cfg": dataclasses.asdict(cfg),
        "hash": h,
        "counts": sizes,
        "question_types": [t for t in QUESTION_TYPES if t in majority],
        "majority_answers": majority,
        "generation_seconds": round(seconds, 2),
    }
    (out / "world.json").write_text(json.dumps(meta, indent=1) + "\n")
    rate = n_images / max(seconds, 1e-9)
    print(f"[world] {cfg.name}-{h}: {n_images} images in {seconds:.1f} s ({rate:.0f} images/s)", flush=True)
    (out / "DONE").write_text(h + "\n")


class World:
    """A generated world on disk. Build or find one with :meth:`build_or_load`; everything else only reads."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not (self.root / "DONE").exists():
            raise FileNotFoundError(f"{self.root} has no DONE marker: not a complete world")
        self.meta: dict = json.loads((self.root / "world.json").read_text())
        self.cfg = WorldCfg(**self.meta["cfg"])
        self.hash: str = self.meta["hash"]
        self._cache: dict[tuple[str, str], list] = {}

    @classmethod
    def build_or_load(cls, cfg: WorldCfg | Mapping[str, Any], cache_root: str | Path) -> World:
        cfg = _coerce(cfg)
        h = world_hash(cfg)
        final = world_dir(cfg, cache_root)
        if (final / "DONE").exists():
            return cls(final)._checked()
        final.parent.mkdir(parents=True, exist_ok=True)
        # Parallel jobs starting cold wait for one generator instead of each generating the world (4 jobs on 2 cores
        # made it 12x slower); the temp-dir + rename protocol below still guards filesystems without locks.
        with file_lock(final.parent / f".{final.name}.lock"):
            if (final / "DONE").exists():
                return cls(final)
            cls._generate_into(cfg, h, final)
        return cls(final)

    @staticmethod
    def _generate_into(cfg: WorldCfg, h: str, final: Path) -> None:
        tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        try:
            _generate(cfg, h, tmp)
            if final.exists() and not (final / "DONE").exists():  # incomplete folder under the final name
                stale = final.with_name(f"{final.name}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}")
                try:
                    os.rename(final, stale)
                    shutil.rmtree(stale, ignore_errors=True)
                except FileNotFoundError:  # another process moved it first
                    pass
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / "DONE").exists():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process finished first: use theirs
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _checked(self, n: int = 2) -> World:
        """This cached world, after checking that its first ``n`` train items are what this checkout generates.

        The cache is keyed by the config alone, so a change to sampling, rendering or wording that forgot its
        ``version`` bump would otherwise be trained on silently, together with every backbone, feature bank and export
        built from the old content (this happened once: a dot placement changed after a cache was built, and a
        whole study's numbers came from a world nobody else could generate). Costs a few milliseconds.
        """
        cached = self.images("train")
        for i in range(min(n, len(cached))):
            image, sample = _item(self.cfg, "train", i)
            if not np.array_equal(image, cached[i]) or json.loads(json.dumps(sample)) != self.samples("train")[i]:
                raise StaleWorldError(
                    f"the cached world {self.root} differs from what this code generates for {self.cfg.name} "
                    f"version {self.cfg.version} (train item {i}): its generation changed without a version bump. "
                    f"Delete {self.root.parent.parent} (backbones, feature banks and exports built from the old "
                    "world are stale too) or, if you changed the world code, bump WorldCfg.version."
                )
        return self

    @staticmethod
    def _check(split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}'; valid splits: {', '.join(SPLITS)}")

    def _jsonl(self, kind: str, split: str) -> list:
        self._check(split)
        if (kind, split) not in self._cache:
            self._cache[(kind, split)] = _read_jsonl(self.root / f"{kind}_{split}.jsonl")
        return self._cache[(kind, split)]

    def images(self, split: str) -> np.ndarray:
        """uint8 [N, R, R, 3], memory-mapped read-only."""
        self._check(split)
        return np.load(self.root / f"images_{split}.npy", mmap_mode="r")

    def samples(self, split: str) -> list[dict]:
        return self._jsonl("samples", split)

    def docs(self, split: str) -> list[dict]:
        return self._jsonl("docs", split)

    def texts(self, split: str) -> list[str]:
        return [t["text"] for t in self._jsonl("texts", split)]

    def scenes(self, split: str) -> list[Scene]:
        return [Scene.from_dict(s) for s in self.samples(split)]

    def question_types(self) -> list[str]:
        return list(self.meta["question_types"])

    def majority_answers(self) -> dict[str, str]:
        return dict(self.meta["majority_answers"])

    def all_text(self, split: str = "train") -> Iterator[str]:
        """Every string a language model may see in ``split``: the corpus for tokenizer training."""
        for s in self.samples(split):
            yield from s["captions"]
            yield s["dense_caption"]
            for q in s["qa"]:
                yield qa_line(q["question"], q["answer"])
        for d in self.docs(split):
            yield from (t for t in d["texts"] if t is not None)
        yield from self.texts(split)

    def __repr__(self) -> str:
        return f"World({self.cfg.name}-{self.hash}, root={self.root})"
