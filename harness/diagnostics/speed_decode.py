"""``python -m harness.bench decode``: images per second per core decoded from webdataset shards (issue 5 goal:
>= 150 at 640x480 JPEG).

Writes ``--images`` synthetic 640x480 JPEGs (quality 90; smooth colour fields plus noise, so their size is
photo-like) into webdataset shards in a temporary folder, indexes the shards with the webdataset reader (headers
only), then reads every image by offset and decodes it to ``--size`` px on one thread: the corpus's own path
(``harness.data.formats.images.decode``: JPEG draft, RGB, shorter side to size, centre crop). The same loop without
draft shows what draft buys. Rates are per CPU second of this process (one thread, so per core) and per wall
second; on a shared machine the CPU figure is the steadier one.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from harness.data.formats.images import decode, read_bytes
from harness.data.formats.paths import expand
from harness.data.formats.webdataset import ShardWriter, WebDataset

GOAL = 150  # images per second per core (issue 5)


def synthetic_jpeg(rng: np.random.Generator, width: int = 640, height: int = 480, quality: int = 90) -> bytes:
    """A photo-sized JPEG: a bicubically upsampled 16x12 colour field plus pixel noise (flat images would compress,
    and decode, unrealistically fast)."""
    field = Image.fromarray((rng.random((12, 16, 3)) * 255).astype(np.uint8)).resize((width, height),
                                                                                      Image.Resampling.BICUBIC)
    pixels = np.asarray(field, dtype=np.int16) + rng.normal(0, 6, (height, width, 3)).astype(np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _timed(refs: list, size: int, draft: bool) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    for ref in refs:
        decode(read_bytes(ref), size, draft=draft)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"draft": draft, "images_per_cpu_s": len(refs) / cpu, "images_per_wall_s": len(refs) / wall,
            "wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}


def bench_decode(args) -> dict:
    import torch

    torch.set_num_threads(1)  # nothing here uses torch; pinned so an import elsewhere cannot add threads
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        sizes = []
        per_shard = -(-args.images // args.shards)
        with ShardWriter(Path(tmp) / "shards", per_shard) as writer:
            for i in range(args.images):
                jpg = synthetic_jpeg(rng, quality=args.quality)
                sizes.append(len(jpg))
                writer.add(f"{i:06d}", {"jpg": jpg, "txt": b"a synthetic photo.", "json": b"{}"})
        spec = writer.close()
        skipped = Counter()
        refs = [r["image"] for r in WebDataset().read(expand(spec, Path(tmp)), Path(tmp), skipped)]
        assert len(refs) == args.images and not skipped, (len(refs), skipped)
        _timed(refs[: min(20, len(refs))], args.size, True)  # warm the page cache and PIL's plugin imports
        rows = [_timed(refs, args.size, True), _timed(refs, args.size, False)]
    for r in rows:
        print(f"[bench] decode {'draft' if r['draft'] else 'full '} -> {args.size}px: "
              f"{r['images_per_cpu_s']:6.0f} images per CPU s, {r['images_per_wall_s']:6.0f} per wall s", flush=True)
    best = rows[0]["images_per_cpu_s"]
    print(f"[bench] goal >= {GOAL} images/s per core: {'met' if best >= GOAL else 'NOT met'} ({best:.0f})")
    return {"benchmark": "decode", "threads": 1, "images": args.images, "shards": args.shards, "size": args.size,
            "source_image": {"width": 640, "height": 480, "format": "JPEG", "quality": args.quality,
                             "mean_bytes": int(np.mean(sizes))},
            "rows": rows, "goal_images_per_s_per_core": GOAL, "goal_met": best >= GOAL}


def add_parser(sub) -> None:
    p = sub.add_parser("decode", help="images/s per core decoded from webdataset shards (640x480 JPEG)")
    p.add_argument("--images", type=int, default=500)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--size", type=int, default=128, help="output side, px (the world's native resolution: 128)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of the synthetic images")
    p.add_argument("--out", default="results/bench")
