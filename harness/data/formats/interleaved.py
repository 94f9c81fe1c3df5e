"""OBELICS-like interleaved documents: parallel ``texts`` and ``images`` lists, JSONL or parquet.

Format (OBELICS, Laurençon et al. 2023, as published on the HF hub): one document per row; ``texts[i]`` and
``images[i]`` describe position ``i`` of the document, and exactly one of them is non-null there (null is the
placeholder for "the other list has this position"). An image entry is a path relative to the image folder (the
source's ``images`` setting, default the document file's folder), or, in parquet only, the image itself: raw
``bytes`` or an HF ``datasets`` Image struct ``{"bytes", "path"}``. OBELICS proper stores URLs; download them first
(img2dataset) and point ``images`` at the result. Other columns (ids, metadata) are ignored.

``.jsonl`` files are read line by line; ``.parquet`` files in record batches (pyarrow, the ``eval``/``dev`` extra).
A malformed line or row is skipped and counted; a position with both a text and an image is malformed. An image
that cannot be read is dropped from its document by the corpus (counted), and the document kept: losing a whole
document to one dead link would lose most of OBELICS. Documents without any text are ``empty_record``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from harness.data.formats.base import DOC, FORMATS, Format, ImageRef, existing, json_lines, skip


def _image(entry, images_root: Path):
    """An ``images`` list entry -> ImageRef | bytes | None; raises ValueError when it is none of the accepted forms."""
    if entry is None:
        return None
    if isinstance(entry, dict):  # HF datasets Image feature: embedded bytes win over a path
        entry = entry.get("bytes") or entry.get("path")
    if isinstance(entry, bytes | bytearray):
        return bytes(entry)
    if isinstance(entry, str) and entry:
        return ImageRef(str(images_root / entry))
    raise ValueError(f"image entry of type {type(entry).__name__}")


def normalise(row, images_root: Path, skipped: Counter) -> dict | None:
    """One row -> ``{"images": [...], "texts": [...]}`` without all-null positions, or None (counted)."""
    texts = row.get("texts") if isinstance(row, dict) else None
    images = row.get("images") if isinstance(row, dict) else None
    if not isinstance(texts, list) or not isinstance(images, list) or len(texts) != len(images):
        skip(skipped, "malformed_record")
        return None
    out_images, out_texts = [], []
    try:
        for text, img in zip(texts, images, strict=True):
            ref = _image(img, images_root)
            if text is not None and (not isinstance(text, str) or ref is not None):
                raise ValueError("a position holds both a text and an image, or a non-string text")
            if text is None and ref is None:
                continue
            out_images.append(ref)
            out_texts.append(text)
    except ValueError:
        skip(skipped, "malformed_record")
        return None
    if not any(t and t.strip() for t in out_texts):
        skip(skipped, "empty_record")
        return None
    return {"images": out_images, "texts": out_texts}


def _rows(path: Path, skipped: Counter) -> Iterator:
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as err:
            raise ImportError(f"reading {path} needs pyarrow: pip install 'mm-ablate[eval]' (or pyarrow)") from err
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256, columns=["texts", "images"]):
            yield from batch.to_pylist()
        return
    yield from json_lines(path, skipped)


@FORMATS.register("interleaved")
class Interleaved(Format):
    name = "interleaved"
    kind = DOC
    suffixes = (".jsonl", ".parquet")

    def read(self, files: list[Path], images_root: Path, skipped: Counter) -> Iterator[dict]:
        for path in existing(files, skipped):
            for row in _rows(path, skipped):
                doc = normalise(row, images_root, skipped)
                if doc is not None:
                    yield doc


def write_jsonl(path: Path, docs: list[dict]) -> None:
    """``docs``: ``{"texts": [...], "images": [relative path | None, ...], ...}`` rows, written as they are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(d) + "\n" for d in docs)


def write_parquet(path: Path, docs: list[dict]) -> None:
    """Rows with ``images`` entries as embedded ``bytes`` (or all as relative path strings) and ``texts``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    embedded = any(isinstance(i, bytes) for d in docs for i in d["images"])
    image = pa.binary() if embedded else pa.string()
    schema = pa.schema([("texts", pa.list_(pa.string())), ("images", pa.list_(image))])
    table = pa.Table.from_pylist([{"texts": d["texts"], "images": d["images"]} for d in docs], schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
