"""``python -m harness.cache {list,clean}``: what the shared cache holds, and removing parts of it safely.

The cache (``harness.artifacts``) is ``<cache>/<kind>/<entry>/`` with kinds ``world``, ``tokenizers``, ``llm``,
``encoders`` (pre-trained backbones) and ``features`` (frozen-encoder features, ``harness.data.features``, whose
``meta.json`` holds the feature key: artifact, layer, resolution, split, world). An entry is complete once it holds
``DONE``; builders write into a hidden sibling ``.<entry>.tmp-<pid>-<id>`` and rename it into place. Feature caches
have no size limit, so sweeps over encoders and resolutions fill disks: this is how to see and trim them.

The cache folder is found exactly as a sweep point finds it: the sweep config is composed (``sweeps/sweep.yaml``;
``paths/default.yaml`` reads ``MM_ABLATE_CACHE``, else ``$XDG_CACHE_HOME/mm-ablate``, else ``~/.cache/mm-ablate``;
the gitignored ``local/default.yaml`` may override it), and trailing Hydra overrides work as for ``sweep.py``
(``python -m harness.cache list paths.cache_dir=/scratch/cache``).

``clean`` selects by kind (``--features``, ``--encoders``, ``--all``) and/or age (``--older-than DAYS``, counted from
the ``DONE`` marker) and is a dry run unless ``--yes``. Safety rules:

* a folder without ``DONE`` whose newest file is younger than an hour is being built: it is never deleted, and the
  listing says so. Older ones are leftovers of killed builders and go with the rest of their kind.
* a complete entry is renamed to a hidden ``.<entry>.deleting-<pid>`` name before it is removed, so an interrupted
  clean never leaves a half-deleted folder that still holds ``DONE`` (a run would trust it).
* lock files (``.<entry>.lock``, empty) are left: a builder may be holding one.

A run that already memory-mapped deleted features keeps reading them (Linux keeps unlinked files alive); the next
run that needs them encodes them again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from harness.artifacts import DONE

BUILDING_S = 3600  # a folder without DONE written to within this many seconds is a build in progress


@dataclass
class Entry:
    kind: str
    path: Path
    done: bool
    size: int  # bytes
    age_s: float  # since DONE was written, or (no DONE) since the last write
    key: dict | None  # features: the cache key from meta.json

    @property
    def building(self) -> bool:
        return not self.done and self.age_s < BUILDING_S


def cache_dir(overrides: list[str]) -> Path:
    """``paths.cache_dir`` of the composed sweep config (environment, local overrides and ``overrides`` applied)."""
    from harness.config.store import compose_sweep

    return Path(compose_sweep(overrides).paths.cache_dir).expanduser()


def _entry(kind: str, path: Path, now: float) -> Entry:
    files = [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
    size = sum(p.stat().st_size for p in files)
    done = (path / DONE).is_file()
    stamp = (path / DONE).stat().st_mtime if done else max([path.stat().st_mtime] + [p.stat().st_mtime for p in files])
    key = None
    if kind == "features" and (path / "meta.json").is_file():
        key = json.loads((path / "meta.json").read_text()).get("key")
    return Entry(kind, path, done, size, max(0.0, now - stamp), key)


def scan(root: Path) -> list[Entry]:
    """Every entry folder under every kind folder of ``root`` (hidden in-progress builds included)."""
    now = time.time()
    if not root.is_dir():
        return []
    kinds = sorted(p for p in root.iterdir() if p.is_dir())
    return [_entry(k.name, p, now) for k in kinds for p in sorted(k.iterdir()) if p.is_dir()]


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def human_age(s: float) -> str:
    return f"{s / 60:.0f} min" if s < 3600 else f"{s / 3600:.1f} h" if s < 86400 else f"{s / 86400:.1f} d"


def status(e: Entry) -> str:
    if e.done:
        return "ok"
    if e.building:
        return f"building (no {DONE}, last write {human_age(e.age_s)} ago)"
    return f"partial (no {DONE}, abandoned {human_age(e.age_s)} ago)"


def describe_key(key: dict | None) -> str:
    return "" if not key else " ".join(f"{k}={v}" for k, v in key.items() if k not in ("dtype", "v"))


def cmd_list(root: Path) -> None:
    entries = scan(root)
    print(f"cache {root}: {len(entries)} entries, {human_size(sum(e.size for e in entries))}")
    print(f"{'KIND':<11} {'NAME':<44} {'SIZE':>9} {'AGE':>8}  STATUS  KEY")
    for e in entries:
        line = f"{e.kind:<11} {e.path.name:<44} {human_size(e.size):>9} {human_age(e.age_s):>8}  {status(e)}"
        print(f"{line}  {describe_key(e.key)}".rstrip())


def remove(path: Path) -> None:
    """Rename out of the way first: the entry stops looking complete before any of its files go."""
    doomed = path.with_name(f".{path.name.lstrip('.')}.deleting-{os.getpid()}")
    os.rename(path, doomed)
    shutil.rmtree(doomed)


def cmd_clean(root: Path, kinds: set[str] | None, older_than_days: float | None, yes: bool) -> None:
    chosen = [
        e
        for e in scan(root)
        if (kinds is None or e.kind in kinds) and (older_than_days is None or e.age_s >= older_than_days * 86400)
    ]
    freed, count = 0, 0
    for e in chosen:
        name = f"{e.kind}/{e.path.name}"
        if e.building:
            print(f"skip          {name}: {status(e)}")
            continue
        print(f"{'delete' if yes else 'would delete':<13} {name} ({human_size(e.size)}, {status(e)})")
        if yes:
            remove(e.path)
        freed, count = freed + e.size, count + 1
    verb = "deleted" if yes else "would be deleted (dry run: add --yes to delete)"
    print(f"{count} entries, {human_size(freed)} {verb}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.cache", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every entry: kind, name, size, age, status (and feature keys)")
    clean = sub.add_parser("clean", help="delete entries by kind and/or age (dry run unless --yes)")
    clean.add_argument("--features", action="store_true", help="cached frozen-encoder features")
    clean.add_argument(
        "--encoders",
        action="store_true",
        help="encoders pre-trained by the harness (library weights live in the HF cache)",
    )
    clean.add_argument("--all", action="store_true", help="every kind (world, tokenizers, llm, ...)")
    clean.add_argument("--older-than", type=float, metavar="DAYS", help="only entries built more than DAYS ago")
    clean.add_argument("--yes", action="store_true", help="really delete (default: dry run)")
    for p in sub.choices.values():
        p.add_argument("overrides", nargs="*", help="Hydra overrides, as for sweep.py (paths.cache_dir=...)")
    args = parser.parse_args(argv)
    root = cache_dir(args.overrides)
    if args.command == "list":
        cmd_list(root)
        return 0
    kinds = {k for k in ("features", "encoders") if getattr(args, k)}
    if not kinds and not args.all and args.older_than is None:
        parser.error("clean: say what to delete: --features, --encoders, --all and/or --older-than DAYS")
    cmd_clean(root, None if args.all or not kinds else kinds, args.older_than, args.yes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
