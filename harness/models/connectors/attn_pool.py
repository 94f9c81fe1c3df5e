"""Attention pooling connector: M learnable queries cross-attend to the patch features (MM1 §3.2 "Attention Pooling").

Shape: ``[B, N, D_enc] -> (Linear D_enc -> width, only if they differ) -> depth x [cross-attn block]
-> LayerNorm -> Linear(width -> d_llm) -> [B, M, d_llm]``, with M = ``num_tokens`` learnable queries (any M >= 1).

Block (pre-LN, both halves residual):
``q = q + Out(MHA(Q = LN_q(q), K = V = LN_kv(feats)))`` then ``q = q + FFN(LN(q))``, FFN = Linear(width ->
ffn_mult*width), GELU, Linear(back).

Configurable: ``width``, ``depth``, ``heads`` (must divide width), ``ffn_mult``, and ``kv_include_queries``: when true,
keys/values are ``concat(LN_kv(feats), LN_q(q))`` as in Flamingo's Perceiver Resampler and Honeybee's resampler, so the
queries also attend to each other; when false (default) it is plain cross-attention.

Deviations: MM1 gives no depth/heads/FFN for its attention pooling, so this is the minimal faithful version (see
``docs/mm1_reference.md`` §2b); real-size values come from YAML (Honeybee resampler: width 1024, depth 6, heads
16). Against Honeybee's resampler: GELU MLP instead of its SwiGLU-with-inner-LayerNorm FFN, no dropout, and no
out-projection LayerNorm; against the Perceiver: biased q/kv projections and inner dim = width (not heads * 64).
Queries are trunc-normal(std 0.02) initialised, as Honeybee's query tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from harness.models.connectors.base import CONNECTORS, Connector, ConnectorCfg, FeatureMapSpec, FeatureSpec, query_count


@dataclass
class AttnPoolCfg(ConnectorCfg):
    width: int = 64  # attention width; an input Linear(D_enc -> width) is added only when width != D_enc
    depth: int = 1  # cross-attention blocks
    heads: int = 4  # must divide width
    ffn_mult: int = 4  # FFN hidden = ffn_mult * width
    kv_include_queries: bool = False  # Perceiver/Honeybee variant: keys/values = concat(features, queries)


def multi_head_attention(q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
    """softmax(q k^T / sqrt(d_head)) v per head; ``q [B, Lq, D]``, ``k, v [B, Lk, D]`` -> ``[B, Lq, D]``.

    Written out rather than via ``F.scaled_dot_product_attention`` because torch's FlopCounterMode counts 0 FLOPs for
    the CPU SDPA kernel, and every connector must report comparable FLOPs into the run record.
    """
    b, lq, d = q.shape
    dh = d // heads
    q, k, v = (t.reshape(b, t.shape[1], heads, dh).transpose(1, 2) for t in (q, k, v))
    attn = (q @ k.transpose(-1, -2) / math.sqrt(dh)).softmax(dim=-1)
    return (attn @ v).transpose(1, 2).reshape(b, lq, d)


class CrossAttentionBlock(nn.Module):
    """Pre-LN cross-attention + pre-LN FFN, both residual. ``forward(q [B, M, W], feats [B, N, W]) -> [B, M, W]``."""

    def __init__(self, width: int, heads: int, ffn_mult: int, kv_include_queries: bool):
        super().__init__()
        self.heads = heads
        self.kv_include_queries = kv_include_queries
        self.norm_q = nn.LayerNorm(width)
        self.norm_kv = nn.LayerNorm(width)
        self.to_q = nn.Linear(width, width)
        self.to_kv = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)
        self.norm_ffn = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, ffn_mult * width), nn.GELU(), nn.Linear(ffn_mult * width, width))

    def forward(self, q: Tensor, feats: Tensor) -> Tensor:
        qn = self.norm_q(q)
        kv = self.norm_kv(feats)
        if self.kv_include_queries:
            kv = torch.cat([kv, qn], dim=1)
        k, v = self.to_kv(kv).chunk(2, dim=-1)
        q = q + self.out(multi_head_attention(self.to_q(qn), k, v, self.heads))
        return q + self.ffn(self.norm_ffn(q))


@CONNECTORS.register("attn_pool", cfg=AttnPoolCfg)
class AttnPool(Connector):
    def __init__(self, cfg: AttnPoolCfg, feat: FeatureSpec, d_llm: int, hr: FeatureMapSpec | None = None):
        super().__init__(cfg, feat, d_llm, hr)
        m = query_count(cfg, "width")
        self.in_proj = nn.Linear(feat.dim, cfg.width) if cfg.width != feat.dim else nn.Identity()
        self.queries = nn.Parameter(torch.empty(1, m, cfg.width))
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.blocks = nn.ModuleList(
            CrossAttentionBlock(cfg.width, cfg.heads, cfg.ffn_mult, cfg.kv_include_queries) for _ in range(cfg.depth)
        )
        self.norm_out = nn.LayerNorm(cfg.width)
        self.proj = nn.Linear(cfg.width, d_llm)

    def _forward(self, x: Tensor, hr: list[Tensor] | None) -> Tensor:
        feats = self.in_proj(x)
        # repeat, not expand: a no-grad *view* of a parameter passed into a submodule crashes torch's FlopCounterMode
        # module tracker (flops_per_image runs under no_grad); the copy is only [B, M, width].
        q = self.queries.repeat(x.shape[0], 1, 1)
        for block in self.blocks:
            q = block(q, feats)
        return self.proj(self.norm_out(q))
