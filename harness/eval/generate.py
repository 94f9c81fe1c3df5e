"""Batched greedy decoding through the VLM with a KV cache.

Prompts are left-padded so every row's last prompt token sits in the final column; ``position_ids`` are computed
from the attention mask, so a row's positions (and hence its output) do not depend on how much padding its batch
neighbours forced on it. That is what makes scores independent of the evaluation batch size (a top complaint about
peer harnesses, docs/mm1_reference.md §6), up to the visual tokens: c_abstractor's convolutions give outputs that
differ by about 1e-6 between batches of fewer than 16 images and larger ones (measured 2026-12-07; the encoders and
the other connectors are bit-identical), which can flip a greedy near-tie. Decoding stops per row at any stop id. A finished row is fed padding
that nothing attends to until a quarter of the batch has finished; then the finished rows leave the batch (their KV
cache rows too), so a few long answers do not keep paying for the short ones. Dropping them at every step would
copy the whole cache at every step; at a quarter, the batch is compacted a handful of times per call.
"""

from __future__ import annotations

import functools
import inspect

import torch
from transformers import DynamicCache

from harness.data.sequences import Encoded, collate
from harness.models.vlm import VLM


@functools.cache
def _last_logits_only(lm_class: type) -> dict:
    """The prompt pass needs the last position's logits only: ``logits_to_keep=1`` (``num_logits_to_keep`` before
    transformers 4.50) skips the LM head on every other position, as transformers' own ``generate`` does."""
    params = inspect.signature(lm_class.forward).parameters
    return next(({name: 1} for name in ("logits_to_keep", "num_logits_to_keep") if name in params), {})


@functools.cache  # called once per generated token: read the signature once per model class
def _cache_keyword(lm_class: type) -> str:
    return "cache" if "cache" in inspect.signature(lm_class.forward).parameters else "past_key_values"


def cache_kwarg(lm_class: type, cache) -> dict:
    """The KV cache as a forward keyword: ``cache`` in recent transformers (which warn that ``past_key_values`` is
    deprecated), ``past_key_values`` before; whichever the model's ``forward`` names."""
    return {_cache_keyword(lm_class): cache}


def _new_cache(lm) -> DynamicCache:
    """An empty KV cache laid out for ``lm`` (sliding-window layers included; transformers >= 5 takes the config,
    older versions build the same cache without it)."""
    try:
        return DynamicCache(config=lm.config)
    except TypeError:
        return DynamicCache()


@torch.no_grad()
def greedy_generate(vlm: VLM, prompts: list[Encoded], visual: torch.Tensor | None, max_new_tokens: int,
                    stop_ids: set[int]) -> list[list[int]]:
    """``prompts`` with their images' visual tokens ``visual [n_img, M, d]`` (in prompt order) -> per prompt, the new
    token ids up to (not including) the first stop id, at most ``max_new_tokens``."""
    dev = next(vlm.lm.parameters()).device
    pad = vlm.tokenizer.pad_token_id
    batch = collate(prompts, pad, left_pad=True)
    ids = batch["input_ids"].to(dev)
    mask = batch["attention_mask"].to(dev)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = _new_cache(vlm.lm)  # ours, not the model's default: updated in place, and it can drop rows
    out = vlm.lm(inputs_embeds=vlm.embed(ids, visual), attention_mask=mask, position_ids=pos, use_cache=True,
                 **cache_kwarg(type(vlm.lm), cache), **_last_logits_only(type(vlm.lm)))
    rows = torch.arange(len(prompts), device=dev)  # prompt index of each row still in the batch
    done = torch.zeros(len(prompts), dtype=torch.bool, device=dev)
    generated: list[list[int]] = [[] for _ in prompts]
    stop = torch.tensor(sorted(stop_ids), device=dev)
    last_pos = pos[:, -1]
    # Only ids the tokenizer has: a model whose vocabulary is larger (Qwen's 151,936 rows under the world's
    # 512-token tokenizer, or a real vocabulary padded to a multiple of 64) must not answer with rows nothing decodes.
    vocab = len(vlm.tokenizer)
    for step in range(max_new_tokens):
        nxt = out.logits[:, -1, :vocab].argmax(-1)
        for r, t, d in zip(rows.tolist(), nxt.tolist(), done.tolist()):
            if not d:
                generated[r].append(t)
        done |= torch.isin(nxt, stop)
        if step == max_new_tokens - 1 or bool(done.all()):
            break  # no forward pass for a token nobody will read
        if 4 * int(done.sum()) >= len(done):
            keep = torch.nonzero(~done).flatten()
            cache.batch_select_indices(keep)
            rows, done, nxt, mask, last_pos = rows[keep], done[keep], nxt[keep], mask[keep], last_pos[keep]
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        mask = torch.cat([mask, (~done).long().unsqueeze(1)], dim=1)  # finished rows stop attending
        last_pos = last_pos + 1
        out = vlm.lm(inputs_embeds=vlm.lm.get_input_embeddings()(nxt.unsqueeze(1)), attention_mask=mask,
                     position_ids=last_pos.unsqueeze(1), use_cache=True, **cache_kwarg(type(vlm.lm), cache))
    return [[t for t in g if t not in stop_ids] for g in generated]
