"""Content-addressed, atomically written artifact folders (world, tokenizer, pre-trained backbones), and
:func:`atomic_write`, the one way the harness writes a single file atomically (records, checkpoints, TSV exports).

An artifact lives in ``<cache>/<kind>/<name>-<hash12>/`` where the hash covers everything that determines its
contents (its config and the hashes of the artifacts it was built from). A folder is valid only once it holds a
``DONE`` marker; it is built in a private temporary sibling and renamed into place, so a killed builder never leaves
a half-written artifact that a later run would read, and two jobs building the same artifact at once both end up
using one complete copy.
"""

from __future__ import annotations

import contextvars
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DONE = "DONE"

# Inside ``no_wait()``, an artifact another process is building raises Busy instead of waiting for it.
_NO_WAIT: contextvars.ContextVar[bool] = contextvars.ContextVar("artifacts_no_wait", default=False)


class Busy(Exception):
    """Another process holds this artifact's build lock (raised only inside :func:`no_wait`)."""


@contextmanager
def no_wait():
    """Within the block, :func:`build_once` raises :class:`Busy` for an artifact another process is building,
    instead of queueing on its lock: a caller with several artifacts to get can build a free one meanwhile."""
    token = _NO_WAIT.set(True)
    try:
        yield
    finally:
        _NO_WAIT.reset(token)


def canonical_json(obj: Any) -> str:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_hash(obj: Any, n: int = 12) -> str:
    return hashlib.sha1(canonical_json(obj).encode()).hexdigest()[:n]


def tokenizer_fingerprint(tokenizer) -> str:
    """Content hash of a tokenizer (vocabulary, merges, special tokens), for the cache keys of artifacts trained with
    it. Not its ``name_or_path``: that is the folder it was loaded from, so a cache moved, mounted elsewhere or shadowed
    by symlinks (``bench cache``) would miss every backbone and pre-train it again, and ``load_vlm`` from another cache
    would silently rebuild different weights."""
    backend = getattr(tokenizer, "backend_tokenizer", None)  # a fast tokenizer's full JSON; slow ones: the vocab
    body = backend.to_str() if backend is not None else sorted(tokenizer.get_vocab().items())
    return content_hash({"tokenizer": body, "special": sorted(tokenizer.all_special_tokens)})


@contextmanager
def atomic_write(path: Path, mode: str = "w", fsync: bool = False, **open_kw):
    """``with atomic_write(path) as fh: fh.write(...)``: write a file so that readers see the old file or the new one,
    never half of one. The block writes to a hidden sibling ``.<name>.<pid>.<id>.tmp`` (``open(tmp, mode,
    **open_kw)``), which is renamed onto ``path`` when the block ends without an error (after an ``fsync`` with
    ``fsync=True``: the new file survives a power cut once the rename has). A kill mid-write leaves the previous
    file whole; an error in the block removes the sibling and leaves ``path`` untouched. Parent folders are
    created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp")
    try:
        with open(tmp, mode, **open_kw) as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)  # atomic on POSIX
    finally:
        tmp.unlink(missing_ok=True)


def is_complete(path: Path) -> bool:
    return (path / DONE).is_file()


def build_once(final: Path, build: Callable[[Path], dict[str, Any]], log: Callable[[str], None] = print) -> Path:
    """Return ``final``, building it with ``build(tmp_dir)`` first if no complete copy exists.

    ``build`` writes into the temporary folder and returns metadata, stored as ``meta.json`` (with the wall time).
    Concurrent callers on one machine (a parallel local sweep starting cold) serialise on an advisory lock, so one
    job builds and the others wait and reuse its result instead of repeating minutes of pre-training. Where locks
    are not honoured (some network filesystems) the temp-dir + rename protocol alone still keeps the result correct.
    """
    if is_complete(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(final.parent / f".{final.name}.lock", wait=not _NO_WAIT.get()):
        if is_complete(final):
            log(f"[artifacts] {final.name}: built by another job while waiting")
            return final
        token = _NO_WAIT.set(False)  # this build has its lock: what it needs in turn it waits for
        try:
            return _build(final, build, log)
        finally:
            _NO_WAIT.reset(token)


@contextmanager
def file_lock(path: Path, wait: bool = True):
    """Exclusive advisory lock on ``path`` (created if missing) for the duration of the block; a no-op where the
    filesystem does not support ``flock``. ``wait=False``: raise :class:`Busy` if another process holds it."""
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise Busy(str(path)) from err
        except OSError:  # filesystem without lock support: fall back to the rename protocol alone
            pass
        try:
            yield
        finally:
            try:
                fcntl.flock(fh, fcntl.LOCK_UN)
            except OSError:
                pass


def _build(final: Path, build: Callable[[Path], dict[str, Any]], log: Callable[[str], None]) -> Path:
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    t0 = time.time()
    try:
        meta = build(tmp) or {}
        meta["build_wall_s"] = round(time.time() - t0, 2)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
        (tmp / DONE).write_text("ok\n")
        if final.exists() and not is_complete(final):
            shutil.rmtree(final, ignore_errors=True)  # a stale half-written folder from an older layout
        try:
            os.rename(tmp, final)
        except OSError:
            if not is_complete(final):
                raise
            log(f"[artifacts] {final.name}: another job finished first; using its copy")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def read_meta(path: Path) -> dict[str, Any]:
    p = path / "meta.json"
    return json.loads(p.read_text()) if p.is_file() else {}
