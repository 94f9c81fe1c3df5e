"""The contract between file formats and data sources: a reader turns files into normalised records.

Four record kinds cover MM1's pre-training data (§3.3, Table 2) and the LLaVA-style curated sets:

======================  ==============================================================  ==========================
kind                    record (``image``/``images`` entries: an image reference)        written by
======================  ==============================================================  ==========================
``pair``                ``{"image": ref, "texts": [str, ...]}`` (alternative captions)   webdataset
``conversation``        ``{"image": ref, "turns": [[human, gpt], ...]}``                 llava_json
``doc``                 ``{"images": [ref | None, ...], "texts": [str | None, ...]}``    interleaved (OBELICS)
``text``                ``{"text": str}``                                                text_jsonl
======================  ==============================================================  ==========================

A reader yields records whose image references are :class:`ImageRef` (a byte range of a file: a tar member or a
whole image file) or raw ``bytes`` (images embedded in parquet). It never decodes pixels: the corpus indexer
(``harness.data.corpus``) reads, decodes and de-duplicates every referenced image once, and replaces references by
integer ids into one image store. Records that are structurally bad are counted in ``skipped`` under one of
:data:`REASONS` and not yielded; one bad record never stops a reader.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.registry import Registry

FORMATS: Registry = Registry("data format")  # name -> Format subclass; the name is what data configs write

PAIR, CONVERSATION, DOC, TEXT = "pair", "conversation", "doc", "text"
KINDS = (PAIR, CONVERSATION, DOC, TEXT)

# Why an item was skipped; the counts go into the run record (``Corpus.skipped``).
REASONS = {
    "missing_file": "a shard, annotation or image file named by the data does not exist",
    "undecodable_image": "image bytes that PIL cannot decode (truncated, corrupt, unknown format)",
    "malformed_record": "a JSON line or entry that does not parse or lacks required fields",
    "missing_image": "a webdataset sample without an image member (.jpg/.jpeg/.png/.webp)",
    "missing_text": "a webdataset sample without caption text (.txt, or a 'captions' list in its .json)",
    "bad_shard": "a tar shard that is not a readable uncompressed tar (reading stops at the damage)",
    "empty_record": "a record with no text at all",
}


@dataclass(frozen=True)
class ImageRef:
    """Bytes ``[offset, offset + size)`` of ``path``; ``size == -1``: the whole file (an image in a folder)."""

    path: str
    offset: int = 0
    size: int = -1


@dataclass
class Part:
    """One source's records, all of one ``kind``, with images as integer ids into the corpus's image store."""

    kind: str
    records: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)


class Format(ABC):
    """A file format: ``read`` yields records of ``kind`` from ``files`` (already brace-expanded, in order).

    ``images_root`` is the folder relative image paths resolve against (LLaVA's ``--image_folder``, an OBELICS
    export's image folder); formats that carry their images (webdataset) ignore it.
    """

    name = ""
    kind = ""
    suffixes: tuple[str, ...] = ()  # file name endings this reader accepts (checked per file)

    @abstractmethod
    def read(self, files: list[Path], images_root: Path, skipped: Counter) -> Iterator[dict]:
        """Records of ``self.kind``; a missing file counts ``missing_file`` and reading goes on."""


def skip(skipped: Counter, reason: str, n: int = 1) -> None:
    if reason not in REASONS:  # a typo here would make a count vanish from the record's known reasons
        raise ValueError(f"unknown skip reason '{reason}'; known: {', '.join(REASONS)}")
    skipped[reason] += n


def existing(files: list[Path], skipped: Counter) -> Iterator[Path]:
    """The files that exist; each missing one is counted as ``missing_file`` (a listed shard that vanished)."""
    for path in files:
        if path.is_file():
            yield path
        else:
            skip(skipped, "missing_file")


def json_lines(path: Path, skipped: Counter) -> Iterator:
    """The parsed values of a JSON-lines file, in order; blank lines are passed over and a line that does not parse
    is counted as ``malformed_record`` (the lines after it are still read)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                skip(skipped, "malformed_record")


def strip_image_token(text: str) -> str:
    """LLaVA marks the image's place in the first human turn with ``<image>``; the sequence builder places images
    itself, so the token is dropped (with the newline that usually follows it)."""
    return text.replace("<image>\n", "").replace("\n<image>", "").replace("<image>", "").strip()
