"""LLaVA-style conversations: a JSON list of ``{"id", "image", "conversations": [{"from", "value"}, ...]}``.

Format (LLaVA, Liu et al. 2023, and its data releases: LLaVA-Pretrain ``blip_laion_cc_sbu_558k.json``,
``llava_instruct_150k.json``): ``image`` is a path relative to an image folder given separately (LLaVA's
``--image_folder``; here the source's ``images`` setting, default the JSON file's folder). ``conversations``
alternates ``human`` and ``gpt`` turns; the first human turn holds an ``<image>`` token where the image goes.
LLaVA-Pretrain-558K is exactly this with one turn pair per image (a terse instruction, then the caption), so the
same reader feeds captions (the ``caption`` source takes the first answer) and instruction data (the
``conversation`` source renders every turn pair). ``.jsonl`` files with one entry per line are read too.

Accepted roles: ``human``/``user`` and ``gpt``/``assistant`` (ShareGPT spelling); ``system`` turns are ignored.
Normalised record: ``{"image": ImageRef, "turns": [[question, answer], ...]}`` with ``<image>`` removed. Entries
without an image, with several images, or without one complete question-answer pair are skipped and counted.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from harness.data.formats.base import (
    CONVERSATION,
    FORMATS,
    Format,
    ImageRef,
    existing,
    json_lines,
    skip,
    strip_image_token,
)

HUMAN, GPT = ("human", "user"), ("gpt", "assistant")


def parse_turns(conversations) -> list[list[str]] | None:
    """LLaVA ``conversations`` -> ``[[question, answer], ...]``, or None when it is not a usable conversation."""
    if not isinstance(conversations, list):
        return None
    turns, question = [], None
    for turn in conversations:
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            return None
        role = turn.get("from")
        if role in HUMAN:
            question = strip_image_token(turn["value"])
        elif role in GPT:
            if question is None:  # an answer to nothing: the entry is out of order
                return None
            turns.append([question, turn["value"].strip()])
            question = None
        elif role != "system":
            return None
    return turns or None


def _entries(path: Path, skipped: Counter) -> Iterator:
    if path.suffix == ".jsonl":
        yield from json_lines(path, skipped)
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        skip(skipped, "malformed_record")  # the whole file: a JSON list has no line to resume at
        return
    if not isinstance(data, list):
        skip(skipped, "malformed_record")
        return
    yield from data


@FORMATS.register("llava_json")
class LlavaJson(Format):
    name = "llava_json"
    kind = CONVERSATION
    suffixes = (".json", ".jsonl")

    def read(self, files: list[Path], images_root: Path, skipped: Counter) -> Iterator[dict]:
        for path in existing(files, skipped):
            for entry in _entries(path, skipped):
                image = entry.get("image") if isinstance(entry, dict) else None
                turns = parse_turns(entry.get("conversations")) if isinstance(entry, dict) else None
                if not isinstance(image, str) or not image or turns is None:
                    skip(skipped, "malformed_record")
                    continue
                yield {"image": ImageRef(str(images_root / image)), "turns": turns}


def entry(entry_id: str, image: str, turns: list[tuple[str, str]]) -> dict:
    """One LLaVA entry; the ``<image>`` token opens the first question, as in LLaVA's own files."""
    conv = []
    for j, (question, answer) in enumerate(turns):
        conv.append({"from": "human", "value": f"<image>\n{question}" if j == 0 else question})
        conv.append({"from": "gpt", "value": answer})
    return {"id": entry_id, "image": image, "conversations": conv}


def write(path: Path, entries: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=1) + "\n", encoding="utf-8")
