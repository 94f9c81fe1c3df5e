"""Examples -> token sequences with image slots, labels on text only.

Layout (OpenFlamingo-style chunks, MM1 §3.1 few-shot format): ``<bos>`` then per chunk ``<image> x M`` (if the chunk
has an image), the chunk's text, ``<eoc>``; a text-only example ends with ``<eos>`` instead. Labels are the input ids
with every image slot and the ``<bos>`` set to -100, so the loss covers text tokens only. A sequence longer than
``max_len`` drops whole trailing chunks (never half an image); a single chunk that does not fit is cut at the text.

A prompt (evaluation) is built the same way, with the last chunk's text left open (no ``<eoc>``), so few-shot
demonstrations and the query share exactly the training layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.data.sources import Chunk, Example
from harness.models.llm.tokenizer import EOC, IMAGE

IGNORE = -100


@dataclass
class Encoded:
    ids: list[int]
    labels: list[int]
    images: list[int]


class SequenceBuilder:
    def __init__(self, tokenizer, num_visual_tokens: int, max_len: int):
        self.tok = tokenizer
        self.M = num_visual_tokens
        self.max_len = max_len
        self.image_id = tokenizer.convert_tokens_to_ids(IMAGE)
        self.eoc_id = tokenizer.convert_tokens_to_ids(EOC)
        self._cache: dict[str, list[int]] = {}

    def text_ids(self, text: str) -> list[int]:
        ids = self._cache.get(text)
        if ids is None:
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
            if len(self._cache) < 200_000:
                self._cache[text] = ids
        return ids

    def _chunk(self, c: Chunk, close: bool, end_id: int) -> tuple[list[int], list[int]]:
        ids, labels = [], []
        if c.image is not None:
            ids += [self.image_id] * self.M
            labels += [IGNORE] * self.M
        t = self.text_ids(c.text)
        ids += t
        labels += t
        if close:
            ids.append(end_id)
            labels.append(end_id)
        return ids, labels

    def encode(self, ex: Example) -> Encoded:
        ids, labels, images = [self.tok.bos_token_id], [IGNORE], []
        text_only = all(c.image is None for c in ex.chunks)
        end_id = self.tok.eos_token_id if text_only else self.eoc_id
        for c in ex.chunks:
            cid, clab = self._chunk(c, True, end_id)
            if len(ids) + len(cid) > self.max_len:
                if images or len(ids) > 1:
                    break  # drop whole trailing chunks
                keep = self.max_len - len(ids)  # a lone oversized chunk: cut its text, keep its image slots
                cid, clab = cid[:keep], clab[:keep]
            ids += cid
            labels += clab
            if c.image is not None:
                images.append(c.image)
        return Encoded(ids, labels, images)

    def prompt(self, demos: list[Chunk], query: Chunk) -> Encoded:
        """``<bos>`` + closed demonstration chunks + the open query chunk (generation continues its text)."""
        ids, images = [self.tok.bos_token_id], []
        for c in demos:
            cid, _ = self._chunk(c, True, self.eoc_id)
            ids += cid
            images += [c.image] if c.image is not None else []
        qid, _ = self._chunk(query, False, self.eoc_id)
        ids += qid
        images += [query.image] if query.image is not None else []
        return Encoded(ids, [IGNORE] * len(ids), images)


def collate(batch: list[Encoded], pad_id: int, left_pad: bool = False) -> dict[str, torch.Tensor | list[int]]:
    """Pad to the longest sequence. Right padding for training, left padding for batched generation."""
    T = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), T), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), T), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), T), dtype=torch.long)
    for r, e in enumerate(batch):
        n = len(e.ids)
        sl = slice(T - n, T) if left_pad else slice(0, n)
        ids[r, sl] = torch.tensor(e.ids)
        labels[r, sl] = torch.tensor(e.labels)
        mask[r, sl] = 1
    images = [i for e in batch for i in e.images]
    return {"input_ids": ids, "labels": labels, "attention_mask": mask, "images": images}
