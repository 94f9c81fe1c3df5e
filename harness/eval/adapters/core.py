"""What both kit adapters share: interleaved image/text segments -> the harness's prompt layout, and a loaded run
that answers (greedy decoding) and scores continuations (log-likelihood) through it.

Why one layout for every kit: our models are base models trained on interleaved chunks (an image's visual tokens,
then its text, then ``<eoc>``; harness.data.sequences), not chat models, so a kit's message is laid out the way
training and the harness's own evaluation lay out a prompt: each image opens a chunk and the text after it is that
chunk's text; text before the first image is a text-only chunk; every chunk but the last is closed with ``<eoc>``
and generation continues the last one (``SequenceBuilder.prompt``). The conversion is pure (no model, no kit) so
the tests cover it without either kit installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from harness.data.sequences import Chunk, Encoded, SequenceBuilder
from harness.eval.generate import greedy_generate
from harness.eval.runner import encode_visual
from harness.eval.tasks import world_task
from harness.models.llm.tokenizer import EOC

IMAGE, TEXT = "image", "text"


@dataclass(frozen=True)
class Segment:
    """One piece of an interleaved prompt: an image (anything ``image_preprocess`` takes) or a text."""

    kind: str  # image | text
    value: Any


def to_chunks(segments: Sequence[Segment]) -> tuple[list[Chunk], list[Any]]:
    """Segments -> (chunks, images): ``chunks[j].image`` indexes ``images``; the last chunk is the open query.

    Texts of one chunk are joined with single spaces (the world's tokenizer has no newline token, and the kits join
    a message's texts with whitespace too)."""
    if not segments:
        raise ValueError("empty prompt: no image and no text")
    chunks: list[tuple[int | None, list[str]]] = []
    images: list[Any] = []
    for seg in segments:
        if seg.kind == IMAGE:
            chunks.append((len(images), []))
            images.append(seg.value)
        elif seg.kind == TEXT:
            if not chunks:
                chunks.append((None, []))
            chunks[-1][1].append(str(seg.value).strip())
        else:
            raise ValueError(f"segment type {seg.kind!r} is not supported: mm-ablate models read images and text")
    return [Chunk(img, " ".join(t for t in texts if t)) for img, texts in chunks], images


def cut_at_stops(text: str, until: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any stop string (lm-eval's ``until``)."""
    cut = min((i for i in (text.find(s) for s in until if s) if i >= 0), default=len(text))
    return text[:cut]


class RunModel:
    """A finished run (harness.models.load.load_vlm) behind a kit-neutral interface."""

    def __init__(self, run_dir: str | Path, cache_dir: str | Path | None = None, device: str = "cpu",
                 batch_size: int = 16):
        from harness.models.load import load_vlm

        self.run_dir = Path(run_dir)
        self.vlm, self.tokenizer, self.preprocess, self.cfg = load_vlm(run_dir, cache_dir, device)
        self.batch_size = int(batch_size)
        self.builder = SequenceBuilder(self.tokenizer, self.vlm.num_visual_tokens, max_len=10**9)
        self.stop_ids = {self.tokenizer.convert_tokens_to_ids(EOC), self.tokenizer.eos_token_id}

    def max_new_tokens(self, kind: str) -> int:
        """The run's own generation budget for captions or short answers: the world task ``caption``'s or ``vqa``'s
        (``eval.max_new_tokens_*``)."""
        return world_task("caption" if kind == "caption" else "vqa").max_new_tokens(self.cfg.eval)

    @property
    def device(self) -> torch.device:
        return next(self.vlm.lm.parameters()).device

    def encode(self, segments: Sequence[Segment]) -> tuple[Encoded, list[Any], str]:
        """(the prompt's ids, its images, the open query chunk's text)."""
        chunks, images = to_chunks(segments)
        return self.builder.prompt(chunks[:-1], chunks[-1]), images, chunks[-1].text

    def _visual(self, images: list[Any]) -> torch.Tensor | None:
        if not images:
            return None
        return torch.stack(encode_visual(self.vlm, [self.preprocess(im) for im in images])).to(self.device)

    def generate(self, prompts: Sequence[Sequence[Segment]], max_new_tokens: int) -> list[str]:
        """Greedy continuations (decoded, special tokens dropped), ``batch_size`` prompts per decoding batch; batched
        decoding is batch-size invariant (harness.eval.generate), so a kit's batching cannot move a score."""
        out = []
        for s in range(0, len(prompts), self.batch_size):
            encoded = [self.encode(p) for p in prompts[s : s + self.batch_size]]
            visual = self._visual([im for _, images, _ in encoded for im in images])
            ids = greedy_generate(self.vlm, [e for e, _, _ in encoded], visual, max_new_tokens, self.stop_ids)
            out += [self.tokenizer.decode(g, skip_special_tokens=True) for g in ids]
        return out

    def answer(self, segments: Sequence[Segment], kind: str) -> str:
        """One prompt answered as the harness's own tasks answer it: the run's budget for ``kind`` (caption | vqa),
        cut at a new question or line, VQA answers lower-cased without a final full stop (the world tasks'
        post-processing, harness.eval.tasks)."""
        (raw,) = self.generate([segments], self.max_new_tokens(kind))
        return world_task("caption" if kind == "caption" else "vqa").postprocess(raw)

    @torch.no_grad()
    def loglikelihood(self, segments: Sequence[Segment], continuation: str) -> tuple[float, bool]:
        """(sum of log p(continuation | prompt), whether greedy decoding would produce it), lm-eval's convention.

        The continuation extends the open query chunk's text; when the chunk's text tokenises to a prefix of text +
        continuation, the continuation's tokens are exactly those the model would read (else tokenised alone)."""
        prompt, images, query = self.encode(segments)
        whole = self.builder.text_ids(query + continuation)
        ctx = self.builder.text_ids(query)
        cont = whole[len(ctx):] if whole[: len(ctx)] == ctx else self.builder.text_ids(continuation)
        if not cont:
            return 0.0, True
        ids = torch.tensor([prompt.ids + cont], device=self.device)
        emb = self.vlm.embed(ids, self._visual(images))
        logits = self.vlm.lm(inputs_embeds=emb, attention_mask=torch.ones_like(ids), use_cache=False).logits[0]
        n, m = ids.shape[1], len(cont)
        logp = F.log_softmax(logits[n - m - 1 : n - 1].float(), dim=-1)
        target = torch.tensor(cont, device=logp.device)
        return float(logp.gather(-1, target[:, None]).sum()), bool((logp.argmax(-1) == target).all())
