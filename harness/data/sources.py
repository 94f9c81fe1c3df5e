"""Data sources: each turns the world's records into training examples of one kind (MM1 §3.3, Table 2).

An ``Example`` is an ordered list of chunks: ``Chunk(image=i, text=t)`` is one image followed by its text (a caption
or a question-answer line), ``Chunk(image=None, text=t)`` is text alone. Sequences are built from chunks by
``harness.data.sequences``.

- ``caption``: one image + one of its captions (MM1's captioned-image pairs).
- ``synthetic_caption``: one image + its dense, visually enriched caption (MM1's VeCap arm, Figure 5d).
- ``interleaved``: a document of several images sharing a theme, each followed by its text (OBELICS-like).
- ``text``: a text-only passage (MM1's text-only data; here scene descriptions with questions about them).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from harness.registry import Registry

SOURCES: Registry = Registry("data source")


@dataclass(frozen=True)
class Chunk:
    image: int | None  # index into world.images(split); None for text-only chunks
    text: str


@dataclass
class Example:
    source: str
    chunks: list[Chunk] = field(default_factory=list)

    @property
    def images(self) -> list[int]:
        return [c.image for c in self.chunks if c.image is not None]


class Source(ABC):
    name = ""

    def __init__(self, world, split: str = "train"):
        self.world = world
        self.split = split

    @abstractmethod
    def __len__(self) -> int:
        """Number of distinct records this source draws from."""

    @abstractmethod
    def get(self, i: int, rng: np.random.Generator) -> Example:
        """Record ``i`` as an example (``rng`` picks among variants, e.g. which reference caption)."""

    def sample(self, rng: np.random.Generator) -> Example:
        return self.get(int(rng.integers(len(self))), rng)


@SOURCES.register("caption")
class CaptionSource(Source):
    name = "caption"

    def __init__(self, world, split="train"):
        super().__init__(world, split)
        self.samples = world.samples(split)

    def __len__(self):
        return len(self.samples)

    def get(self, i, rng):
        caps = self.samples[i]["captions"]
        return Example(self.name, [Chunk(i, caps[int(rng.integers(len(caps)))])])


@SOURCES.register("synthetic_caption")
class SyntheticCaptionSource(CaptionSource):
    name = "synthetic_caption"

    def get(self, i, rng):
        return Example(self.name, [Chunk(i, self.samples[i]["dense_caption"])])


@SOURCES.register("interleaved")
class InterleavedSource(Source):
    name = "interleaved"

    def __init__(self, world, split="train"):
        super().__init__(world, split)
        self.docs = world.docs(split)

    def __len__(self):
        return len(self.docs)

    def get(self, i, rng):
        doc, chunks, pending = self.docs[i], [], None
        for img, txt in zip(doc["images"], doc["texts"]):
            if img is not None:
                pending = img
            else:
                chunks.append(Chunk(pending, txt))
                pending = None
        return Example(self.name, chunks)


@SOURCES.register("text")
class TextSource(Source):
    name = "text"

    def __init__(self, world, split="train"):
        super().__init__(world, split)
        self.texts = world.texts(split)

    def __len__(self):
        return len(self.texts)

    def get(self, i, rng):
        return Example(self.name, [Chunk(None, self.texts[i])])
