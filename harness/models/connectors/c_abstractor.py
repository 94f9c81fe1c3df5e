"""C-Abstractor (Honeybee, Cha et al. 2023, §3 "Locality-enhanced projector"; MM1's chosen connector, §3.4).

Follows ``honeybee/projectors/projectors.py::CAbstractor`` with ``configs/model_config/c-abs.yaml``:

``[B, N, D_enc] + pos_emb (1, N, D_enc) -> reshape [B, D_enc, gh, gw] -> s1 = RegStage(depth, D_enc -> hidden)
-> AdaptiveAvgPool2d(sqrt(M), sqrt(M)) -> s2 = RegStage(depth, hidden -> hidden) -> flatten [B, M, hidden]
-> readout MLP (Linear(hidden -> d_llm), SiLU, Linear(d_llm -> d_llm)) -> [B, M, d_llm]``.

RegStage is timm's ``timm.models.regnet.RegStage`` (stride 1, SiLU, ``timm.layers.LayerNorm2d``), exactly what
Honeybee instantiates: each Bottleneck block is 1x1 conv -> LN2d -> SiLU -> 3x3 depthwise conv -> LN2d -> SiLU ->
squeeze-excite (reduce to 0.25 x block-input channels, SiLU, sigmoid gate) -> 1x1 conv -> LN2d, plus a shortcut
(identity, or 1x1 conv + LN2d when channels change), then SiLU. ``depth = 0`` degenerates to pool + MLP (readout from
D_enc), as in Honeybee.

Configurable: ``hidden``, ``depth`` (blocks per stage), ``mlp_depth`` (readout Linear count), ``pos_emb``.
M = ``num_tokens`` must be a perfect square (clear error with the nearest valid values otherwise) and at most the
encoder's patch count: Honeybee's adaptive pool abstracts N patches to M <= N tokens (its configs pool 256 patches to
144 or 256), and pooling up would only copy patches into several cells before the second RegStage, so M > N is refused
with the valid counts (``pooled_side``) instead of emitting, say, 144 tokens from a 7x7 grid.

Deviations: the position embedding is added out of place (Honeybee does ``x += pos_emb`` on the encoder's output);
Honeybee's optional eos tokens and prenorm are omitted (both off in c-abs.yaml); non-square encoder grids are
accepted (Honeybee assumes a square one). Real size (D_enc 1024, hidden 1024, depth 3, d 4096) is ~37M parameters.
Uses LayerNorm2d, never GroupNorm (GroupNorm backward segfaults at 1 thread in some CPU torch builds).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from harness.models.connectors.base import CONNECTORS, Connector, ConnectorCfg, FeatureMapSpec, FeatureSpec, pooled_side


@dataclass
class CAbstractorCfg(ConnectorCfg):
    hidden: int = 64  # channel width of both RegStages (Honeybee / MM1: 1024)
    depth: int = 3  # Bottleneck blocks per RegStage; 0 = adaptive pool + readout MLP only
    mlp_depth: int = 2  # readout: Linear(hidden -> d), then (mlp_depth - 1) x [SiLU, Linear(d -> d)]
    pos_emb: bool = True  # learnable (1, N, D_enc) position embedding, trunc-normal std 0.02


def reg_stage(depth: int, in_chs: int, out_chs: int) -> nn.Module:
    # Imported here, not at the top: timm takes ~2.5 s to import, and every sweep job imports the connector
    # registry before it can tell that its point is already done and skip it.
    from timm.layers import LayerNorm2d
    from timm.models.regnet import RegStage

    return RegStage(depth, in_chs, out_chs, stride=1, dilation=1, act_layer=nn.SiLU, norm_layer=LayerNorm2d)


def readout_mlp(depth: int, d_in: int, d_out: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(d_in, d_out)]
    for _ in range(depth - 1):
        layers += [nn.SiLU(), nn.Linear(d_out, d_out)]
    return nn.Sequential(*layers)


@CONNECTORS.register("c_abstractor", cfg=CAbstractorCfg)
class CAbstractor(Connector):
    # Its convolutions' outputs differ by about 5e-7 between a batch of one image and a batch of many (measured on
    # the CPU, 2026-12-07), which can flip a greedy near-tie: evaluation keeps computing its tokens batch by batch.
    batch_invariant = False

    def __init__(self, cfg: CAbstractorCfg, feat: FeatureSpec, d_llm: int, hr: FeatureMapSpec | None = None):
        super().__init__(cfg, feat, d_llm, hr)
        side = pooled_side(int(cfg.num_tokens), feat, cfg.name)
        if cfg.mlp_depth < 1:
            raise ValueError(f"{cfg.name}: mlp_depth must be >= 1, got {cfg.mlp_depth}")
        self.pos_emb = nn.Parameter(torch.empty(1, feat.num_patches, feat.dim)) if cfg.pos_emb else None
        if self.pos_emb is not None:
            nn.init.trunc_normal_(self.pos_emb, std=0.02)
        pool = nn.AdaptiveAvgPool2d((side, side))
        if cfg.depth:
            self.net = nn.Sequential(
                reg_stage(cfg.depth, feat.dim, cfg.hidden), pool, reg_stage(cfg.depth, cfg.hidden, cfg.hidden)
            )
            self.readout = readout_mlp(cfg.mlp_depth, cfg.hidden, d_llm)
        else:
            self.net = nn.Sequential(pool)
            self.readout = readout_mlp(cfg.mlp_depth, feat.dim, d_llm)

    def _forward(self, x: Tensor, hr: list[Tensor] | None) -> Tensor:
        if self.pos_emb is not None:
            x = x + self.pos_emb  # out of place: x is the encoder's output, possibly shared with other consumers
        b, _, d = x.shape
        y = self.net(x.transpose(1, 2).reshape(b, d, *self.feat.grid))
        return self.readout(y.flatten(2).transpose(1, 2))
