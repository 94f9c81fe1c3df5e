"""The training corpus: the records and images a run's data sources read, indexed once from their files.

``build_corpus(datas, world, cache_dir, data_dir)`` routes every source the data configs weight to a location
(``harness.data.locations``), indexes each location once, and joins them into one image store. Its API is what the
mixture and the feature cache read from a ``World``: ``images("train")`` (indexable like a ``[N, S, S, 3]`` uint8
array, S = the world's native resolution), ``part(source)`` (that source's records, image ids into ``images``) and
``hash`` (identifies the image store: the feature-cache key).

Indexing a location = one pass of its format's reader (``harness.data.formats``) plus reading and decoding every
referenced image once, to reject what does not decode and to hash the pixels. The result (records with local image
ids, and per image its file, byte offset, size and pixel digest) is cached content-addressed under
``<cache>/corpus/<format>-<hash>/`` through ``harness.artifacts.build_once``; the key covers the files' names, sizes
and mtimes, the image folder's name and mtime (adding or removing images changes it; overwriting one in place does
not: touch the folder), the reader and the image size. Images are never unpacked: the image store reads each by
offset from its shard or file and decodes it on access; with the frozen-feature cache that happens once per image.

Bad data: a missing file, an undecodable image or a malformed record is skipped and counted per reason
(``harness.data.formats.base.REASONS``); ``Corpus.skipped`` has the counts per source for the run record. A source
whose location yields no valid record fails with the counts and the files it looked for.

One image store for all: images are de-duplicated by a hash of their decoded pixels, across files and formats.
When a source reads from the world's export, the whole export is indexed first, captions first, so image id i is
the world's image i whatever the mixture: every data config on a world shares one image store, hence one
feature-cache entry, and the world's interleaved documents and curated set reuse the caption shards' images.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from harness.artifacts import build_once, content_hash
from harness.data.formats import FORMATS, Part
from harness.data.formats.base import CONVERSATION, DOC, PAIR, ImageRef, skip
from harness.data.formats.images import UndecodableImage, decode, pixel_digest, read_bytes
from harness.data.formats.paths import expand, stat_key
from harness.data.locations import Location, route

INDEX_VERSION = 1  # bump when the index layout or the decode path changes
IMAGE_DTYPE = np.dtype([("file", "<i4"), ("offset", "<i8"), ("size", "<i8"), ("digest", "S16")])
BLOB = "blob.bin"  # images embedded in the data (parquet bytes), copied once next to the index: they have no file


class ImageStore:
    """``[N, S, S, 3]`` uint8 images by index (int, slice or index array), decoded from their files on access."""

    def __init__(self, files: list[str], table: np.ndarray, size: int):
        self.files, self.table, self.size = files, table, size
        self.dtype = np.dtype(np.uint8)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.table), self.size, self.size, 3)

    def __len__(self) -> int:
        return len(self.table)

    def _one(self, i: int) -> np.ndarray:
        row = self.table[i]
        ref = ImageRef(self.files[row["file"]], int(row["offset"]), int(row["size"]))
        try:
            return decode(read_bytes(ref), self.size)
        except (OSError, UndecodableImage) as err:
            raise RuntimeError(f"image {i} ({ref.path} at byte {ref.offset}) was readable when indexed and is not "
                               f"now ({err}): the data changed under the cache; touch its files to re-index") from None

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, int | np.integer):
            return self._one(range(len(self))[int(idx)])  # range indexing: negative ids and bounds as for arrays
        ids = np.arange(len(self))[idx]  # slices, int and bool arrays, with numpy's semantics and errors
        out = np.empty((len(ids), self.size, self.size, 3), dtype=np.uint8)
        for k, i in enumerate(ids):
            out[k] = self._one(int(i))
        return out


class LocationIndex:
    """One location's cached index: ``kind``, ``records`` (local image ids), ``files``, ``table``, ``skipped``."""

    def __init__(self, path: Path):
        self.path = path
        meta = json.loads((path / "meta.json").read_text())
        self.kind, self.skipped = meta["kind"], meta["skipped"]
        self.records = json.loads((path / "records.json").read_text())
        self.files = [f or str(path / BLOB) for f in json.loads((path / "files.json").read_text())]
        self.table = np.load(path / "images.npy")


