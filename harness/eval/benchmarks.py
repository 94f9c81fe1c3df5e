"""Real benchmarks as VLMEvalKit-style TSV files, a registry of MM1's eight tasks, and the world's own export.

File format (VLMEvalKit, docs/dependencies.md): one row per query, tab-separated with a header; quoted as pandas'
``to_csv(sep="\\t")`` writes it. Columns:

* ``index``: a unique id per row;
* ``image``: the image as base64 (PNG/JPEG bytes), or, to save space, the ``index`` of another row with the same
  image (VLMEvalKit's convention: a value of at most 64 characters that names another row; one that names none
  costs its row, which scoring skips and counts);
* ``question``: the question (empty or absent for captioning);
* ``answer``: the reference: one string, or a JSON / Python list literal of strings (the 10 VQA answers, the 5 COCO
  captions); for multiple choice, the letter of the right option;
* ``A``, ``B``, ``C``, ``D`` (optional): multiple-choice options. Every other column is kept in ``BenchItem.extra``.

Instead of ``image``, a file may have ``image_path`` (VLMEvalKit's layout for images kept as files): one path per
row, absolute or relative to the TSV's folder, read when the row is scored; a row whose file is missing or does not
decode is skipped and counted (harness.eval.runner).

Files are looked up under the benchmark root: an explicit folder (``eval.benchmark_root``), else ``$LMUData``
(VLMEvalKit's variable), else ``~/LMUData``. Nothing is downloaded: a missing file fails with its name and where to
put it. :func:`export_world_benchmarks` writes the world's captioning, VQA and multiple-choice test sets in the same
format, so the reader and the Evaluator's TSV path are tested on data whose scores are known.

Benchmarks by path. An ``eval.benchmarks`` entry that ends in ``.tsv`` or contains a ``/`` is a file (relative
paths are resolved against the working directory), optionally followed by ``:caption``, ``:vqa`` or ``:mcq``
(:func:`parse_benchmark`). Its record ``task`` is the file stem with every character outside ``[A-Za-z0-9_-]``
replaced by ``_``. An undeclared kind is inferred from the header and the first :data:`INFER_ROWS` rows: option
columns ``A`` and ``B`` -> mcq; else no ``question`` column, or only empty questions -> caption; else vqa. The
metric follows the kind (:data:`KIND_METRIC`: cider, vqa_accuracy, accuracy). :func:`resolve_benchmark` turns an
entry into a spec and a checked file, or one :class:`~harness.config.schema.ConfigError` line naming the fix.
"""

from __future__ import annotations

import ast
import base64
import csv
import io
import json
import os
import re
import string
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.artifacts import atomic_write
from harness.config.schema import ConfigError
from harness.data.formats.images import to_rgb
from harness.eval.tasks import RESERVED, is_world_task, register, world_tasks  # noqa: F401  (register: re-exported)
from harness.eval.tasks.tsv import (  # noqa: F401  (the registered benchmarks and their spec, re-exported)
    BENCHMARKS,
    KIND_COLUMNS,
    KIND_METRIC,
    KINDS,
    METRICS,
    MM1_BENCHMARKS,
    REQUIRED_COLUMNS,
    BenchmarkSpec,
)

INFER_ROWS = 100  # rows read to infer a kind: enough to see questions, without parsing a 1 GB file's images
OPTION_LETTERS = tuple(string.ascii_uppercase)
_IMAGE_REF_MAX = 64  # VLMEvalKit: an image cell this short is the index of the row that holds the image


def benchmark_root(root: str | Path | None = None) -> Path:
    """``root`` if given, else ``$LMUData``, else ``~/LMUData``."""
    return root_and_origin(root)[0]


def root_and_origin(root: str | Path | None = None) -> tuple[Path, str]:
    """The benchmark root and where it came from, as a message names it."""
    if root:
        return Path(root).expanduser(), f"eval.benchmark_root={root}"
    env = os.environ.get("LMUData")
    if env:
        return Path(env).expanduser(), f"$LMUData={env} (eval.benchmark_root is unset)"
    return Path.home() / "LMUData", "the default ~/LMUData (neither eval.benchmark_root nor $LMUData is set)"


