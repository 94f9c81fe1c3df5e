"""``aim_tiny``: the tiny ViT pre-trained autoregressively on the world's images (MM1's AIM arm, Table 1).

MM1 §3.2 compares contrastive encoders (CLIP) with reconstructive ones: AIM (El-Nouby et al. 2024, "Scalable
Pre-training of Large Autoregressive Image Models"), a ViT trained with prefix-causal attention to regress the
normalised pixels of the next patch in raster order. Here the trunk is exactly ``clip_tiny``'s
(``harness.models.encoders.tiny_vit``: same sizes, same feature layer, same position-embedding interpolation), so
``encoder=clip_tiny,aim_tiny`` changes the pre-training loss and nothing else; the objective, its simplifications
and the cache live in ``harness.pretrain.aim``.

``AimModel`` (trunk + pixel head) exists only during pre-training. The encoder keeps the trunk, drops the head and,
like AIM downstream, runs it with full bidirectional attention: ``[B, 3, r, r] -> [B, (r/p)^2, width]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from harness.models.encoders.base import ENCODERS, check_resolution
from harness.models.encoders.tiny_vit import TinyViTCfg, TinyViTEncoder, make_vit, vit_hidden
from harness.pretrain.aim import prefix_causal_mask, pretrained_aim


@dataclass
class AimTinyCfg(TinyViTCfg):
    name: str = "aim_tiny"
    head_hidden: int = 192  # the pixel head's hidden width (AIM: a deep MLP head; a light one suffices at this size)
    # 8x8 patches of [-1, 1] pixels: an eps above the world's pixel-noise variance (~1e-3), see harness.pretrain.aim
    pretrain_norm_eps: float = 1e-2
    # An AIM step (image tower + pixel head) took 0.41 s vs 0.55 s for a clip_tiny step (image + text towers, hard
    # negatives) at batch 64 on one loaded core: 600 steps cost about what clip_tiny's 500 do.
    pretrain_steps: int = 600
    pretrain_batch: int = 64
    pretrain_lr: float = 2e-3


class AimModel(nn.Module):
    """Trunk + per-patch pixel head: ``(pixels [B, 3, r, r], prefix [B]) -> [B, K, 3 p^2]``, K = (r/p)^2.

    Output k is the predicted normalised pixels of patch k+1 (the last one predicts nothing and is ignored), read
    from the trunk under the prefix-causal mask.
    """

    def __init__(self, cfg: AimTinyCfg):
        super().__init__()
        self.patch_size = cfg.patch_size
        self.heads = cfg.width // cfg.head_width
        self.visual = make_vit(cfg)
        # AIM's head sees one token at a time (no mixing across patches), so all context comes from the trunk.
        self.head = nn.Sequential(nn.Linear(cfg.width, cfg.head_hidden), nn.GELU(),
                                  nn.Linear(cfg.head_hidden, 3 * cfg.patch_size**2))

    def forward(self, pixels: Tensor, prefix: Tensor) -> Tensor:
        k = (pixels.shape[-1] // self.patch_size) ** 2
        mask = prefix_causal_mask(k, prefix, self.heads).to(pixels.device)
        h = vit_hidden(self.visual, pixels, len(self.visual.transformer.resblocks), mask)
        # Pre-norm blocks leave the residual stream unnormalised; AIM puts a final LayerNorm before its head.
        return self.head(self.visual.ln_post(h[:, 1:]))


@ENCODERS.register("aim_tiny", cfg=AimTinyCfg)
def build_aim_tiny(cfg: AimTinyCfg, resolution: int, world, tokenizer, cache_root) -> TinyViTEncoder:
    check_resolution(resolution, cfg.patch_size, "aim_tiny")  # before minutes of pre-training, not after
    model, meta = pretrained_aim(cfg, world, cache_root, lambda: AimModel(cfg))
    enc = TinyViTEncoder(model.visual, cfg, resolution)  # the pixel head is dropped here
    enc.meta = meta
    return enc
