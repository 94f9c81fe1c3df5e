"""File specs as data sets are published: brace ranges, brace alternatives and globs.

img2dataset and webdataset name shard sets ``shards/{00000..00099}.tar``; OBELICS and LLaVA ship a few files that a
spec like ``{train,extra}.jsonl`` or ``part-*.parquet`` names. :func:`expand` turns a spec into the ordered list of
paths, and that order is the order records are read in (it is part of the training stream, so it never depends on
directory listing order):

- ``{a..b}``: integers a to b inclusive (descending if b < a); zero-padded to the width of ``a`` when ``a`` has a
  leading zero or both ends have the same width (``{00000..00099}`` -> ``00000`` ... ``00099``).
- ``{x,y,z}``: the alternatives, in the order written.
- several groups expand left to right as a product; nested braces and ``{x}`` alone are rejected (no data set
  needs them, and a typo should not silently name a file with braces in it).
- after brace expansion, a path with ``*``, ``?`` or ``[`` is a glob, replaced by its matches in sorted order.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

_GROUP = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")


def expand_braces(spec: str) -> list[str]:
    """Brace expansion only (no filesystem access). Raises ValueError for nested, unbalanced or empty groups."""
    return _expand(spec, spec)


def _expand(spec: str, whole: str) -> list[str]:
    m = _GROUP.search(spec)
    head = spec if m is None else spec[: m.start()]
    if "{" in head or "}" in head:  # a brace before the first complete group: nested or unbalanced
        raise ValueError(f"unbalanced or nested braces in file spec '{whole}'; use {{a..b}} ranges or {{x,y}} lists")
    if m is None:
        return [spec]
    body, tail = m.group(1), spec[m.end() :]
    rng = _RANGE.match(body)
    if rng:
        a, b = rng.group(1), rng.group(2)
        lo, hi = int(a), int(b)
        pad = len(a) if (a.startswith("0") and len(a) > 1) or len(a) == len(b) else 0
        step = 1 if hi >= lo else -1
        options = [str(i).zfill(pad) for i in range(lo, hi + step, step)]
    elif "," in body:
        options = body.split(",")
    else:
        raise ValueError(f"brace group '{{{body}}}' in file spec '{whole}' is neither a range {{a..b}} "
                         f"nor a list {{x,y}}")
    return [head + o + t for o in options for t in _expand(tail, whole)]


def expand(spec: str, root: Path) -> list[Path]:
    """``spec`` relative to ``root`` -> paths in reading order. Patterns that match nothing are kept as their
    literal path, so the reader counts them as ``missing_file`` instead of silently reading less."""
    out: list[Path] = []
    for p in expand_braces(spec):
        path = root / p
        if any(c in p for c in "*?["):
            matches = sorted(glob.glob(str(path)))
            out += [Path(x) for x in matches] if matches else [path]
        else:
            out.append(path)
    return out


def stat_key(paths: list[Path]) -> list[list]:
    """(name, size, mtime_ns) of each path, None for a missing one: the cache key of an index over these files."""
    key = []
    for p in paths:
        try:
            st = p.stat()
            key.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
        except FileNotFoundError:
            key.append([str(p), None, None])
    return key
