"""Batched greedy decoding through the VLM with a KV cache.

Prompts are left-padded so every row's last prompt token sits in the final column; ``position_ids`` are computed
from the attention mask, so a row's positions (and hence its output) do not depend on how much padding its batch
neighbours forced on it. That is what makes scores independent of the evaluation batch size (a top complaint about
peer harnesses, shared/docs/peers.md §3.5). Decoding stops per row at any stop id; finished rows are fed padding.
"""

from __future__ import annotations

import torch

from harness.data.sequences import Encoded, collate
from harness.models.vlm import VLM


@torch.no_grad()
def greedy_generate(vlm: VLM, prompts: list[Encoded], visual: torch.Tensor | None, max_new_tokens: int,
                    stop_ids: set[int]) -> list[list[int]]:
    """``prompts`` with their images' visual tokens ``visual [n_img, M, d]`` (in prompt order) -> new token ids."""
    dev = next(vlm.lm.parameters()).device
    pad = vlm.tokenizer.pad_token_id
    batch = collate(prompts, pad, left_pad=True)
    ids = batch["input_ids"].to(dev)
    mask = batch["attention_mask"].to(dev)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    emb = vlm.embed(ids, visual)
    out = vlm.lm(inputs_embeds=emb, attention_mask=mask, position_ids=pos, use_cache=True)
    B = ids.shape[0]
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    generated: list[list[int]] = [[] for _ in range(B)]
    stop = torch.tensor(sorted(stop_ids), device=dev)
    last_pos = pos[:, -1]
    for _ in range(max_new_tokens):
        nxt = out.logits[:, -1].argmax(-1)
        for r in torch.nonzero(~done).flatten().tolist():
            generated[r].append(int(nxt[r]))
        done |= torch.isin(nxt, stop)
        if bool(done.all()):
            break
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        mask = torch.cat([mask, (~done).long().unsqueeze(1)], dim=1)  # finished rows stop attending
        last_pos = last_pos + 1
        emb = vlm.lm.get_input_embeddings()(nxt.unsqueeze(1))
        out = vlm.lm(inputs_embeds=emb, attention_mask=mask, position_ids=last_pos.unsqueeze(1),
                     past_key_values=out.past_key_values, use_cache=True)
    return [[t for t in g if t not in stop_ids] for g in generated]
