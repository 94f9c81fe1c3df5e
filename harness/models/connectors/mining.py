"""Patch info mining (Mini-Gemini, Li et al. 2024, arXiv 2403.18814, §3.2 "Patch Info Mining"; §3.3 token extension).

Follows ``mgm/model/mgm_arch.py::unified_resampler`` / ``encode_images`` and ``initialize_uni_modules``.

Inputs: LR tokens ``Q [B, N, D_enc]`` (the queries) and ``hr``: one map ``[B, C_i, H_i, W_i]`` per stage of a frozen
high-resolution conv encoder (spec in ``self.hr_spec``; ConvNeXt-L: 192/384/768/1536 ch at strides 4/8/16/32). Every
stage is bilinearly upsampled to the first stage's size and channel-concatenated -> ``[B, C_aux, H0, W0]``.

Mining, for an LR query grid gh x gw: the HR map is cut into gh x gw windows of (H0/gh) x (W0/gw) cells, and query i
attends ONLY to its own window:
``phi_q = LN + Linear(D_enc -> width)``, ``phi_k = phi_v = LN + Linear(C_aux -> width)`` (separate weights),
``mined_i = softmax_window(phi_q(Q_i) . phi_k(K_i) / sqrt(width)) @ phi_v(V_i)``,
``T = MLP(Q + mined)``, MLP = Linear(width -> d_llm), GELU, Linear(d_llm -> d_llm) (LLaVA's ``mlp2x_gelu``).
Shape: ``[B, N, D_enc] (+ hr) -> [B, M, d_llm]`` with M = N by default: HR detail is added without adding tokens.

Configurable:
- ``width``: attention width; ``None`` = D_enc as in MGM. MGM adds the *raw* Q in the residual; that needs
  width == D_enc, so only when they differ a Linear(D_enc -> width) maps Q for the residual (``q_res``).
- ``num_tokens`` < N (our extension, not in MGM): the LR query grid is average-pooled to sqrt(M) x sqrt(M) and each
  pooled query's window grows to the (H0/sqrt(M))^2 HR cells under its pooled region; the residual uses the pooled Q.
  Needs square M dividing H0 and W0; when sqrt(M) does not divide the LR grid, the adaptive-pool region and the HR
  window differ by a fraction of an LR patch. Invalid M (including M > N) fails listing every valid value.
- ``extension`` (MGM-HD token extension): input ``[B, 5*N, D_enc]`` ordered [global, crop1..crop4] (crops in raster
  order: top-left, top-right, bottom-left, bottom-right). Producing the 5 LR views (one global resize + a 2x2 grid of
  crops of a 2x-resolution image) is the CALLER's job; ``hr`` are the maps of the full HR image. The HR map is split
  into a 2x2 grid of quadrants, one per crop, and bilinearly downsampled x1/2 for the global view; each view is
  mined with its own queries. Output ``[B, 5*M, d_llm]`` in the same order: ``num_tokens`` = 5 x cfg.num_tokens.

Deviations from MGM: like MGM, NaNs are zeroed in the attention *logits* before the softmax (``nan_to_num``, which
also clamps +-inf), not in the mined output. The HR encoder is not part of this module and ``hr`` is not detached
here: MGM runs its HR encoder under ``no_grad``, which the caller must do. Rectangular LR grids are accepted (window
(H0/gh) x (W0/gw)); MGM assumes square. In MGM the LR encoder receives the global view last; here the input order
is already the output order [global, crops]. Real size (D_enc 1024, C_aux 2880, width 1024): projections ~7M + MLP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.models.connectors.base import CONNECTORS, Connector, ConnectorCfg, FeatureMapSpec, FeatureSpec

EXTENSION_VIEWS = 5  # [global, crop1..crop4] (MGM-HD, image_grid=2, image_global=True)


@dataclass
class MiningCfg(ConnectorCfg):
    width: int | None = None  # attention width; None = D_enc (MGM)
    extension: bool = False  # MGM-HD: 5 LR views [global, 4 crops] in, 5 * num_tokens tokens out


def windows(aux: Tensor, rows: int, cols: int) -> Tensor:
    """``[B, C, H, W] -> [B, rows*cols, (H/rows)*(W/cols), C]``: row q = the HR cells under query q (raster order)."""
    b, c, h, w = aux.shape
    wh, ww = h // rows, w // cols
    aux = aux.reshape(b, c, rows, wh, cols, ww).permute(0, 2, 4, 3, 5, 1)
    return aux.reshape(b, rows * cols, wh * ww, c)


@CONNECTORS.register("mining", cfg=MiningCfg)
class Mining(Connector):
    needs_hr = True

    def __init__(self, cfg: MiningCfg, feat: FeatureSpec, d_llm: int, hr: FeatureMapSpec | None = None):
        super().__init__(cfg, feat, d_llm, hr)
        assert self.hr_spec is not None  # the base raised already if it was missing
        width = feat.dim if cfg.width is None else int(cfg.width)
        c_aux = sum(self.hr_spec.channels)
        h0, w0 = self.hr_spec.sizes[0]
        if cfg.extension:
            if h0 % 2 or w0 % 2:
                raise ValueError(f"{cfg.name}: extension splits the HR map 2x2; stage-0 size {h0}x{w0} is not even")
            h0, w0 = h0 // 2, w0 // 2
        self.map_size = (h0, w0)  # HR map size one view is mined against
        self.m = int(cfg.num_tokens)
        self.rows, self.cols = self._query_grid(self.m, h0, w0)
        self.pool = None if self.m == feat.num_patches else nn.AdaptiveAvgPool2d((self.rows, self.cols))
        self.width = width
        self.phi_q = nn.Sequential(nn.LayerNorm(feat.dim), nn.Linear(feat.dim, width))
        self.phi_k = nn.Sequential(nn.LayerNorm(c_aux), nn.Linear(c_aux, width))
        self.phi_v = nn.Sequential(nn.LayerNorm(c_aux), nn.Linear(c_aux, width))
        self.q_res = nn.Identity() if width == feat.dim else nn.Linear(feat.dim, width)
        self.mlp = nn.Sequential(nn.Linear(width, d_llm), nn.GELU(), nn.Linear(d_llm, d_llm))

    def _query_grid(self, m: int, h: int, w: int) -> tuple[int, int]:
        """Query grid for M tokens: the LR grid itself (M = N), or a pooled side x side grid dividing the HR map."""
        gh, gw = self.feat.grid
        valid = {s * s: (s, s) for s in range(1, min(gh, gw) + 1) if s * s < gh * gw and h % s == 0 and w % s == 0}
        if h % gh == 0 and w % gw == 0:
            valid[gh * gw] = (gh, gw)
        if m not in valid:
            raise ValueError(
                f"{self.cfg.name}: cannot emit num_tokens={m} from a {gh}x{gw} LR grid over a {h}x{w} HR map "
                f"(M <= N, square when pooled, side dividing the HR map). Valid: {sorted(valid)}"
            )
        return valid[m]

    @property
    def num_tokens(self) -> int:
        return self.m * (EXTENSION_VIEWS if self.cfg.extension else 1)

    @property
    def expected_input_tokens(self) -> int:
        return self.feat.num_patches * (EXTENSION_VIEWS if self.cfg.extension else 1)

    def _concat_stages(self, hr: list[Tensor]) -> Tensor:
        assert self.hr_spec is not None
        want = [(c, *s) for c, s in zip(self.hr_spec.channels, self.hr_spec.sizes)]
        got = [tuple(t.shape[1:]) for t in hr]
        if got != want:
            raise ValueError(f"{type(self).__name__}: hr maps [C, H, W] per stage expected {want}, got {got}")
        size = hr[0].shape[-2:]
        ups = [hr[0]] + [F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in hr[1:]]
        return torch.cat(ups, dim=1)

    def _mine(self, q: Tensor, aux: Tensor) -> Tensor:
        """One view: ``q [B, N, D_enc]``, ``aux [B, C_aux, H, W]`` -> ``[B, M, d_llm]``."""
        if self.pool is not None:
            b, _, d = q.shape
            q = self.pool(q.transpose(1, 2).reshape(b, d, *self.feat.grid)).flatten(2).transpose(1, 2)
        kv = windows(aux, self.rows, self.cols)  # [B, M, win, C_aux]
        k, v = self.phi_k(kv), self.phi_v(kv)  # [B, M, win, width]
        logits = self.phi_q(q).unsqueeze(2) @ k.transpose(-1, -2) / math.sqrt(self.width)  # [B, M, 1, win]
        mined = (logits.nan_to_num().softmax(dim=-1) @ v).squeeze(2)  # softmax over the query's own window only
        return self.mlp(self.q_res(q) + mined)

    def _forward(self, x: Tensor, hr: list[Tensor] | None) -> Tensor:
        assert hr is not None
        aux = self._concat_stages(hr)
        if not self.cfg.extension:
            return self._mine(x, aux)
        b, _, d = x.shape
        c = aux.shape[1]
        h, w = self.map_size
        glob = F.interpolate(aux, size=(h, w), mode="bilinear", align_corners=False)
        crops = aux.reshape(b, c, 2, h, 2, w).permute(0, 2, 4, 1, 3, 5).reshape(b, 4, c, h, w)
        views = torch.cat([glob.unsqueeze(1), crops], dim=1).reshape(b * EXTENSION_VIEWS, c, h, w)
        q = x.reshape(b * EXTENSION_VIEWS, self.feat.num_patches, d)  # view-major within each image
        return self._mine(q, views).reshape(b, self.num_tokens, self.d_llm)