class _Indexer:
    """Turns a reader's records into records with local image ids; reads and decodes each distinct image once."""

    def __init__(self, size: int, out: Path, memo: dict[bytes, bytes]):
        self.size, self.out, self.memo = size, out, memo
        self.files: list[str] = []
        self._file_ids: dict[str, int] = {}
        self.rows: list[tuple] = []
        self._by_ref: dict[ImageRef, int | str] = {}  # a reference -> its id, or why it is unusable
        self._by_bytes: dict[bytes, int] = {}  # hash of encoded bytes -> id (identical files decode once)
        self._by_pixels: dict[bytes, int] = {}  # pixel digest -> id (the de-duplication proper)
        self._blob = None

    def image(self, ref: ImageRef | bytes) -> int | str:
        if isinstance(ref, ImageRef) and ref in self._by_ref:
            return self._by_ref[ref]
        result = self._new(ref)
        if isinstance(ref, ImageRef):
            self._by_ref[ref] = result
        return result

    def _new(self, ref: ImageRef | bytes) -> int | str:
        try:
            data = ref if isinstance(ref, bytes) else read_bytes(ref)
        except FileNotFoundError:
            return "missing_file"
        except (OSError, UndecodableImage):
            return "undecodable_image"
        raw = hashlib.blake2b(data, digest_size=16).digest()
        if raw in self._by_bytes:
            return self._by_bytes[raw]
        digest = self.memo.get(raw)
        if digest is None:  # bytes no index of this build has decoded yet
            try:
                digest = self.memo[raw] = pixel_digest(decode(data, self.size))
            except UndecodableImage:
                return "undecodable_image"
        if digest not in self._by_pixels:
            if isinstance(ref, bytes):
                ref = self._store(ref)
            fid = self._file_ids.setdefault(ref.path, len(self._file_ids))
            if fid == len(self.files):
                self.files.append(ref.path)
            self._by_pixels[digest] = len(self.rows)
            self.rows.append((fid, ref.offset, len(data), digest))
        self._by_bytes[raw] = self._by_pixels[digest]
        return self._by_pixels[digest]

    def _store(self, data: bytes) -> ImageRef:
        if self._blob is None:
            self._blob = open(self.out / BLOB, "wb")  # noqa: SIM115  (closed in close(), after the last image)
        offset = self._blob.tell()
        self._blob.write(data)
        return ImageRef("", offset, len(data))  # "" = this index's blob, wherever the folder ends up

    def close(self) -> None:
        if self._blob is not None:
            self._blob.close()


def _index(kind: str, records, size: int, out: Path, skipped: Counter, memo: dict) -> int:
    ix, kept = _Indexer(size, out, memo), []
    for rec in records:
        if kind in (PAIR, CONVERSATION):
            img = ix.image(rec["image"])
            if isinstance(img, str):
                skip(skipped, img)
                continue
            rec = {**rec, "image": img}
        elif kind == DOC:  # a bad image leaves the document (counted); its text stays
            ids = [None if r is None else ix.image(r) for r in rec["images"]]
            for reason in (i for i in ids if isinstance(i, str)):
                skip(skipped, reason)
            keep = [k for k, i in enumerate(ids) if not isinstance(i, str)]
            rec = {"images": [ids[k] for k in keep], "texts": [rec["texts"][k] for k in keep]}
        kept.append(rec)
    ix.close()
    (out / "records.json").write_text(json.dumps(kept))
    (out / "files.json").write_text(json.dumps(ix.files))
    np.save(out / "images.npy", np.array(ix.rows, dtype=IMAGE_DTYPE))
    return len(ix.rows)


def index_location(loc: Location, roots: dict[str, Path], size: int, cache_dir: Path, log=print,
                   memo: dict[bytes, bytes] | None = None) -> LocationIndex:
    """The cached index of one location (built on first use; parallel jobs wait for one builder). ``memo`` maps
    hashes of encoded bytes to pixel digests across the locations of one build, so an image exported into several
    files (the world's caption and synthetic shards, its document images) is decoded once."""
    memo = {} if memo is None else memo
    root = roots[loc.root]
    files = expand(loc.path, root)
    images = (root / loc.images) if loc.images else None
    images_key = None if images is None else [str(images.resolve()), images.stat().st_mtime_ns if images.exists()
                                              else None]
    key = {"format": loc.format, "files": stat_key(files), "images": images_key, "size": size, "v": INDEX_VERSION}
    reader = FORMATS.get(loc.format)()

    def build(tmp: Path) -> dict:
        t0, skipped = time.time(), Counter()
        records = (rec for f in files for rec in reader.read([f], images or f.parent, skipped))
        n_images = _index(reader.kind, records, size, tmp, skipped, memo)
        n = len(json.loads((tmp / "records.json").read_text()))
        log(f"[corpus] indexed {loc.describe()}: {n} records, {n_images} images, skipped "
            f"{dict(skipped) or 'nothing'} in {time.time() - t0:.1f} s")
        return {"key": key, "kind": reader.kind, "records": n, "images": n_images, "skipped": dict(skipped)}

    path = Path(cache_dir) / "corpus" / f"{loc.format}-{content_hash(key)}"
    return LocationIndex(build_once(path, build, log=log))