def _missing_file_message(name: str, spec: BenchmarkSpec, path: Path, origin: str) -> str:
    return (
        f"benchmark '{name}' ({spec.title or name}, {spec.split} split) needs the file {path}, which does not exist "
        f"(folder from {origin}). Put {spec.file} into {path.parent}, set eval.benchmark_root (or the LMUData "
        f"environment variable) to the folder that holds it, or give the file's path instead of '{name}'. Format: a "
        f"VLMEvalKit-style TSV with columns {', '.join(REQUIRED_COLUMNS)} (+ question; A-D for multiple choice). "
        f"Data: {spec.source or '-'}."
    )


def benchmark_path(name: str, root: str | Path | None = None) -> Path:
    """The TSV file of benchmark ``name``; raises ``FileNotFoundError`` naming the file and where to put it."""
    spec = BENCHMARKS.get(name)
    folder, origin = root_and_origin(root)
    path = folder / spec.file
    if not path.is_file():
        raise FileNotFoundError(_missing_file_message(name, spec, path, origin))
    return path


# ---------------------------------------------------------------------------------------------------------------
# eval.benchmarks entries: registry keys and paths
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchRef:
    """One ``eval.benchmarks`` entry, parsed without reading anything."""

    entry: str  # as written
    task: str  # the record's ``task``: the registry key, or the file's sanitised stem
    key: str | None = None  # registry key; None for a path
    path: Path | None = None  # the file of a path entry, made absolute against the working directory
    kind: str | None = None  # declared kind of a path entry; None = inferred from the file


@dataclass(frozen=True)
class ResolvedBenchmark:
    """A benchmark ready to run: its spec (kind, metric) and the file, checked to exist and have the kind's columns."""

    task: str
    spec: BenchmarkSpec
    path: Path


def reserved_tasks() -> tuple[str, ...]:
    """Task names a file given by path must not take: the world's tasks and the averages' (harness.eval.tasks)."""
    return (*world_tasks(), *RESERVED)


def task_name(path: str | Path) -> str:
    """The record's task name for a file: its stem, characters outside ``[A-Za-z0-9_-]`` replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", Path(path).stem) or "_"


def parse_benchmark(entry: str) -> BenchRef:
    """``coco`` (a registry key), ``/data/My.tsv`` or ``/data/My.tsv:vqa`` (a path, kind declared) -> a
    :class:`BenchRef`. Raises :class:`ConfigError` for a kind that is not one of :data:`KINDS`, a kind on a
    registry key, or a task name the record reserves. Whether a key is registered is :func:`resolve_benchmark`'s."""
    text = str(entry).strip()
    kind = None
    head, sep, tail = text.rpartition(":")
    if sep and head and "/" not in tail:  # a colon inside a folder name is not a kind suffix
        text, kind = head, tail
    is_path = text.endswith(".tsv") or "/" in text or os.sep in text
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"eval.benchmarks: unknown kind '{kind}' in '{entry}'; write <path>.tsv:caption, "
                          f"<path>.tsv:vqa or <path>.tsv:mcq, or leave the kind out to infer it from the columns")
    if not is_path:
        if kind is not None:
            raise ConfigError(f"eval.benchmarks: '{entry}': a kind is declared only for a file path; the registered "
                              f"benchmark '{text}' has its own (write '{text}')")
        return BenchRef(entry=str(entry), task=text, key=text)
    path = Path(text).expanduser()
    task = task_name(path)
    if task in reserved_tasks():
        raise ConfigError(f"eval.benchmarks: '{entry}' would be recorded as task '{task}', a name the record uses for "
                          f"{'a world task' if is_world_task(task) else 'its averages'}; rename the file")
    return BenchRef(entry=str(entry), task=task, path=path if path.is_absolute() else Path.cwd() / path, kind=kind)


