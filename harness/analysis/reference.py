"""The shipped reference and a user's own results, kept apart.

``results/reference/`` ships with the repository: the records of the Quickstart and of every MM1 study (``runs/``,
``sweeps/``) and the tables and figures regenerated from them (``tables/``, ``figures/``). A user's own results sit
beside it in ``results/`` (``runs/``, ``sweeps/``, ``tables/``, ``figures/``, ``html/``; gitignored).

Reading: the reference lies inside the default results folder, so a user's view of ``results/`` leaves the shipped
records out (their own sweep's tables would otherwise silently average in runs they did not make) and says how many
it left out. They are read when asked for (``with_reference``) or when the folder read is the reference itself.

Writing: nothing is written into the reference unless regenerating it on purpose, from its own records::

    python -m harness.tables all --results results/reference --out results/reference --update-reference
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from harness.analysis.load import dedupe, load_runs, read_records, switch_of

REFERENCE = Path(__file__).resolve().parents[2] / "results" / "reference"
UPDATE_FLAG = "--update-reference"


def shown(path: str | Path) -> str:
    """``path`` relative to the working directory when it lies under it (as a user typed it), else absolute."""
    p = Path(path).expanduser().resolve()
    return str(p.relative_to(Path.cwd())) if p.is_relative_to(Path.cwd()) else str(p)


def within(path: str | Path, folder: Path | None = None) -> bool:
    """Whether ``path`` is ``folder`` (default: the reference) or lies inside it (links and ``~`` resolved)."""
    return Path(path).expanduser().resolve().is_relative_to(REFERENCE if folder is None else folder)


def holds_reference(results: str | Path) -> bool:
    """Whether ``results`` contains the shipped reference without being (inside) it: the default ``results/``."""
    return within(REFERENCE, Path(results).expanduser().resolve()) and not within(results)


def read_runs(results: str | Path, *, switches: bool = False, with_reference: bool = False) -> tuple[pd.DataFrame, int]:
    """The tidy runs under ``results`` (``load.load_runs``) and how many shipped records were left out.

    When ``results`` merely contains the reference, its records are left out before duplicates are resolved (a
    user's failed rerun of a shipped point still shows as failed) unless ``with_reference``.
    """
    if with_reference or not holds_reference(results):
        return load_runs(results, switches=switches), 0
    # load_runs reads a whole folder; to leave a subfolder out, each kept record is loaded on its own
    records = read_records(Path(results))
    own = [(p, r) for p, r in records if not within(p)]
    kept = dedupe([(p, r) for p, r in own if switches or not switch_of(r)])
    with tempfile.TemporaryDirectory() as empty:
        columns = load_runs(empty).columns
    rows = [row for path, _ in kept for row in _rows_of(path, switches)]
    frame = pd.DataFrame(rows, columns=columns).astype({"value": float, "stderr": float})
    return frame, len(records) - len(own)


def _rows_of(record: Path, switches: bool) -> list[dict]:
    """The tidy rows of one record, as the loader itself builds them."""
    frame = load_runs(record.parent, switches=switches)
    return frame[frame["record_path"] == str(record)].to_dict("records")


def left_out_note(n: int) -> str:
    """One line for a view of ``results/`` that left ``n`` shipped records out ("" when there were none)."""
    return f"{n} shipped records under {shown(REFERENCE)} left out: they are read on their own from there" if n else ""


def write_refusal(out: str | Path, results: str | Path, update_reference: bool) -> str:
    """Why writing tables/figures into ``out`` is refused ("" when it is allowed): the shipped reference is written
    only with ``--update-reference``, and then only from its own records."""
    if not within(out):
        return ""
    ref = shown(REFERENCE)
    if not update_reference:
        return (f"refusing to write into the shipped reference {ref}: write elsewhere with --out DIR, or regenerate "
                f"its tables on purpose with --results {ref} --out {ref} {UPDATE_FLAG}")
    if not within(results):
        return f"{UPDATE_FLAG} regenerates the shipped tables from the shipped records only: pass --results {ref}"
    return ""
