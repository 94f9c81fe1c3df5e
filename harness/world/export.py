"""The world's training data as records, and written to disk in the formats real data ships in.

Why: the default run should read its data through the same readers a user's data goes through
(``harness.data.formats``), so those readers are exercised by every run and the reference results vouch for them.
Two functions share one definition of the data:

- :func:`world_parts` states the world's training data per data source as normalised records (the
  ``harness.data.formats.base`` contract) with images as indices into ``world.images(split)``. Data sources read
  it directly when handed a ``World`` (the pre-export path, kept for tests and the connector benchmark).
- :func:`export_world` writes those records once per world, content-addressed under
  ``<cache>/export/<world>-<hash>/``:

  ====================  ==============================================  ==========================================
  source                files (relative to the export root)             format
  ====================  ==============================================  ==========================================
  caption               ``caption/{00000..0000N}.tar``                  webdataset: PNG + first caption in .txt,
                                                                        all reference captions in .json
  synthetic_caption     ``synthetic_caption/{00000..0000N}.tar``        webdataset: PNG + dense caption in .txt
  interleaved           ``interleaved/docs.jsonl`` + ``images/``        OBELICS-like JSONL, image folder
  text                  ``text/texts.jsonl``                            text_jsonl
  conversation          ``curated/{detail,vqa}.json`` + ``images/``     LLaVA JSON: every 20th image's detailed
                                                                        description, and its VQA conversation
  ====================  ==============================================  ==========================================

Images are PNG (lossless), so pixels read back are exactly the world's, and records keep the world's order, so a
run that reads the export trains on the same stream as one reading the world (``tests/test_corpus.py`` checks
this). The curated set is the small, high-quality second-stage data of MiniGPT-4 (Zhu et al. 2023, §3.2: 3.5k
detailed descriptions after 5M pairs) and of LLaVA-style instruction tuning, at this world's scale.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from harness.artifacts import build_once, content_hash
from harness.data.formats import interleaved, llava_json, text_jsonl
from harness.data.formats.base import CONVERSATION, DOC, PAIR, TEXT, Part
from harness.data.formats.images import encode_png
from harness.data.formats.webdataset import ShardWriter, shard_spec

EXPORT_VERSION = 1  # bump when the exported files change, so cached exports are never stale
SHARD_SIZE = 1000  # samples per webdataset shard (img2dataset's default is 10000; smaller shows sharding at toy scale)
CURATED_EVERY = 20  # every 20th training image goes into the curated set (400 of the default world's 8000)
DETAIL_PROMPT = "describe this image in detail."  # lowercase: the world tokenizer's alphabet

# Order in which the export's parts are indexed into one image store: captions first, so image id i is the world's
# image i and every data configuration on a world shares one image store (and one feature-cache entry).
PART_FORMATS = {"caption": "webdataset", "synthetic_caption": "webdataset", "interleaved": "interleaved",
                "text": "text_jsonl", "conversation": "llava_json"}
PARTS = tuple(PART_FORMATS)


def curated(samples: list[dict]) -> tuple[list[dict], list[dict]]:
    """(detailed descriptions, VQA conversations) of every ``CURATED_EVERY``-th sample, as conversation records."""
    ids = range(0, len(samples), CURATED_EVERY)
    detail = [{"image": i, "turns": [[DETAIL_PROMPT, samples[i]["dense_caption"]]]} for i in ids]
    vqa = [{"image": i, "turns": [[q["question"], q["answer"]] for q in samples[i]["qa"]]} for i in ids]
    return detail, vqa


def world_parts(world, split: str = "train", only: str | None = None) -> dict[str, Part]:
    """The world's data per source (``only``: just that source), images as indices into ``world.images(split)``."""
    samples = world.samples(split)
    build = {
        "caption": lambda: Part(PAIR, [{"image": i, "texts": list(s["captions"])} for i, s in enumerate(samples)]),
        "synthetic_caption": lambda: Part(PAIR, [{"image": i, "texts": [s["dense_caption"]]}
                                                 for i, s in enumerate(samples)]),
        "interleaved": lambda: Part(DOC, [{"images": d["images"], "texts": d["texts"]} for d in world.docs(split)]),
        "text": lambda: Part(TEXT, [{"text": t} for t in world.texts(split)]),
        "conversation": lambda: Part(CONVERSATION, [r for rows in curated(samples) for r in rows]),
    }
    names = PARTS if only is None else (only,)
    for name in names:
        if name not in build:
            raise KeyError(f"the world has no data for source '{name}'; it exports: {', '.join(PARTS)}")
    return {name: build[name]() for name in names}