def inspect_tsv(path: Path, rows: int = INFER_ROWS) -> tuple[list[str], bool]:
    """(header columns, whether any of the first ``rows`` rows has a non-empty question). Raises ``ValueError``
    for a file that is not a tab-separated table with a header."""
    _raise_csv_limit()
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        columns = list(reader.fieldnames or [])
        if not columns:
            raise ValueError("empty file (no header line)")
        questions = False
        for n, row in enumerate(reader):
            if n >= rows:
                break
            questions = questions or not _missing(row.get("question"))
    return columns, questions


def infer_kind(columns: Sequence[str], has_questions: bool) -> str:
    """The module docstring's rule: A and B -> mcq; no (non-empty) question -> caption; else vqa."""
    if "A" in columns and "B" in columns:
        return "mcq"
    return "vqa" if "question" in columns and has_questions else "caption"


def _column_problem(kind: str, columns: Sequence[str], has_questions: bool) -> str | None:
    missing = [c for c in KIND_COLUMNS[kind] if c not in image_columns(columns)]
    if missing:
        return (f"lacks column(s) {', '.join(missing)} that a {kind} benchmark needs (found: {', '.join(columns)}); "
                f"a {kind} TSV has {', '.join(KIND_COLUMNS[kind])} (image, or image_path naming files)")
    if kind in ("vqa", "mcq") and not has_questions:
        return f"has only empty questions in its first {INFER_ROWS} rows, but a {kind} benchmark asks them"
    return None


def resolve_benchmark(entry: str | BenchRef, root: str | Path | None = None) -> ResolvedBenchmark:
    """An ``eval.benchmarks`` entry -> its spec and checked file. Every problem raises one :class:`ConfigError`
    line: an unknown key (did-you-mean, or give a path), a missing file (the exact path and where its folder came
    from), an unreadable file or missing columns."""
    ref = entry if isinstance(entry, BenchRef) else parse_benchmark(entry)
    if ref.key is not None:
        if ref.key not in BENCHMARKS:
            raise ConfigError(f"eval.benchmarks: {BENCHMARKS.unknown_message(ref.key)}; or give a path to a .tsv "
                              "file (/path/to/file.tsv, optionally :caption, :vqa or :mcq)")
        spec = BENCHMARKS.get(ref.key)
        folder, origin = root_and_origin(root)
        path = folder / spec.file
        if not path.is_file():
            raise ConfigError(f"eval.benchmarks: {_missing_file_message(ref.key, spec, path, origin)}")
    else:
        path = ref.path
        if not path.is_file():
            raise ConfigError(f"eval.benchmarks: '{ref.entry}': no file {path} (relative paths are resolved against "
                              "the working directory); give the path of an existing VLMEvalKit-style .tsv file")
    try:
        columns, questions = inspect_tsv(path)
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as err:
        raise ConfigError(f"eval.benchmarks: '{ref.entry}': cannot read {path} as a tab-separated table ({err}); "
                          f"a benchmark TSV has a header with {', '.join(REQUIRED_COLUMNS)}") from None
    lower = [c for c in columns if len(c) == 1 and c.upper() in OPTION_LETTERS and c.islower()]
    if ref.kind is None and len(lower) >= 2 and not ("A" in columns and "B" in columns):
        raise ConfigError(f"eval.benchmarks: '{ref.entry}': {path} has option columns {', '.join(lower)} in lower "
                          "case; a multiple-choice TSV names them A, B, C, D (VLMEvalKit's layout): rename them, "
                          "or append :vqa to score the answers as open text")
    if ref.key is None:
        kind = ref.kind or infer_kind(columns, questions)
        spec = BenchmarkSpec(ref.task, kind, KIND_METRIC[kind], str(path), "", path.name, str(path))
    problem = _column_problem(spec.kind, columns, questions)
    if problem:
        how = "" if ref.key is not None or ref.kind is None else " (or declare another kind)"
        raise ConfigError(f"eval.benchmarks: '{ref.entry}': {path} {problem}{how}")
    return ResolvedBenchmark(ref.task, spec, path)


