"""Text-only data: JSON lines ``{"text": ...}`` (MM1's text-only arm, §3.3; the layout of most text corpora dumps).

One passage per line; other keys are ignored. A line that does not parse or has no string ``text`` is
``malformed_record``; a blank text is ``empty_record``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from harness.data.formats.base import FORMATS, TEXT, Format, existing, json_lines, skip


@FORMATS.register("text_jsonl")
class TextJsonl(Format):
    name = "text_jsonl"
    kind = TEXT
    suffixes = (".jsonl",)

    def read(self, files: list[Path], images_root: Path, skipped: Counter) -> Iterator[dict]:
        for path in existing(files, skipped):
            for value in json_lines(path, skipped):  # a line that does not parse: malformed_record
                text = value.get("text") if isinstance(value, dict) else None
                if not isinstance(text, str):
                    skip(skipped, "malformed_record")
                elif not text.strip():
                    skip(skipped, "empty_record")
                else:
                    yield {"text": text}


def write(path: Path, texts: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"text": t}) + "\n" for t in texts)
