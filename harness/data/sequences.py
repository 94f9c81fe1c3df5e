"""Examples -> token sequences with image slots, labels on text only.

Layout (OpenFlamingo-style chunks, MM1 §3.1 few-shot format): ``<bos>`` then per chunk ``<image> x M`` (if the chunk
has an image), the chunk's text, ``<eoc>``; a text-only example ends with ``<eos>`` instead. Labels are the input ids
with every image slot and the ``<bos>`` set to -100, so the loss covers text tokens only; in conversation turns only the
answer (a chunk's ``context_chars`` are context, as LLaVA §4.2 / Table 2 trains on the assistant's tokens alone). A
sequence longer than ``max_len`` drops whole trailing chunks (never half an image); a single chunk that does not fit is
cut at the text.

A prompt (evaluation) is built the same way, with the last chunk's text left open (no ``<eoc>``), so few-shot
demonstrations and the query share exactly the training layout.

Unknown characters: a tokenizer without byte fallback (the world's BPE) maps characters outside its alphabet to
``<unk>``, which would silently blank them out of a user's captions. The builder counts every ``<unk>`` it emits
(``unknown``: tokens, ``unknown_chars``: which characters) and prints one warning line, at the first, naming them.
"""

from __future__ import annotations

from collections import Counter
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
    def __init__(self, tokenizer, num_visual_tokens: int, max_len: int, log=print):
        self.tok, self.log = tokenizer, log
        self.M = num_visual_tokens
        self.max_len = max_len
        self.image_id = tokenizer.convert_tokens_to_ids(IMAGE)
        self.eoc_id = tokenizer.convert_tokens_to_ids(EOC)
        self._cache: dict[str, list[int]] = {}
        self.unk_id = tokenizer.unk_token_id
        self.unknown = 0  # <unk> tokens in every text encoded (a text encoded twice counts twice: tokens trained on)
        self.unknown_chars: Counter[str] = Counter()  # characters the vocabulary lacks, per distinct text
        self._vocab_chars: set[str] | None = None  # single-character tokens, read at the first <unk>

    def text_ids(self, text: str) -> list[int]:
        ids = self._cache.get(text)
        if ids is None:
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
            if self.unk_id is not None and self.unk_id in ids:
                self._new_unknown(text)
            if len(self._cache) < 200_000:
                self._cache[text] = ids
        if self.unk_id is not None:
            self.unknown += ids.count(self.unk_id)
        return ids

    def _new_unknown(self, text: str) -> None:
        if self._vocab_chars is None:
            self._vocab_chars = {t for t in self.tok.get_vocab() if len(t) == 1}
        chars = [c for c in text if not c.isspace() and c not in self._vocab_chars]
        first = not self.unknown_chars
        self.unknown_chars.update(chars or ["?"])  # "?": the tokenizer gave <unk> for a sequence, not a character
        if first:
            shown = ", ".join(repr(c) for c in dict.fromkeys(chars)) or "(no single character)"
            self.log(f"[data] warning: the tokenizer has no token for {shown} in {text[:60]!r}: they become <unk> "
                     f"(counted per run, this warning is printed once); a tokenizer with byte fallback avoids it")

    def _context_masked(self, c: Chunk, ids: list[int]) -> list[int]:
        """Labels for ``ids`` with every token inside the first ``context_chars`` characters set to IGNORE.

        The whole text is tokenised once (the ids the model sees are those of the full line, as at evaluation) and
        the offsets decide which tokens belong to the context; a token straddling the boundary keeps its label.
        """
        offsets = self.tok(c.text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return [IGNORE if end <= c.context_chars else t for t, (_, end) in zip(ids, offsets, strict=True)]

    def _chunk(self, c: Chunk, close: bool, end_id: int) -> tuple[list[int], list[int]]:
        ids, labels = [], []
        if c.image is not None:
            ids += [self.image_id] * self.M
            labels += [IGNORE] * self.M
        t = self.text_ids(c.text)
        ids += t
        labels += self._context_masked(c, t) if c.context_chars else t
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


def pack(batch: list[Encoded], pad_id: int, max_len: int) -> dict[str, torch.Tensor | list[int]]:
    """Sequences end to end in rows of at most ``max_len`` tokens: the batch ``collate`` would pad, without most of
    the padding (rows as even as ``_bins`` finds, so the longest row sets little padding in the others).

    Each sequence keeps its own positions (0, 1, ...), so the LLM, given ``position_ids`` and no attention mask,
    attends within each sequence only (transformers builds the block-diagonal causal mask from where the positions
    restart). Every sequence starts with ``<bos>``, whose label is ignored, so no token is scored on a prediction of
    the next sequence's first token: the loss is the padded batch's loss. Padding after a row's last sequence is a
    block of its own (positions restart) with ignored labels. ``attention_mask`` marks real tokens, for counting
    only; pass ``attention_mask=None`` to the model. ``images`` follow the rows' reading order, as the VLM splices
    visual tokens in that order.

    ``[n_seq]`` sequences of length <= max_len -> ``input_ids/labels/position_ids/attention_mask [R, T]``, ``T`` the
    longest row, ``R`` the rows.
    """
    too_long = [len(e.ids) for e in batch if len(e.ids) > max_len]
    if too_long:
        raise ValueError(f"cannot pack a sequence of {max(too_long)} tokens into rows of max_len={max_len}")
    rows = _bins(batch, max_len)
    T = max(sum(len(e.ids) for e in row) for row in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), T), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    pos = torch.zeros((len(rows), T), dtype=torch.long)
    images: list[int] = []
    for r, row in enumerate(rows):
        at = 0
        for e in row:
            n = len(e.ids)
            ids[r, at : at + n] = torch.tensor(e.ids)
            labels[r, at : at + n] = torch.tensor(e.labels)
            mask[r, at : at + n] = 1
            pos[r, at : at + n] = torch.arange(n)
            images += e.images
            at += n
        pos[r, at:] = torch.arange(T - at)
    return {"input_ids": ids, "labels": labels, "attention_mask": mask, "position_ids": pos, "images": images}


def _first_fit(batch: list[Encoded], cap: int) -> list[list[Encoded]]:
    """First-fit decreasing into rows of ``cap`` tokens (stable: equal lengths keep batch order)."""
    rows: list[list[Encoded]] = []
    room: list[int] = []
    for e in sorted(batch, key=lambda e: -len(e.ids)):
        r = next((i for i, free in enumerate(room) if free >= len(e.ids)), None)
        if r is None:
            rows.append([])
            room.append(cap)
            r = len(rows) - 1
        rows[r].append(e)
        room[r] -= len(e.ids)
    return rows


def _bins(batch: list[Encoded], max_len: int) -> list[list[Encoded]]:
    """The fewest rows first-fit decreasing reaches, at the smallest row length that reaches them. Rows of a full
    ``max_len`` leave the last row half empty; all rows are padded to the longest, so even rows pad least. Tries
    row lengths from the even share ``total / n`` upwards in 2% steps (a few dozen first-fit runs of a batch)."""
    lengths = [len(e.ids) for e in batch]
    total, longest = sum(lengths), max(lengths)
    fewest = len(_first_fit(batch, max_len))
    cap = max(longest, -(-total // fewest))
    while cap < max_len:
        rows = _first_fit(batch, cap)
        if len(rows) <= fewest:
            return rows
        cap = min(max_len, cap + max(1, cap // 50))
    return _first_fit(batch, max_len)


def padding_fraction(batch: dict) -> float:
    """Share of a collated or packed batch's token slots that hold padding."""
    return 1.0 - float(batch["attention_mask"].sum()) / batch["attention_mask"].numel()
