"""Data errors before anything is built: every weighted source of every stage resolved to its files.

``check_sources(cfg)`` runs in seconds and decodes no image, so a wrong path, a wrong image folder or an empty file
fails the point with one line before the world, the backbones and the connector are built (minutes on a cold
cache), instead of as a traceback from the corpus after them. What it checks, per source a stage weights:

- a source reading the user's data (root ``data``): ``paths.data_dir`` exists; its file spec matches at least one
  file; the first files yield a record (the reader stops at the first one, so a big data set costs one shard or
  one JSON file); and when records name image files, one of the first ones exists (a wrong ``images`` folder);
- a source reading a named part of the world's export (root ``world`` with a path): the spec names export files;
- the world's own export of a source (no ``format``): nothing to check, the export always has it.

What is left to the corpus: damaged images and records further into the data (skipped and counted per reason).
"""

from __future__ import annotations

from collections import Counter
from fnmatch import fnmatchcase
from itertools import islice
from pathlib import Path

from omegaconf import DictConfig

from harness.config.schema import ConfigError
from harness.data.formats import FORMATS, ImageRef
from harness.data.formats.base import DOC
from harness.data.formats.paths import expand, expand_braces
from harness.data.locations import ROOTS, Location, location, stage_data, used_data
from harness.data.mixture import normalise_weights

IMAGE_PROBES = 20  # records whose image files are looked for before concluding the image folder is wrong


def accepted() -> str:
    formats = ", ".join(f"{n} ({' '.join(FORMATS.get(n).suffixes)})" for n in FORMATS.names())
    return f"formats: {formats}; roots: {', '.join(ROOTS)} (data = paths.data_dir, set by $MM_ABLATE_DATA; " \
           f"world = the world's export)"


def check_sources(cfg: DictConfig) -> None:
    """Raises :class:`ConfigError` (one line: the source, its path spec, what was looked for, what is accepted) for
    the first weighted source of any stage whose files cannot be found or hold no record. Reads no image pixels."""
    data_root = Path(str(cfg.paths.data_dir)).expanduser()
    n_train = int(cfg.world.n_train)
    for data in used_data(cfg, stage_data(cfg)):
        try:
            weighted = normalise_weights(dict(data.mixture))
        except ValueError as err:
            raise ConfigError(f"data '{data.name}'.mixture: {err}") from None
        for source in weighted:
            loc = location(data, source)
            where = f"data '{data.name}'.sources.{source}"
            if loc.root == "world":
                if loc.path:
                    _check_export_path(loc, where, n_train)
                continue
            _check_user_data(loc, where, data_root)


def _check_export_path(loc: Location, where: str, n_train: int) -> None:
    from harness.world.export import export_sources

    class _Sized:  # export_sources needs the number of training samples only; the world is not built yet
        def samples(self, split: str) -> range:
            return range(n_train)

    files, folders = [], []
    for spec in export_sources(_Sized()).values():
        files += expand_braces(spec["path"])
        folders += [spec["images"]] if spec["images"] else []
    folders += sorted({f.rsplit("/", 1)[0] + "/images" for f in files if f.endswith(".jsonl")})
    missing = [n for n in expand_braces(loc.path) if not any(fnmatchcase(f, n) for f in files)]
    if missing:
        raise ConfigError(f"{where}: {loc.format} path '{loc.path}' names no file of the world's export (looked for "
                          f"'{missing[0]}'); the export holds {', '.join(_short(files))}")
    if loc.images and loc.images.rstrip("/") not in folders:
        raise ConfigError(f"{where}: images '{loc.images}' is not a folder of the world's export; it has "
                          f"{', '.join(folders)}")


def _short(files: list[str]) -> list[str]:
    """Export file names with runs of shards shown once (``caption/00000.tar .. caption/00007.tar``)."""
    out, groups = [], {}
    for f in files:
        groups.setdefault(f.rsplit("/", 1)[0] if f.endswith(".tar") else f, []).append(f)
    for members in groups.values():
        out.append(members[0] if len(members) == 1 else f"{members[0]} .. {members[-1]}")
    return out


def _check_user_data(loc: Location, where: str, root: Path) -> None:
    reader = FORMATS.get(loc.format)()
    if not root.is_dir():
        raise ConfigError(f"{where}: paths.data_dir '{root}' is not a folder, so {loc.format} path '{loc.path}' "
                          f"matches nothing; set paths.data_dir (or $MM_ABLATE_DATA) to the folder that holds it")
    files = [f for f in expand(loc.path, root) if f.is_file()]
    if not files:
        looked = [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in expand(loc.path, root)]
        shown = ", ".join(looked[:2]) + (f" and {len(looked) - 2} more" if len(looked) > 2 else "")
        raise ConfigError(f"{where}: no file matches {loc.format} path '{loc.path}' under paths.data_dir={root} "
                          f"(looked for {shown}: {' or '.join(reader.suffixes)} files); accepted {accepted()}")
    images = root / loc.images if loc.images else None
    if images is not None and not images.is_dir():
        raise ConfigError(f"{where}: images folder '{loc.images}' does not exist under paths.data_dir={root}; it "
                          f"is the folder the image paths in '{loc.path}' are relative to")
    skipped: Counter = Counter()
    records = (rec for f in files for rec in reader.read([f], images or f.parent, skipped))
    probe = list(islice(records, IMAGE_PROBES))
    if not probe:
        raise ConfigError(f"{where}: {loc.format} path '{loc.path}' matches {len(files)} file(s) under "
                          f"paths.data_dir={root} but they hold no valid {reader.kind} record (skipped: "
                          f"{dict(skipped) or 'nothing, they hold no entry'}); see harness.data.formats.{loc.format} "
                          f"for the layout it reads")
    refs = [r for rec in probe for r in (rec["images"] if reader.kind == DOC else [rec.get("image")])
            if isinstance(r, ImageRef) and r.size < 0]  # whole image files; tar members and bytes are in the data
    if refs and not any(Path(r.path).is_file() for r in refs):
        folder = loc.images or "(the annotation file's folder)"
        raise ConfigError(f"{where}: none of the first {len(refs)} images its records name exists (looked for "
                          f"{refs[0].path}); images '{folder}' must be the folder the image paths in "
                          f"'{loc.path}' are relative to")