def export_sources(world) -> dict[str, dict[str, str]]:
    """Where each source's part lies in the export: ``{source: {format, path, images}}``, relative to its root."""
    shards = max(1, math.ceil(len(world.samples("train")) / SHARD_SIZE))
    paths = {
        "caption": (shard_spec("caption", shards), ""),
        "synthetic_caption": (shard_spec("synthetic_caption", shards), ""),
        "interleaved": ("interleaved/docs.jsonl", ""),  # image paths in the documents are relative to their file
        "text": ("text/texts.jsonl", ""),
        "conversation": ("curated/{detail,vqa}.json", "curated/images"),
    }
    return {name: {"format": PART_FORMATS[name], "path": p, "images": im} for name, (p, im) in paths.items()}


def export_dir(world, cache_root: str | Path) -> Path:
    key = {"world": world.hash, "v": EXPORT_VERSION, "shard_size": SHARD_SIZE, "curated_every": CURATED_EVERY}
    return Path(cache_root) / "export" / f"{world.cfg.name}-{content_hash(key)}"


def export_world(world, cache_root: str | Path, log=print) -> Path:
    """The world's training split written through the formats (once per world; parallel jobs wait for one writer)."""
    final = export_dir(world, cache_root)
    return build_once(final, lambda tmp: _write(world, tmp, log), log=log)


def _write(world, out: Path, log) -> dict:
    parts, images = world_parts(world, "train"), world.images("train")
    caption, synthetic = parts["caption"].records, parts["synthetic_caption"].records
    doc_ids = {i for d in parts["interleaved"].records for i in d["images"] if i is not None}
    detail, vqa = curated(world.samples("train"))
    conv_ids = {r["image"] for r in detail + vqa}
    for folder in ("interleaved/images", "curated/images"):
        (out / folder).mkdir(parents=True)
    # One pass, one PNG encoding per image: the caption and synthetic records are the world's images in order.
    with ShardWriter(out / "caption", SHARD_SIZE) as cap, ShardWriter(out / "synthetic_caption", SHARD_SIZE) as syn:
        for r, (c, s) in enumerate(zip(caption, synthetic, strict=True)):
            if c["image"] != s["image"]:
                raise AssertionError(f"caption record {r} and synthetic record {r} show different images")
            png, key, i = encode_png(images[c["image"]]), f"{r:06d}", c["image"]
            cap.add(key, {"png": png, "txt": c["texts"][0].encode(),
                          "json": json.dumps({"key": key, "captions": c["texts"]}).encode()})
            syn.add(key, {"png": png, "txt": s["texts"][0].encode(), "json": json.dumps({"key": key}).encode()})
            if i in doc_ids:
                (out / "interleaved/images" / f"{i:06d}.png").write_bytes(png)
            if i in conv_ids:
                (out / "curated/images" / f"{i:06d}.png").write_bytes(png)
    interleaved.write_jsonl(out / "interleaved/docs.jsonl", [
        {"id": j, "texts": d["texts"], "images": [None if i is None else f"images/{i:06d}.png" for i in d["images"]]}
        for j, d in enumerate(parts["interleaved"].records)])
    text_jsonl.write(out / "text/texts.jsonl", [t["text"] for t in parts["text"].records])
    for name, rows in (("detail", detail), ("vqa", vqa)):  # the order world_parts lists them in
        entries = [llava_json.entry(f"{name}-{r['image']:06d}", f"{r['image']:06d}.png", r["turns"]) for r in rows]
        llava_json.write(out / "curated" / f"{name}.json", entries)
    sources = export_sources(world)
    (out / "sources.json").write_text(json.dumps(sources, indent=1) + "\n")
    log(f"[export] {world.cfg.name}-{world.hash}: {len(caption)} images, {len(parts['interleaved'])} documents, "
        f"{len(parts['text'])} passages, {len(detail) + len(vqa)} curated conversations")
    return {"world": world.hash, "sources": sources}
