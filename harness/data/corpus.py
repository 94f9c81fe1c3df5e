"""The training corpus: the records and images a run's data sources read, indexed once from their files.

``build_corpus(datas, world, cache_dir, data_dir, image_size=...)`` routes every source the data configs weight to a
location (``harness.data.locations``), indexes each location once, and joins them into one image store. Its API is
what the mixture and the feature cache read from a ``World``: ``images("train")`` (indexable like a ``[N, S, S, 3]``
uint8 array), ``part(source)`` (that source's records, image ids into ``images``) and ``hash`` (identifies the image
store: the feature-cache key).

The store's side S (:func:`store_size`): the world's images are synthetic at the world's ``native_resolution``, so a
store of the world's images alone stays at that size whatever the run's resolution (the reference results depend on
it). A user's images are real photos of any size: they are decoded from the original file at ``image_size``, the
largest input the run's encoders take (:func:`run_image_size`), so a 224 or 336 px run on real data gets 224 or
336 px of the photo, not an upsampled 128 px copy. A store mixing both is at the larger of the two. ``summary()``
states per source the original image sizes, the stored size and how many images are smaller than the encoders'
input (upsampled: that resolution adds nothing for them); a warning line says so when any are.

Indexing a location = one pass of its format's reader (``harness.data.formats``) plus reading and decoding every
referenced image once at the store's size, to reject what does not decode and to hash the pixels. The result
(records with local image ids, per image its file, byte offset, size and pixel digest, and its original width and
height) is cached content-addressed under ``<cache>/corpus/<format>-<hash>/`` through
``harness.artifacts.build_once``; the key covers the files' names, sizes and mtimes, the image folder's name and
mtime (adding or removing images changes it; overwriting one in place does not: touch the folder), the reader and
the image size (so each resolution of a user's data has its own index). Images are never unpacked: the image store
reads each by offset from its shard or file and decodes it from the original on access; with the frozen-feature
cache that happens once per image and encoder.

Bad data: a missing file, an undecodable image or a malformed record is skipped and counted per reason
(``harness.data.formats.base.REASONS``); ``Corpus.skipped`` has the counts per source for the run record. A source
whose location yields no valid record fails with the counts and the files it looked for.

One image store for all: images are de-duplicated by a hash of their decoded pixels, across files and formats.
Only the images a run's mixture can draw are indexed (and so encoded by the feature bank). When a source with images
reads from the world's export (or every source does), the whole export is indexed first, captions first, so image
id i is the world's image i whatever the mixture: every data config on a world shares one image store, hence one
feature-cache entry, and the world's interleaved documents and curated set reuse the caption shards' images. When a
source with images reads the user's data, only the world locations routed are indexed (with the user's images the
store is the run's own anyway), and when every source with images does, no world image is (world text is read alone).
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
from harness.data.formats.base import CONVERSATION, DOC, PAIR, TEXT, ImageRef, skip
from harness.data.formats.images import UndecodableImage, decode, decode_sized, pixel_digest, read_bytes
from harness.data.formats.paths import expand, stat_key
from harness.data.locations import Location, route

# Bump when the index layout or the decode path changes. Two numbers, because the world's export indices keep the
# key they had before original sizes were recorded: the store hash (the shipped feature-cache keys) hashes their
# names. Their images are all the world's native size, so a missing originals file says nothing unknown.
INDEX_VERSION = 2  # user data (v2: original sizes in originals.npy; indexed at the run's image size)
WORLD_INDEX_VERSION = 1  # the world's export
STORE_VERSION = 1  # in the store hash
ORIGINALS = "originals.npy"  # int32 [n_images, 2]: each image's (width, height) in its file
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
    """One location's cached index: ``kind``, ``records`` (local image ids), ``files``, ``table``, ``skipped``, and
    ``originals`` (``[n_images, 2]`` width, height; None for an index written before they were recorded)."""

    def __init__(self, path: Path):
        self.path = path
        meta = json.loads((path / "meta.json").read_text())
        self.kind, self.skipped = meta["kind"], meta["skipped"]
        self.records = json.loads((path / "records.json").read_text())
        self.files = [f or str(path / BLOB) for f in json.loads((path / "files.json").read_text())]
        self.table = np.load(path / "images.npy")
        self.originals = np.load(path / ORIGINALS) if (path / ORIGINALS).is_file() else None


class _Indexer:
    """Turns a reader's records into records with local image ids; reads and decodes each distinct image once."""

    def __init__(self, size: int, out: Path, memo: dict[tuple[int, bytes], tuple[bytes, tuple[int, int]]]):
        self.size, self.out, self.memo = size, out, memo
        self.files: list[str] = []
        self._file_ids: dict[str, int] = {}
        self.rows: list[tuple] = []
        self.originals: list[tuple[int, int]] = []
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
        seen = self.memo.get((self.size, raw))
        if seen is None:  # bytes no index of this build has decoded at this size yet
            try:
                pixels, original = decode_sized(data, self.size)
            except UndecodableImage:
                return "undecodable_image"
            seen = self.memo[(self.size, raw)] = (pixel_digest(pixels), original)
        digest, original = seen
        if digest not in self._by_pixels:
            if isinstance(ref, bytes):
                ref = self._store(ref)
            fid = self._file_ids.setdefault(ref.path, len(self._file_ids))
            if fid == len(self.files):
                self.files.append(ref.path)
            self._by_pixels[digest] = len(self.rows)
            self.rows.append((fid, ref.offset, len(data), digest))
            self.originals.append(original)
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
    np.save(out / ORIGINALS, np.array(ix.originals, dtype=np.int32).reshape(-1, 2))
    return len(ix.rows)


