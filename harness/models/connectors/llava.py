"""LLaVA projectors: ``linear`` (LLaVA v1, Liu et al. 2023, §4.1) and ``mlp`` (LLaVA-1.5 ``mlp2x_gelu``, Liu et al.
2023b, §3.1). Follows ``llava/model/multimodal_projector/builder.py``.

Shape: ``[B, N, D_enc] -> [B, N, d_llm]``; ``linear`` = Linear(D_enc -> d); ``mlp`` = Linear(D_enc -> d), then
(depth - 1) x [GELU, Linear(d -> d)] (depth 2 = ``mlp2x_gelu``).

!! TOKEN COUNT: these projectors do not compress, so they CANNOT honour ``num_tokens`` / ``visual_tokens``. They
!! ignore it and emit M = N (576 at 336 px with ViT-L/14). ``num_tokens`` is overridden to return N, so the run record
!! stores the count actually emitted; a mismatch with the configured value is logged as a warning, not an error, so
!! a connector sweep at fixed ``visual_tokens`` can still include them as the no-compression reference.

Configurable: ``mlp.depth`` (>= 2; depth 1 is ``linear``). No deviations from LLaVA.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from torch import Tensor, nn

from harness.models.connectors.base import CONNECTORS, Connector, ConnectorCfg, FeatureMapSpec, FeatureSpec

log = logging.getLogger(__name__)


@dataclass
class LinearCfg(ConnectorCfg):
    """No fields beyond ``name``/``num_tokens`` (and ``num_tokens`` is ignored: M = N)."""


@dataclass
class MlpCfg(ConnectorCfg):
    depth: int = 2  # Linear layers; 2 = LLaVA-1.5 mlp2x_gelu


class _NoCompression(Connector):
    """Shared by ``linear`` and ``mlp``: one token per patch, whatever ``num_tokens`` says."""

    def __init__(self, cfg: ConnectorCfg, feat: FeatureSpec, d_llm: int, hr: FeatureMapSpec | None = None):
        super().__init__(cfg, feat, d_llm, hr)
        asked = cfg.num_tokens
        if isinstance(asked, int) and asked != feat.num_patches:
            log.warning("%s emits one token per patch (%d), ignoring num_tokens=%d", cfg.name, feat.num_patches, asked)

    @property
    def num_tokens(self) -> int:
        return self.feat.num_patches

    def _forward(self, x: Tensor, hr: list[Tensor] | None) -> Tensor:
        return self.proj(x)


@CONNECTORS.register("linear", cfg=LinearCfg)
class LinearProjector(_NoCompression):
    def __init__(self, cfg: LinearCfg, feat: FeatureSpec, d_llm: int, hr: FeatureMapSpec | None = None):
        super().__init__(cfg, feat, d_llm, hr)
        self.proj = nn.Linear(feat.dim, d_llm)


@CONNECTORS.register("mlp", cfg=MlpCfg)
class MlpProjector(_NoCompression):
    def __init__(self, cfg: MlpCfg, feat: FeatureSpec, d_llm: int, hr: FeatureMapSpec | None = None):
        super().__init__(cfg, feat, d_llm, hr)
        if cfg.depth < 2:
            raise ValueError(f"{cfg.name}: depth must be >= 2 (depth 1 is the 'linear' connector), got {cfg.depth}")
        layers: list[nn.Module] = [nn.Linear(feat.dim, d_llm)]
        for _ in range(cfg.depth - 1):
            layers += [nn.GELU(), nn.Linear(d_llm, d_llm)]
        self.proj = nn.Sequential(*layers)
