"""Q-Former + linear projection (MiniGPT-4, Zhu et al. 2023, §3; Q-Former from BLIP-2, Li et al. 2023, §3.1).

Follows ``minigpt4/models/minigpt4.py`` (``ln_vision``, ``query_tokens``, ``llama_proj``) and ``minigpt4/models/
Qformer.py`` (BERT layers with cross-attention every ``cross_attention_freq`` layers, text parts removed):

``[B, N, D_enc] -> ln_vision (LayerNorm) -> image context;  M learned queries (1, M, hidden) -> LayerNorm (BERT
embeddings LN) -> layers x [self-attn over queries -> (cross-attn to the image context, on layers 0, f, 2f, ...) -> FFN]
-> [B, M, hidden] -> llama_proj Linear(hidden -> d_llm) -> [B, M, d_llm]``.
Every sub-block is BERT post-LN: ``h = LN(h + Dense(Attn(h)))``, ``h = LN(h + Linear(GELU(Linear(h))))``;
cross-attention keys/values are Linear(D_enc -> hidden). Init as BERT: Linear weights and queries N(0, 0.02).

Configurable: ``hidden``, ``layers``, ``heads``, ``ffn_mult`` (BERT: 4), ``cross_attention_freq`` (BLIP-2: 2),
M = ``num_tokens`` (MiniGPT-4: 32), and ``freeze_qformer``: when true, ``ln_vision``, the queries and the Q-Former
get ``requires_grad=False`` and ``trainable_parameters()`` yields only ``llama_proj``, as MiniGPT-4 trains only
llama_proj. NOTE: there are no BLIP-2 weights offline, so with random init a frozen Q-Former is a fixed RANDOM
feature map: only the linear learns. Compare frozen runs with that in mind.

Deviations: no dropout (BERT uses 0.1; no connector here uses dropout, so runs stay deterministic); no pretrained
weights; MiniGPT-4's EVA ViT-g features are 1408-d, here D_enc comes from the run's encoder; ``ln_vision`` lives in
the connector (in MiniGPT-4 it sits on the frozen vision side).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from harness.models.connectors.attn_pool import multi_head_attention
from harness.models.connectors.base import CONNECTORS, Connector, ConnectorCfg, FeatureMapSpec, FeatureSpec, query_count

BERT_LN_EPS = 1e-12
BERT_INIT_STD = 0.02


@dataclass
class QFormerCfg(ConnectorCfg):
    hidden: int = 64  # Q-Former width (BLIP-2: 768)
    layers: int = 2  # BERT layers (BLIP-2: 12)
    heads: int = 4  # must divide hidden (BLIP-2: 12)
    ffn_mult: int = 4  # FFN hidden = ffn_mult * hidden (BERT intermediate 3072 = 4 x 768)
    cross_attention_freq: int = 2  # cross-attention on layers 0, f, 2f, ... (BLIP-2: 2)
    freeze_qformer: bool = False  # MiniGPT-4: True (only llama_proj trains)


class BertAttention(nn.Module):
    """Post-LN attention: ``LN(h + Dense(MHA(Q = h, K = V = ctx)))``; ``ctx`` is ``h`` itself for self-attention."""

    def __init__(self, hidden: int, heads: int, ctx_dim: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(ctx_dim, hidden)
        self.value = nn.Linear(ctx_dim, hidden)
        self.dense = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden, eps=BERT_LN_EPS)

    def forward(self, h: Tensor, ctx: Tensor) -> Tensor:
        a = multi_head_attention(self.query(h), self.key(ctx), self.value(ctx), self.heads)
        return self.norm(h + self.dense(a))


class QFormerLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, ffn_mult: int, ctx_dim: int, cross: bool):
        super().__init__()
        self.attention = BertAttention(hidden, heads, hidden)
        self.crossattention = BertAttention(hidden, heads, ctx_dim) if cross else None
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn_mult * hidden), nn.GELU(), nn.Linear(ffn_mult * hidden, hidden))
        self.ffn_norm = nn.LayerNorm(hidden, eps=BERT_LN_EPS)

    def forward(self, h: Tensor, img: Tensor) -> Tensor:
        h = self.attention(h, h)
        if self.crossattention is not None:
            h = self.crossattention(h, img)
        return self.ffn_norm(h + self.ffn(h))


def bert_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=BERT_INIT_STD)
        nn.init.zeros_(module.bias)


@CONNECTORS.register("qformer", cfg=QFormerCfg)
class QFormer(Connector):
    def __init__(self, cfg: QFormerCfg, feat: FeatureSpec, d_llm: int, hr: FeatureMapSpec | None = None):
        super().__init__(cfg, feat, d_llm, hr)
        m = query_count(cfg, "hidden")
        if cfg.cross_attention_freq < 1:
            raise ValueError(f"{cfg.name}: cross_attention_freq must be >= 1, got {cfg.cross_attention_freq}")
        self.ln_vision = nn.LayerNorm(feat.dim)
        self.query_tokens = nn.Parameter(torch.empty(1, m, cfg.hidden))
        nn.init.normal_(self.query_tokens, std=BERT_INIT_STD)
        self.query_norm = nn.LayerNorm(cfg.hidden, eps=BERT_LN_EPS)  # BertEmbeddings.LayerNorm, applied to queries
        self.layers = nn.ModuleList(
            QFormerLayer(cfg.hidden, cfg.heads, cfg.ffn_mult, feat.dim, cross=i % cfg.cross_attention_freq == 0)
            for i in range(cfg.layers)
        )
        self.layers.apply(bert_init)
        self.llama_proj = nn.Linear(cfg.hidden, d_llm)  # default nn.Linear init, as MiniGPT-4
        if cfg.freeze_qformer:
            for name, p in self.named_parameters():
                if not name.startswith("llama_proj."):
                    p.requires_grad_(False)

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        if self.cfg.freeze_qformer:
            return self.llama_proj.parameters()
        return self.parameters()

    def _forward(self, x: Tensor, hr: list[Tensor] | None) -> Tensor:
        img = self.ln_vision(x)
        # repeat, not expand: a no-grad view of a parameter passed into a submodule crashes FlopCounterMode's tracker
        h = self.query_norm(self.query_tokens.repeat(x.shape[0], 1, 1))
        for layer in self.layers:
            h = layer(h, img)
        return self.llama_proj(h)