# ---------------------------------------------------------------------------------------------------------------
# Reading and writing
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class BenchItem:
    """One row of a benchmark TSV. ``image`` is the base64 payload (references resolved); a file with an
    ``image_path`` column instead gives ``image_file``, read when the row is scored."""

    index: str
    image: str
    question: str
    answers: list[str]
    options: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    image_file: str = ""
    bad: str = ""  # why the row has no image (an image cell that names no row); decoding it raises this

    def decode_image(self) -> np.ndarray:
        if self.bad:
            raise ValueError(self.bad)
        if self.image_file:
            from PIL import Image

            with Image.open(self.image_file) as im:
                return np.asarray(to_rgb(im), dtype=np.uint8).copy()
        return decode_image(self.image)


def image_columns(columns: Sequence[str]) -> list[str]:
    """The header with ``image_path`` standing in for ``image`` (VLMEvalKit's layout for images kept as files),
    so the column checks accept either."""
    return [*columns, "image"] if "image" not in columns and "image_path" in columns else list(columns)


def _image_path(cell: str, folder: Path, where: str) -> str:
    """An ``image_path`` cell -> the file: one path, or a one-element list literal; relative to the TSV's folder."""
    paths = parse_answers(cell)
    if len(paths) != 1 or not paths[0].strip():
        raise ValueError(f"{where}: image_path {cell!r} names {len(paths)} images; a row holds one image")
    p = Path(paths[0].strip()).expanduser()
    return str(p if p.is_absolute() else folder / p)


def decode_image(b64: str) -> np.ndarray:
    """base64 PNG/JPEG -> uint8 ``[H, W, 3]`` RGB."""
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
        return np.asarray(to_rgb(im), dtype=np.uint8).copy()


def encode_image(image: np.ndarray) -> str:
    """uint8 ``[H, W, 3]`` -> base64 of a PNG (lossless, so a round trip returns the same pixels)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def parse_answers(cell: str) -> list[str]:
    """An ``answer`` cell -> list of reference strings: a JSON / Python list literal, else the one string."""
    text = (cell or "").strip()
    if text.startswith("[") and text.endswith("]"):
        for parse in (json.loads, ast.literal_eval):
            try:
                value = parse(text)
            except (ValueError, SyntaxError):
                continue
            if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
                return [str(v) for v in value]
    return [text]


def _raise_csv_limit() -> None:
    limit = sys.maxsize
    while True:  # base64 images are far longer than csv's 128 KiB default field limit
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 10


def _missing(value: str | None) -> bool:
    return value is None or value.strip() == "" or value.strip().lower() == "nan"


def read_tsv(path: str | Path, limit: int | None = None) -> list[BenchItem]:
    """Rows of a VLMEvalKit-style TSV (see the module docstring) as :class:`BenchItem`, in file order."""
    path = Path(path)
    _raise_csv_limit()
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        columns = list(reader.fieldnames or [])
        missing = [c for c in REQUIRED_COLUMNS if c not in image_columns(columns)]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {missing}; found {columns}. A benchmark TSV needs "
                f"{', '.join(REQUIRED_COLUMNS)} (or image_path for images kept as files; + question, A-D for "
                "multiple choice)"
            )
        letters = [c for c in columns if c in OPTION_LETTERS]
        known = {*REQUIRED_COLUMNS, "image_path", "question", *letters}
        rows = list(reader)
    # Short cells name the row that holds the image (VLMEvalKit's convention), earlier or later in the file.
    by_index = {str(r["index"]): r.get("image") or "" for r in rows if len(r.get("image") or "") > _IMAGE_REF_MAX}
    items = []
    files = "image" not in columns  # image_path: read when scored (harness.eval.runner skips a missing file)
    for n, row in enumerate(rows):
        index = str(row["index"])
        image, image_file, bad = row.get("image") or "", "", ""
        if files:
            image_file = _image_path(row["image_path"] or "", path.parent, f"{path}: row {n + 1} (index {index})")
        elif len(image) <= _IMAGE_REF_MAX:
            if image in by_index:
                image = by_index[image]
            else:  # the row alone is lost: scoring skips and counts it, as an undecodable image
                bad = f"image cell {image!r} is neither base64 nor the index of another row"
        items.append(
            BenchItem(
                index=index,
                image=image,
                image_file=image_file,
                bad=bad,
                question=(row.get("question") or "").strip(),
                answers=parse_answers(row["answer"]),
                options={c: row[c].strip() for c in letters if not _missing(row.get(c))},
                extra={k: v for k, v in row.items() if k not in known and k is not None},
            )
        )
        if limit is not None and len(items) >= limit:
            break
    return items


def write_tsv(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write rows (dicts with ``index``, ``image`` (base64 or an earlier index), ``answer`` (a string or a list,
    written as JSON), optional ``question``, ``A``-``D`` and extra columns) as a TSV the reader (and VLMEvalKit)
    reads. Columns: the required ones first, then question, options, extras in first-seen order."""
    rows = list(rows)
    extra: list[str] = []
    for r in rows:
        extra += [k for k in r if k not in extra]
    head = ["index", "image", "question", "answer"]
    letters = [c for c in OPTION_LETTERS if c in extra]
    columns = head + letters + [c for c in extra if c not in head and c not in letters]
    path = Path(path)
    with atomic_write(path, newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, delimiter="\t", lineterminator="\n")
        w.writeheader()
        for r in rows:
            cells = {k: ("" if v is None else json.dumps(v) if isinstance(v, list) else str(v)) for k, v in r.items()}
            w.writerow(cells)
    return path