def index_key(loc: Location, files: list[Path], images: Path | None, size: int) -> dict:
    """The cache key of one location's index at image ``size`` (text-only user data: no size, one index for all)."""
    world = loc.root == "world"
    images_key = None if images is None else [str(images.resolve()), images.stat().st_mtime_ns if images.exists()
                                              else None]
    has_images = FORMATS.get(loc.format).kind != TEXT
    return {"format": loc.format, "files": stat_key(files), "images": images_key,
            "size": size if world or has_images else None, "v": WORLD_INDEX_VERSION if world else INDEX_VERSION}


def index_location(loc: Location, roots: dict[str, Path], size: int, cache_dir: Path, log=print,
                   memo: dict | None = None) -> LocationIndex:
    """The cached index of one location (built on first use; parallel jobs wait for one builder). ``memo`` maps
    (size, hash of encoded bytes) to (pixel digest, original size) across the locations of one build, so an image
    exported into several files (the world's caption and synthetic shards, its document images) is decoded once."""
    memo = {} if memo is None else memo
    root = roots[loc.root]
    files = expand(loc.path, root)
    images = (root / loc.images) if loc.images else None
    key = index_key(loc, files, images, size)
    reader = FORMATS.get(loc.format)()

    def build(tmp: Path) -> dict:
        t0, skipped = time.time(), Counter()
        records = (rec for f in files for rec in reader.read([f], images or f.parent, skipped))
        n_images = _index(reader.kind, records, size, tmp, skipped, memo)
        n = len(json.loads((tmp / "records.json").read_text()))
        at = f" at {size} px" if n_images else ""
        log(f"[corpus] indexed {loc.describe()}: {n} records, {n_images} images{at}, skipped "
            f"{dict(skipped) or 'nothing'} in {time.time() - t0:.1f} s")
        return {"key": key, "kind": reader.kind, "records": n, "images": n_images, "skipped": dict(skipped)}

    path = Path(cache_dir) / "corpus" / f"{loc.format}-{content_hash(key)}"
    return LocationIndex(build_once(path, build, log=log))


def image_sizes(ix: LocationIndex, native: int) -> np.ndarray:
    """``[n_images, 2]`` original (width, height) of an index's images; an index of the world's export written before
    they were recorded holds the world's images, all ``native`` px square."""
    if ix.originals is not None:
        return ix.originals
    return np.full((len(ix.table), 2), native, dtype=np.int32)


class Corpus:
    """The routed sources' records over one de-duplicated image store (see the module docstring). ``input_size``:
    the largest side the run's encoders take (what the summary compares original sizes with)."""

    def __init__(self, routes: dict[str, Location], indices: dict[Location, LocationIndex], order: list[Location],
                 size: int, input_size: int | None = None, native: int | None = None):
        self.routes, self.size = routes, size
        self.input_size = input_size or size
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
                                  "v": STORE_VERSION})
        self._parts = {s: Part(indices[loc].kind, _remap(indices[loc], local[loc])) for s, loc in routes.items()}
        self._skipped = {s: dict(indices[loc].skipped) for s, loc in routes.items()}
        self._sizes = {s: _size_summary(image_sizes(indices[loc], native or size), size, self.input_size)
                       for s, loc in routes.items()}

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

    def upsampled(self) -> list[str]:
        """One line per source some of whose images are smaller than the encoders' input (empty: none are)."""
        out = []
        for s, z in self._sizes.items():
            if z["upsampled"]:
                out.append(f"data source '{s}': {z['upsampled']} of {z['images']} images have a shorter side below "
                           f"the run's {self.input_size} px input (originals {_range(z)}); they are upsampled, so "
                           f"this resolution adds no detail to them")
        return out

    def summary(self) -> dict:
        """What the run record should carry about its data. Per source, ``image_px``: the original images' width
        and height (min, median, max; None for text), ``stored_px`` the side they are stored at, ``upsampled`` how
        many have a shorter side below ``input_px``, the largest input the run's encoders take."""
        return {"hash": self.hash, "image_size": self.size, "input_px": self.input_size, "images": len(self._store),
                "duplicates": self.duplicates,
                "sources": {s: {"format": loc.format, "path": loc.path, "root": loc.root,
                                "records": len(self._parts[s]), "skipped": self._skipped[s], **self._sizes[s]}
                            for s, loc in self.routes.items()}}

    def __repr__(self) -> str:
        return f"Corpus({self.hash}, {len(self._store)} images, sources: {', '.join(self._parts)})"


