"""Average pooling connector (MM1, McKinzie et al. 2024, §3.2 "Average Pooling", "similar to Emu2").

Shape: ``[B, N = gh*gw, D_enc] -> reshape [B, D_enc, gh, gw] -> AdaptiveAvgPool2d(n, n) -> [B, n*n, D_enc]
-> Linear(D_enc -> d_llm) -> [B, M = n*n, d_llm]``, tokens in raster order.

Configurable: only ``num_tokens`` (M, must be a perfect square n*n; anything else fails with the nearest valid values).

Deviations / choices: MM1 only says "n x n average pooling". We use ``AdaptiveAvgPool2d``, so M need not divide the
grid: 144 tokens from a 16x16 grid (224 px) use overlapping windows, as torch's adaptive pooling defines them.
Non-square encoder grids (gh != gw) are accepted for the same reason. M above the patch count (n larger than the
shorter grid side) is refused with the valid counts: "pooling" 64 patches to 144 tokens only repeats patches, which
is not an average pool and would record a token count the encoder cannot supply (``pooled_side``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from harness.models.connectors.base import CONNECTORS, Connector, ConnectorCfg, FeatureMapSpec, FeatureSpec, pooled_side


@dataclass
class AvgPoolCfg(ConnectorCfg):
    """No fields beyond ``name``/``num_tokens``: the connector is a pool and one Linear."""


@CONNECTORS.register("avg_pool", cfg=AvgPoolCfg)
class AvgPool(Connector):
    def __init__(self, cfg: AvgPoolCfg, feat: FeatureSpec, d_llm: int, hr: FeatureMapSpec | None = None):
        super().__init__(cfg, feat, d_llm, hr)
        side = pooled_side(int(cfg.num_tokens), feat, cfg.name)
        self.pool = nn.AdaptiveAvgPool2d((side, side))
        self.proj = nn.Linear(feat.dim, d_llm)

    def _forward(self, x: Tensor, hr: list[Tensor] | None) -> Tensor:
        b, _, d = x.shape
        grid = x.transpose(1, 2).reshape(b, d, *self.feat.grid)  # raster order: token i = row i // gw, col i % gw
        return self.proj(self.pool(grid).flatten(2).transpose(1, 2))
