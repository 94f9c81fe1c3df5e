"""Your own data as a benchmark: a held-out part of a caption source written as a VLMEvalKit-style caption TSV.

    python -m harness.eval.from_source --format webdataset --path 'cc3m/{00331..00331}.tar' --out cc3m_val.tsv
    python sweep.py ... eval.benchmarks=[/abs/path/cc3m_val.tsv:caption]
    python -m harness.evaluate RUN eval.benchmarks=[/abs/path/cc3m_val.tsv:caption]

Why: a run trained on your photos is otherwise scored only on the synthetic world (CIDEr near 0 means nothing
there). Hold out shards (or an annotation file) that the training ``path`` does not list, and write them here once;
the TSV is then an ordinary benchmark, scored at every k in ``eval.shots`` with demonstrations from its other rows.
Image-caption pairs (webdataset) are accepted, and LLaVA conversations (``llava_json``, as LLaVA's LCS-558K
pre-training file holds captions: the first answer is the reference); an ``interleaved`` source is not a caption
source. ``--root`` names a folder; ``data`` and ``world`` mean what a data source's ``root`` means in a sweep
(``data``: ``paths.data_dir``, set by ``$MM_ABLATE_DATA``; ``world``: the world's export); write ``./data`` for a
folder called data. Samples that do not decode are skipped and counted, as in training. Images are stored as
JPEG with their longer side capped at ``--max-side`` (the encoders resize to the run's resolution; a cap keeps the
file small without going below any encoder's input size).
"""

from __future__ import annotations

import argparse
import io
import sys
from collections import Counter
from pathlib import Path

from harness.data.formats import FORMATS
from harness.data.formats.base import CONVERSATION, PAIR, skip
from harness.data.formats.images import UndecodableImage, read_bytes, to_rgb
from harness.data.formats.paths import expand


def source_rows(fmt: str, path: str, root: Path, images: str = "", limit: int = 0, max_side: int = 1024,
                skipped: Counter | None = None) -> list[dict]:
    """Rows (index, base64 JPEG, captions) of the first ``limit`` (0 = all) decodable pairs of a source."""
    import base64

    from PIL import Image

    reader = FORMATS.get(fmt)()
    if reader.kind not in (PAIR, CONVERSATION):
        ok = [n for n in FORMATS.names() if FORMATS.get(n).kind in (PAIR, CONVERSATION)]
        raise ValueError(f"format '{fmt}' yields {reader.kind} records; a caption benchmark needs image-caption pairs "
                         f"or conversations whose first answer is the caption (formats: {', '.join(ok)})")
    files = expand(path, root)
    if not any(f.is_file() for f in files):
        raise ValueError(f"'{path}' under {root} matches no file (looked for {', '.join(map(str, files[:3]))})")
    skipped = Counter() if skipped is None else skipped
    rows = []
    for rec in reader.read(files, root / images if images else files[0].parent, skipped):
        try:
            with Image.open(io.BytesIO(read_bytes(rec["image"]))) as im:
                im = to_rgb(im)
                im.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
                buf = io.BytesIO()
                im.save(buf, format="JPEG", quality=95)
        except FileNotFoundError:  # an image the annotation names is not in the folder
            skip(skipped, "missing_file")
            continue
        except (OSError, UndecodableImage, Image.DecompressionBombError):
            skip(skipped, "undecodable_image")
            continue
        refs = list(rec["texts"]) if reader.kind == PAIR else [rec["turns"][0][1]]
        rows.append({"index": len(rows), "image": base64.b64encode(buf.getvalue()).decode(), "answer": refs})
        if limit and len(rows) >= limit:
            break
    return rows


def location_root(root: str) -> Path:
    """``--root`` as a folder: ``data`` and ``world`` are a sweep's location names (harness.data.locations)."""
    if root not in ("data", "world"):
        return Path(root).expanduser()
    from omegaconf import OmegaConf

    from harness.config.store import compose_sweep
    from harness.world import World
    from harness.world.export import export_world

    cfg = compose_sweep([])
    if root == "data":
        return Path(cfg.paths.data_dir).expanduser().resolve()
    cache = Path(cfg.paths.cache_dir).expanduser()
    return export_world(World.build_or_load(OmegaConf.to_object(cfg.world), cache), cache)


def main(argv: list[str] | None = None) -> int:
    from harness.eval.benchmarks import write_tsv

    p = argparse.ArgumentParser(prog="python -m harness.eval.from_source", description=__doc__.split("\n\n")[0])
    p.add_argument("--format", required=True, help="webdataset (image-caption pairs) or llava_json (first answer)")
    p.add_argument("--path", required=True, help="file spec under --root: braces {00000..00009}, lists, globs")
    p.add_argument("--root", default=".", help="folder the path is relative to (default: the current folder); data "
                   "= paths.data_dir ($MM_ABLATE_DATA) and world = the world's export, as a sweep's root")
    p.add_argument("--images", default="", help="image folder, for formats that reference image files")
    p.add_argument("--out", required=True, help="the TSV to write (its stem becomes the benchmark's name)")
    p.add_argument("--limit", type=int, default=0, help="first N decodable samples (0 = all)")
    p.add_argument("--max-side", type=int, default=1024, help="longer image side cap in the TSV, pixels")
    args = p.parse_args(argv)
    skipped: Counter = Counter()
    root = location_root(args.root)
    if args.root in ("data", "world"):
        print(f"[from_source] root {args.root} = {root}")
    try:
        rows = source_rows(args.format, args.path, root, args.images, args.limit, args.max_side, skipped)
    except (ValueError, KeyError) as err:
        print(f"[from_source] error: {err}", file=sys.stderr)
        return 2
    if not rows:
        print(f"[from_source] error: no decodable sample in {args.path} (skipped: {dict(skipped)})", file=sys.stderr)
        return 2
    out = write_tsv(Path(args.out).expanduser(), rows)
    print(f"[from_source] {len(rows)} samples -> {out} (skipped: {dict(skipped) or 'nothing'}); evaluate with "
          f"eval.benchmarks=[{out.resolve()}:caption]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
