"""LLM registry and the handle the VLM holds: a Hugging Face causal LM plus its tokenizer.

Every LLM family goes through one wrapper (style rule 9: differences are data, not copies): the VLM only needs
``get_input_embeddings()``, ``forward(inputs_embeds=..., attention_mask=..., position_ids=..., past_key_values=...)``
and the tokenizer's special-token ids, which every ``transformers`` causal LM provides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING
from torch import nn

from harness.registry import Registry

LLMS: Registry = Registry("llm")
# The tokenizer an LLM choice implies, obtainable without building (or waiting for) the LLM: encoders pre-trained with
# a text tower share it, so a cold parallel sweep can pre-train an encoder in one job while another builds the LLM.
TOKENIZERS: Registry = Registry("llm tokenizer")


@dataclass
class LLMCfg:
    name: str = MISSING


@dataclass
class LanguageModel:
    """A causal LM ready for visual-prefix training: ``model(inputs_embeds [B, T, d]) -> logits [B, T, V]``."""

    model: nn.Module
    tokenizer: Any
    meta: dict = field(default_factory=dict)  # provenance: artifact path, pre-training loss, params

    @property
    def d_model(self) -> int:
        return int(self.model.config.hidden_size)

    def token_id(self, token: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or tid == self.tokenizer.unk_token_id:
            raise KeyError(f"tokenizer has no special token {token!r}; add it before building the VLM")
        return int(tid)


def build_llm(cfg: LLMCfg, world, cache_root) -> LanguageModel:
    return LLMS.get(cfg.name)(cfg, world=world, cache_root=cache_root)


def build_tokenizer(cfg: LLMCfg, world, cache_root):
    return TOKENIZERS.get(cfg.name)(cfg, world=world, cache_root=cache_root)
