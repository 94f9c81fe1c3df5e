"""webdataset tar shards as img2dataset writes them: ``<key>.jpg|png|webp`` + ``<key>.txt`` + ``<key>.json``.

Format (webdataset spec, github.com/webdataset/webdataset "Data format"; img2dataset's ``output_format=webdataset``):
an uncompressed POSIX tar whose members are grouped into samples by *key*, the member name up to the first dot of its
base name (``000123.jpg`` and ``000123.txt`` are sample ``000123``); the rest of the name is the field's extension.
img2dataset writes the caption to ``.txt`` and download metadata to ``.json``. A shard set is named by a brace
spec such as ``shards/{00000..00099}.tar`` (``harness.data.formats.paths``).

Reading: one pass over each shard's headers with ``tarfile``. Image members are not read; each becomes an
:class:`ImageRef` (shard, offset of its data, size), so the corpus reads an image with one seek + read and nothing
is unpacked to disk. Text fields are read (small). A sample's texts are the ``captions`` list of its ``.json`` when
that is a non-empty list of strings (the world's export stores its reference phrasings there; one is drawn per use,
as the world's own caption source does), else its ``.txt``. Only uncompressed shards allow random access; a
``.tar.gz`` shard is skipped as ``bad_shard``.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from harness.data.formats.base import FORMATS, PAIR, Format, ImageRef, skip
from harness.data.formats.images import IMAGE_SUFFIXES


def split_key(member: str) -> tuple[str, str]:
    """``dir/000123.seg.png`` -> (``dir/000123``, ``seg.png``): key = up to the first dot of the base name."""
    folder, _, base = member.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def _texts(fields: dict[str, bytes], skipped: Counter) -> list[str] | None:
    meta = {}
    if "json" in fields:
        try:
            meta = json.loads(fields["json"])
        except (UnicodeDecodeError, json.JSONDecodeError):
            skip(skipped, "malformed_record")
            return None
    caps = meta.get("captions") if isinstance(meta, dict) else None
    if isinstance(caps, list) and caps and all(isinstance(c, str) and c.strip() for c in caps):
        return caps
    if "txt" in fields:
        try:
            text = fields["txt"].decode("utf-8").strip()
        except UnicodeDecodeError:
            skip(skipped, "malformed_record")
            return None
        if text:
            return [text]
    skip(skipped, "missing_text")
    return None


@FORMATS.register("webdataset")
class WebDataset(Format):
    name = "webdataset"
    kind = PAIR
    suffixes = (".tar",)

    def read(self, files: list[Path], images_root: Path, skipped: Counter) -> Iterator[dict]:
        for shard in files:
            if not shard.is_file():
                skip(skipped, "missing_file")
                continue
            samples: dict[str, dict] = {}  # key -> {"image": ImageRef, ext: bytes}; insertion order = shard order
            try:
                with tarfile.open(shard, mode="r:") as tf:
                    for m in tf:
                        if not m.isfile():
                            continue
                        key, ext = split_key(m.name)
                        fields = samples.setdefault(key, {})
                        if ext in IMAGE_SUFFIXES:
                            fields.setdefault("image", ImageRef(str(shard.resolve()), m.offset_data, m.size))
                        elif ext in ("txt", "json"):
                            fields[ext] = tf.extractfile(m).read()
            except (tarfile.TarError, OSError, EOFError):
                skip(skipped, "bad_shard")  # the samples read before the damage are kept
            for fields in samples.values():
                if "image" not in fields:
                    skip(skipped, "missing_image")
                    continue
                texts = _texts(fields, skipped)
                if texts is not None:
                    yield {"image": fields["image"], "texts": texts}


class ShardWriter:
    """Writes samples into ``folder/00000.tar``, ``00001.tar``, ... with ``per_shard`` samples each.

    Members carry mtime 0 and no owner, so the same samples give byte-identical shards (and one cache key).
    """

    def __init__(self, folder: Path, per_shard: int = 1000):
        self.folder, self.per_shard = Path(folder), per_shard
        self.folder.mkdir(parents=True, exist_ok=True)
        self.names: list[str] = []
        self._tar: tarfile.TarFile | None = None
        self._count = 0

    def add(self, key: str, fields: dict[str, bytes]) -> None:
        """One sample: ``fields`` maps an extension (``png``, ``txt``, ``json``) to its bytes."""
        if self._tar is None or self._count == self.per_shard:
            self._roll()
        for ext, data in fields.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            self._tar.addfile(info, io.BytesIO(data))
        self._count += 1

    def _roll(self) -> None:
        if self._tar is not None:
            self._tar.close()
        name = f"{len(self.names):05d}.tar"
        self.names.append(name)
        # held open across add() calls and closed by _roll/close, so not a with-block
        self._tar = tarfile.open(self.folder / name, mode="w", format=tarfile.GNU_FORMAT)  # noqa: SIM115
        self._count = 0

    def close(self) -> str:
        """Close the last shard; returns the brace spec of the set relative to the parent folder."""
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        return shard_spec(self.folder.name, len(self.names))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def shard_spec(folder: str, n_shards: int) -> str:
    """``caption``, 8 -> ``caption/{00000..00007}.tar``."""
    return f"{folder}/{{00000..{max(n_shards - 1, 0):05d}}}.tar"
