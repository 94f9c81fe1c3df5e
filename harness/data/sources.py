"""Data sources: each turns records of one kind into training examples (MM1 §3.3, Table 2).

An ``Example`` is an ordered list of chunks: ``Chunk(image=i, text=t)`` is one image followed by its text (a caption
or a question-answer line), ``Chunk(image=None, text=t)`` is text alone. Sequences are built from chunks by
``harness.data.sequences``.

- ``caption``: one image + one of its captions (MM1's captioned-image pairs; also LLaVA-Pretrain-style JSON,
  whose first answer is the caption).
- ``synthetic_caption``: one image + its dense, visually enriched caption (MM1's VeCap arm, Figure 5d).
- ``interleaved``: a document of several images, each followed by its text (OBELICS-like).
- ``text``: a text-only passage (MM1's text-only data).
- ``conversation``: one image + question-answer turns (LLaVA JSON: detailed descriptions, VQA dialogues; the
  curated second stage of MiniGPT-4), each turn rendered as the world's ``Question: .. Answer: ..`` line, with the
  loss on the answer only (LLaVA §4.2, Table 2: the loss covers the assistant's tokens).

A source reads its records from a ``Corpus`` (``harness.data.corpus``: files in the formats of
``harness.data.formats``; image ids index ``corpus.images("train")``) or straight from a ``World`` (image ids index
``world.images(split)``; the pre-export path). ``accepts`` lists the record kinds a source can read.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from harness.data.formats.base import CONVERSATION, DOC, PAIR, TEXT, Part
from harness.registry import Registry
from harness.world.language import qa_line, qa_prompt

SOURCES: Registry = Registry("data source")


@dataclass(frozen=True)
class Chunk:
    image: int | None  # index into the image store of the data the example came from; None for text-only chunks
    text: str
    # Leading characters of ``text`` that are context, not targets: no loss on them. Conversation turns set it to the
    # question (LLaVA §4.2 trains on the assistant's answers only); captions and documents keep 0 (MM1: every text token).
    context_chars: int = 0


@dataclass
class Example:
    source: str
    chunks: list[Chunk] = field(default_factory=list)

    @property
    def images(self) -> list[int]:
        return [c.image for c in self.chunks if c.image is not None]


def part_of(data, source: str, split: str) -> Part:
    """``source``'s records in ``data``: a ``World`` (its own records) or a ``Corpus`` (records read from files)."""
    from harness.world import World
    from harness.world.export import world_parts  # here, not at the top: export imports harness.data.formats

    if isinstance(data, World):
        return world_parts(data, split, only=source)[source]
    return data.part(source, split)


class Source(ABC):
    name = ""
    accepts: tuple[str, ...] = ()

    def __init__(self, data, split: str = "train"):
        part = part_of(data, self.name, split)
        if part.kind not in self.accepts:
            raise ValueError(f"data source '{self.name}' reads {', '.join(self.accepts)} records, got {part.kind}")
        self.kind, self.records = part.kind, part.records

    def __len__(self) -> int:
        """Number of distinct records this source draws from."""
        return len(self.records)

    @abstractmethod
    def get(self, i: int, rng: np.random.Generator) -> Example:
        """Record ``i`` as an example (``rng`` picks among variants, e.g. which reference caption)."""

    def sample(self, rng: np.random.Generator) -> Example:
        return self.get(int(rng.integers(len(self))), rng)


@SOURCES.register("caption")
class CaptionSource(Source):
    name = "caption"
    accepts = (PAIR, CONVERSATION)

    def get(self, i, rng):
        r = self.records[i]
        texts = r["texts"] if self.kind == PAIR else [r["turns"][0][1]]
        # A draw only among several captions: a single caption leaves the stream's random state untouched.
        text = texts[int(rng.integers(len(texts)))] if len(texts) > 1 else texts[0]
        return Example(self.name, [Chunk(r["image"], text)])


@SOURCES.register("synthetic_caption")
class SyntheticCaptionSource(CaptionSource):
    name = "synthetic_caption"


@SOURCES.register("interleaved")
class InterleavedSource(Source):
    name = "interleaved"
    accepts = (DOC,)

    def get(self, i, rng):
        doc, chunks, pending = self.records[i], [], None
        for img, txt in zip(doc["images"], doc["texts"], strict=True):
            if img is not None:
                pending = img
            else:  # a text closes the chunk of the image before it (an image without a following text is dropped)
                chunks.append(Chunk(pending, txt))
                pending = None
        return Example(self.name, chunks)


@SOURCES.register("text")
class TextSource(Source):
    name = "text"
    accepts = (TEXT,)

    def get(self, i, rng):
        return Example(self.name, [Chunk(None, self.records[i]["text"])])


@SOURCES.register("conversation")
class ConversationSource(Source):
    name = "conversation"
    accepts = (CONVERSATION,)

    def get(self, i, rng):
        r = self.records[i]
        return Example(self.name, [Chunk(r["image"] if j == 0 else None, qa_line(q, a), len(qa_prompt(q)))
                                   for j, (q, a) in enumerate(r["turns"])])