# ---------------------------------------------------------------------------------------------------------------
# The world's benchmarks in the same format
# ---------------------------------------------------------------------------------------------------------------


def _world_rows(world, split: str, kind: str, max_images: int | None, seed: int) -> list[dict]:
    samples = world.samples(split)[: max_images or None]
    images = world.images(split)
    rows: list[dict] = []
    if kind == "caption":
        return [
            {"index": s["id"], "image": encode_image(images[s["id"]]), "question": "", "answer": s["captions"]}
            for s in samples
        ]
    candidates: dict[str, list[str]] = {}
    for s in world.samples("train"):
        for q in s["qa"]:
            candidates.setdefault(q["type"], [])
            if q["answer"] not in candidates[q["type"]]:
                candidates[q["type"]].append(q["answer"])
    rng = np.random.default_rng([seed, len(samples)])
    for s in samples:
        first = None
        for j, q in enumerate(s["qa"]):
            index = f"{s['id']}-{j}"
            row = {
                "index": index,
                "image": first or encode_image(images[s["id"]]),
                "question": q["question"],
                "answer": q["answer"],
                "question_type": q["type"],
                "image_id": s["id"],
            }
            first = first or index  # later questions of this image point at the first row
            if kind == "mcq":
                others = [a for a in sorted(candidates.get(q["type"], [])) if a != q["answer"]]
                picks = [others[int(i)] for i in rng.permutation(len(others))[:3]] + [q["answer"]]
                order = rng.permutation(len(picks))
                opts = [picks[int(i)] for i in order]
                row |= dict(zip(OPTION_LETTERS, opts))
                row["answer"] = OPTION_LETTERS[opts.index(q["answer"])]
            rows.append(row)
    return rows


def export_world_benchmarks(
    world,
    out_dir: str | Path,
    split: str = "test",
    max_images: int | None = None,
    kinds: Sequence[str] = KINDS,
    seed: int = 0,
) -> dict[str, Path]:
    """Write the world's ``split`` as ``WORLD_CAPTION_<SPLIT>.tsv`` (one row per image, the reference captions as
    the answer list), ``WORLD_VQA_<SPLIT>.tsv`` (one row per question; a question's image is stored once per image
    and referenced by index after that; ``question_type`` and ``image_id`` columns) and ``WORLD_MCQ_<SPLIT>.tsv``
    (the same questions with four options A-D drawn from the world's answers of that question type, the letter as
    the answer). Returns ``{kind: path}``."""
    out = {}
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown benchmark kind {kind!r}; valid: {KINDS}")
        path = Path(out_dir) / f"WORLD_{kind.upper()}_{split.upper()}.tsv"
        out[kind] = write_tsv(path, _world_rows(world, split, kind, max_images, seed))
    return out