class Corpus:
    """The routed sources' records over one de-duplicated image store (see the module docstring)."""

    def __init__(self, routes: dict[str, Location], indices: dict[Location, LocationIndex], order: list[Location],
                 size: int):
        self.routes, self.size = routes, size
        files: dict[str, int] = {}
        rows, by_digest, local = [], {}, {}
        for loc in order:  # the image store: every location's images in order, each distinct picture once
            ix = indices[loc]
            fmap = [files.setdefault(f, len(files)) for f in ix.files]
            ids = np.empty(len(ix.table), dtype=np.int64)
            for j, row in enumerate(ix.table):
                d = bytes(row["digest"])
                if d not in by_digest:
                    by_digest[d] = len(rows)
                    rows.append((fmap[row["file"]], row["offset"], row["size"], d))
                ids[j] = by_digest[d]
            local[loc] = ids
        self._store = ImageStore(list(files), np.array(rows, dtype=IMAGE_DTYPE), size)
        self.duplicates = sum(len(indices[loc].table) for loc in order) - len(rows)
        self.hash = content_hash({"indices": [indices[loc].path.name for loc in order], "size": size,
                                  "v": INDEX_VERSION})
        self._parts = {s: Part(indices[loc].kind, _remap(indices[loc], local[loc])) for s, loc in routes.items()}
        self._skipped = {s: dict(indices[loc].skipped) for s, loc in routes.items()}

    def images(self, split: str = "train") -> ImageStore:
        if split != "train":
            raise ValueError(f"a corpus holds training data only, not split '{split}'; evaluation reads the world")
        return self._store

    def part(self, source: str, split: str = "train") -> Part:
        self.images(split)  # the same split check
        if source not in self._parts:
            raise KeyError(f"data source '{source}' is not in this corpus (built for: {', '.join(self._parts)})")
        return self._parts[source]

    @property
    def skipped(self) -> dict[str, dict[str, int]]:
        """Per routed source, items skipped per reason (an empty dict: nothing skipped)."""
        return {s: dict(c) for s, c in self._skipped.items()}

    def summary(self) -> dict:
        """What the run record should carry about its data."""
        return {"hash": self.hash, "image_size": self.size, "images": len(self._store), "duplicates": self.duplicates,
                "sources": {s: {"format": loc.format, "path": loc.path, "root": loc.root,
                                "records": len(self._parts[s]), "skipped": self._skipped[s]}
                            for s, loc in self.routes.items()}}

    def __repr__(self) -> str:
        return f"Corpus({self.hash}, {len(self._store)} images, sources: {', '.join(self._parts)})"


def _remap(ix: LocationIndex, ids: np.ndarray) -> list[dict]:
    if ix.kind in (PAIR, CONVERSATION):
        return [{**r, "image": int(ids[r["image"]])} for r in ix.records]
    if ix.kind == DOC:
        return [{"images": [None if i is None else int(ids[i]) for i in r["images"]], "texts": r["texts"]}
                for r in ix.records]
    return ix.records


def build_corpus(datas: list, world, cache_dir: str | Path, data_dir: str | Path, log=print) -> Corpus:
    """The corpus for data configs ``datas`` (those the run's stages train on): sources routed, the world exported
    if a source reads from it, every location indexed (cached), images joined. Raises ValueError for a source whose
    location yields no valid record."""
    from harness.world.export import PARTS, export_sources, export_world

    routes, cache_dir = route(datas), Path(cache_dir).expanduser()
    roots, order = {"data": Path(data_dir).expanduser()}, []
    if any(loc.root == "world" for loc in routes.values()):
        roots["world"] = export_world(world, cache_dir, log)
        export = {s: Location(d["format"], d["path"], "world", d["images"]) for s, d in export_sources(world).items()}
        routes = {s: export[s] if loc.root == "world" and not loc.path else loc for s, loc in routes.items()}
        order = [export[s] for s in PARTS]
    order += sorted(set(routes.values()) - set(order), key=lambda loc: (loc.root, loc.format, loc.path, loc.images))
    size = world.cfg.native_resolution
    memo: dict[bytes, bytes] = {}
    indices = {loc: index_location(loc, roots, size, cache_dir, log, memo) for loc in order}
    for source, loc in routes.items():
        if not indices[loc].records:
            files = ", ".join(str(f) for f in expand(loc.path, roots[loc.root])[:3])
            raise ValueError(f"data source '{source}' ({loc.describe()}) yielded no valid sample; skipped: "
                             f"{indices[loc].skipped or 'nothing (no records)'}; files: {files}")
    return Corpus(routes, indices, order, size)
