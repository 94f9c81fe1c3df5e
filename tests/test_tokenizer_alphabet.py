"""The world's tiny BPE covers printable ASCII; what it still cannot spell is counted and warned about once."""

from __future__ import annotations

import string

import pytest

from harness.data.sequences import SequenceBuilder
from harness.data.sources import Chunk, Example
from harness.models.llm.tokenizer import load_tokenizer, train_tokenizer

# Lowercase, like the world's own text: no capital, no "v", "x", "z", "!", "'" or "-" in it.
WORLD_LIKE = ["a red circle on the left.", "there are two objects: a blue square and a green triangle.",
              "Question: how many objects are there? Answer: 2"] * 20


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(WORLD_LIKE, 512, out)
    return load_tokenizer(out)


def test_every_printable_ascii_character_has_a_token(tok):
    caption = "What's this? A Very quiet zebra-crossing (X-ray #7): 100% [ok] & {fine}; ~`|\\/@^_$*+=<>\""
    assert tok.unk_token_id not in tok(caption, add_special_tokens=False)["input_ids"]
    assert tok.decode(tok(caption, add_special_tokens=False)["input_ids"]) == caption
    assert tok.unk_token_id not in tok(string.printable.strip(), add_special_tokens=False)["input_ids"]


def test_unknown_characters_are_counted_and_warned_once(tok):
    logs: list[str] = []
    builder = SequenceBuilder(tok, 4, 512, log=logs.append)
    builder.encode(Example("caption", [Chunk(0, "a café in “paris”.")]))
    builder.encode(Example("caption", [Chunk(1, "a café in “paris”.")]))
    builder.encode(Example("caption", [Chunk(2, "naïve.")]))
    builder.encode(Example("caption", [Chunk(3, "What a red circle!")]))  # all ASCII: nothing unknown
    assert builder.unknown == 2 * 3 + 1  # é “ ” per caption (twice), ï
    assert dict(builder.unknown_chars) == {"é": 1, "“": 1, "”": 1, "ï": 1}
    assert len(logs) == 1 and "'é', '“', '”'" in logs[0] and "<unk>" in logs[0]