def _size_summary(sizes: np.ndarray, stored: int, input_size: int) -> dict:
    """``sizes``: ``[n, 2]`` (width, height) of one location's images."""
    if not len(sizes):
        return {"images": 0, "image_px": None, "stored_px": None, "upsampled": 0}
    stats = np.stack([sizes.min(0), np.median(sizes, 0), sizes.max(0)]).astype(int)  # [3 (min, median, max), 2]
    return {"images": len(sizes), "image_px": {"width": stats[:, 0].tolist(), "height": stats[:, 1].tolist()},
            "stored_px": stored, "upsampled": int((sizes.min(1) < input_size).sum())}


def _range(z: dict) -> str:
    w, h = z["image_px"]["width"], z["image_px"]["height"]
    return f"width {w[0]}-{w[2]} px, height {h[0]}-{h[2]} px, median {w[1]}x{h[1]}"


def _remap(ix: LocationIndex, ids: np.ndarray) -> list[dict]:
    if ix.kind in (PAIR, CONVERSATION):
        return [{**r, "image": int(ids[r["image"]])} for r in ix.records]
    if ix.kind == DOC:
        return [{"images": [None if i is None else int(ids[i]) for i in r["images"]], "texts": r["texts"]}
                for r in ix.records]
    return ix.records


def run_image_size(cfg) -> int:
    """The largest side the run's encoders take as input: ``resolution``, or ``hr_resolution`` when the connector
    uses the high-resolution branch and it is larger. Encoders resize the store's images to their input (antialiased
    bilinear, ``harness.models.encoders.base.to_pixels``), so a store at this size is never upsampled by them."""
    from harness.models.connectors import CONNECTORS

    sides = [int(cfg.resolution)]
    if CONNECTORS.get(cfg.connector.name).needs_hr:
        sides.append(int(cfg.hr_resolution))
    return max(sides)


def store_size(native: int, image_size: int | None, world_images: bool, own_images: bool) -> int:
    """The store's side S (see the module docstring): the world's native size unless the user's images are in it."""
    want = image_size or native
    if not own_images:
        return native
    return max(native, want) if world_images else want


def _has_images(loc: Location) -> bool:
    return FORMATS.get(loc.format).kind != TEXT


def build_corpus(datas: list, world, cache_dir: str | Path, data_dir: str | Path, log=print,
                 image_size: int | None = None) -> Corpus:
    """The corpus for data configs ``datas`` (those the run's stages train on): sources routed, the world exported
    if a source reads from it, every location indexed (cached), images joined. ``image_size``: the largest input
    side of the run's encoders (:func:`run_image_size`); the user's images are stored at it (None: the world's
    native size). Raises ValueError for a source whose location yields no valid record."""
    from harness.world.export import PARTS, export_sources, export_world

    routes, cache_dir = route(datas), Path(cache_dir).expanduser()
    roots, order = {"data": Path(data_dir).expanduser()}, []
    native = world.cfg.native_resolution
    from_world = [loc for loc in routes.values() if loc.root == "world"]
    if from_world:
        roots["world"] = export_world(world, cache_dir, log)
        export = {s: Location(d["format"], d["path"], "world", d["images"]) for s, d in export_sources(world).items()}
        routes = {s: export[s] if loc.root == "world" and not loc.path else loc for s, loc in routes.items()}
        # The whole export, in its fixed order, whenever a world source has images (stable ids: one store and one
        # feature-cache entry for every data config on the world) or every source is the world's (as always). Not
        # beside the user's images: that store is the run's own anyway, and the world's 8000 images would be
        # encoded (at the user's resolution) for a curated set of 400 (MiniGPT-4's second stage).
        own = any(loc.root != "world" and _has_images(loc) for loc in routes.values())
        if not own and (len(from_world) == len(routes) or any(_has_images(loc) for loc in from_world)):
            order = [export[s] for s in PARTS]
    order += sorted(set(routes.values()) - set(order), key=lambda loc: (loc.root, loc.format, loc.path, loc.images))
    world_images = any(loc.root == "world" and _has_images(loc) for loc in order)
    own_images = any(loc.root != "world" and _has_images(loc) for loc in order)
    size = store_size(native, image_size, world_images, own_images)
    memo: dict = {}
    indices = {loc: index_location(loc, roots, native if loc.root == "world" else size, cache_dir, log, memo)
               for loc in order}
    for source, loc in routes.items():
        if not indices[loc].records:
            files = ", ".join(str(f) for f in expand(loc.path, roots[loc.root])[:3])
            raise ValueError(f"data source '{source}' ({loc.describe()}) yielded no valid sample; skipped: "
                             f"{indices[loc].skipped or 'nothing (no records)'}; files: {files}")
    corpus = Corpus(routes, indices, order, size, image_size, native)
    for line in corpus.upsampled():
        log(f"[corpus] warning: {line}")
    return corpus
