"""The tiny ViT trunk shared by the embedded encoders ``clip_tiny`` and ``aim_tiny`` (MM1 §3.2, Table 1).

MM1 compares image encoders that differ in their pre-training loss (contrastive CLIP vs autoregressive AIM) at a
given architecture. To make that comparison on the embedded world, both arms use one architecture: open_clip's
``VisionTransformer`` (conv patch embedding, class token, learned position embeddings, ``ln_pre``, pre-norm
residual blocks) at the sizes in ``TinyViTCfg``. Only the objective (``harness.pretrain.clip`` /
``harness.pretrain.aim``) differs.

Features: the hidden states of the last (or penultimate) transformer block, CLS dropped, without ``ln_post`` (as
HF's ``last_hidden_state`` that Honeybee and LLaVA consume): ``[B, (r/p)^2, width]``. At a run resolution other than
the pre-training one the patch position embeddings are bicubically interpolated to the new grid; at the native
resolution they are used unchanged. ``vit_hidden`` takes an optional attention mask so AIM's prefix-causal
pre-training runs through the very same code path as feature extraction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.config.schema import require
from harness.models.connectors.base import FeatureSpec
from harness.models.encoders.base import EncoderCfg, ImageEncoder, check_resolution, validate_feature_layer


@dataclass
class TinyViTCfg(EncoderCfg):
    """Trunk sizes and the pre-training budget common to the tiny ViT encoders (each arm adds its own fields)."""

    patch_size: int = 8
    width: int = 96
    layers: int = 4
    head_width: int = 32  # attention heads = width // head_width (open_clip's convention)
    pretrain_resolution: int = 64
    pretrain_steps: int = 500
    pretrain_batch: int = 64
    pretrain_lr: float = 2e-3
    pretrain_seed: int = 0

    def __post_init__(self) -> None:
        # open_clip would otherwise fail deep inside nn.MultiheadAttention, or its conv stem would silently crop.
        require(self.width % self.head_width == 0, f"encoder.width ({self.width}) must be a multiple of "
                f"encoder.head_width ({self.head_width}): the trunk has width // head_width attention heads")
        require(self.pretrain_resolution % self.patch_size == 0, f"encoder.pretrain_resolution "
                f"({self.pretrain_resolution}) must be a multiple of encoder.patch_size ({self.patch_size})")


def make_vit(cfg: TinyViTCfg):
    """A bare open_clip ``VisionTransformer`` with the sizes of ``cfg``: what ``open_clip.CLIP`` builds as its
    ``visual`` tower for the same ``CLIPVisionCfg``, minus the contrastive projection (``proj``), which only a
    contrastive objective uses."""
    from open_clip.transformer import VisionTransformer

    vit = VisionTransformer(image_size=cfg.pretrain_resolution, patch_size=cfg.patch_size, width=cfg.width,
                            layers=cfg.layers, heads=cfg.width // cfg.head_width, mlp_ratio=4.0, output_dim=1)
    vit.proj = None  # open_clip's own way to drop the head (VisionTransformer.prune_intermediate_layers)
    return vit


def pos_embed(visual, grid: int) -> Tensor:
    """``[1 + g0^2, width]`` learned embeddings (CLS first) -> ``[1 + grid^2, width]``; untouched when g0 == grid."""
    pos = visual.positional_embedding
    g0 = math.isqrt(pos.shape[0] - 1)
    if g0 == grid:
        return pos
    patch = pos[1:].reshape(1, g0, g0, -1).permute(0, 3, 1, 2)
    patch = F.interpolate(patch, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([pos[:1], patch.permute(0, 2, 3, 1).reshape(grid * grid, -1)], dim=0)


def vit_hidden(visual, pixels: Tensor, blocks: int, attn_mask: Tensor | None = None) -> Tensor:
    """``[B, 3, r, r] -> [B, 1 + (r/p)^2, width]``: CLS then the patches in raster order, after ``blocks`` blocks.

    ``attn_mask`` is an additive float mask ``[L, L]`` or ``[B * heads, L, L]`` (``L = 1 + (r/p)^2``), passed to every
    block; ``None`` is full bidirectional attention.
    """
    x = visual.conv1(pixels).flatten(2).transpose(1, 2)  # [B, N, width], raster order (row by row)
    grid = math.isqrt(x.shape[1])
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + pos_embed(visual, grid).to(x.dtype)
    x = visual.ln_pre(x)
    for blk in visual.transformer.resblocks[:blocks]:
        x = blk(x, attn_mask=attn_mask)
    return x


class TinyViTEncoder(ImageEncoder):
    """A pre-trained tiny ViT as a frozen-feature encoder: ``[B, 3, r, r] -> [B, (r/p)^2, width]``, bidirectional."""

    def __init__(self, visual: nn.Module, cfg: TinyViTCfg, resolution: int):
        super().__init__(resolution)
        validate_feature_layer(cfg.feature_layer)
        check_resolution(resolution, cfg.patch_size, cfg.name)
        self.visual = visual
        self.cfg = cfg
        self.grid = resolution // cfg.patch_size

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec(dim=self.cfg.width, grid=(self.grid, self.grid))

    def forward(self, pixels: Tensor) -> Tensor:
        depth = len(self.visual.transformer.resblocks)
        n = depth - (1 if self.cfg.feature_layer == "penultimate" else 0)
        return vit_hidden(self.visual, pixels, n)[:, 1:]
