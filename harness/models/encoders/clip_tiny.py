"""``clip_tiny``: a small open_clip ViT pre-trained contrastively on the world (MM1's CLIP arm, Table 1).

MM1 §3.2 ablates image encoders by loss (contrastive CLIP vs reconstructive AIM), size, resolution and pre-training
data. Offline, the harness builds an ``open_clip.CLIP`` from a tiny config (``pretrained=None``), trains it with
open_clip's ``ClipLoss`` on world images and captions — plain captions or the denser, "visually enriched" ones
(``pretrain_captions=dense``, the VeCap arm of Table 1's data column) — and caches it content-addressed.

Features: the hidden states of the last (or penultimate) transformer block, CLS dropped, without ``ln_post`` (as
HF's ``last_hidden_state`` that Honeybee and LLaVA consume): ``[B, (r/p)^2, width]``. At a run resolution other than
the pre-training one the patch position embeddings are bicubically interpolated to the new grid; at the native
resolution they are used unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.models.connectors.base import FeatureSpec
from harness.models.encoders.base import ENCODERS, EncoderCfg, ImageEncoder, check_resolution, validate_feature_layer
from harness.pretrain.clip import pretrained_clip


@dataclass
class ClipTinyCfg(EncoderCfg):
    name: str = "clip_tiny"
    patch_size: int = 8
    width: int = 96
    layers: int = 4
    head_width: int = 32
    embed_dim: int = 64  # joint image-text space of the contrastive objective
    pretrain_resolution: int = 64
    pretrain_captions: str = "dense"  # caption | dense: Table 1's data axis; MM1's base encoder saw VeCap
    pretrain_hard_negatives: float = 0.5  # share of each batch given a NegCLIP hard-negative caption (0 = CLIP)
    text_width: int = 64
    text_layers: int = 2
    context_length: int = 56
    vocab_size: int = 512
    pretrain_steps: int = 500
    pretrain_batch: int = 64
    pretrain_lr: float = 2e-3
    pretrain_seed: int = 0


def make_clip(cfg: ClipTinyCfg, vocab_size: int, pad_id: int, eos_id: int):
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(layers=cfg.layers, width=cfg.width, head_width=cfg.head_width,
                           patch_size=cfg.patch_size, image_size=cfg.pretrain_resolution)
    text = CLIPTextCfg(context_length=cfg.context_length, vocab_size=vocab_size, width=cfg.text_width,
                       heads=max(1, cfg.text_width // 32), layers=cfg.text_layers, pool_type="eos",
                       eos_id=eos_id, pad_id=pad_id)
    return open_clip.CLIP(embed_dim=cfg.embed_dim, vision_cfg=vision, text_cfg=text)


class ClipTinyEncoder(ImageEncoder):
    """open_clip ViT trunk: ``[B, 3, r, r] -> [B, (r/p)^2, width]``."""

    def __init__(self, visual, cfg: ClipTinyCfg, resolution: int):
        super().__init__(resolution)
        validate_feature_layer(cfg.feature_layer)
        check_resolution(resolution, cfg.patch_size, "clip_tiny")
        self.visual = visual
        self.cfg = cfg
        self.grid = resolution // cfg.patch_size

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec(dim=self.cfg.width, grid=(self.grid, self.grid))

    def _pos_embed(self) -> Tensor:
        pos = self.visual.positional_embedding  # [1 + g0^2, width]
        g0 = math.isqrt(pos.shape[0] - 1)
        if g0 == self.grid:
            return pos
        patch = pos[1:].reshape(1, g0, g0, -1).permute(0, 3, 1, 2)
        patch = F.interpolate(patch, size=(self.grid, self.grid), mode="bicubic", align_corners=False)
        return torch.cat([pos[:1], patch.permute(0, 2, 3, 1).reshape(self.grid * self.grid, -1)], dim=0)

    def forward(self, pixels: Tensor) -> Tensor:
        v = self.visual
        x = v.conv1(pixels).flatten(2).transpose(1, 2)  # [B, N, width]
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self._pos_embed().to(x.dtype)
        x = v.ln_pre(x)
        blocks = v.transformer.resblocks
        n = len(blocks) - (1 if self.cfg.feature_layer == "penultimate" else 0)
        for blk in blocks[:n]:
            x = blk(x)
        return x[:, 1:]


@ENCODERS.register("clip_tiny", cfg=ClipTinyCfg)
def build_clip_tiny(cfg: ClipTinyCfg, resolution: int, world, tokenizer, cache_root) -> ClipTinyEncoder:
    check_resolution(resolution, cfg.patch_size, "clip_tiny")
    model, meta = pretrained_clip(cfg, world, tokenizer, cache_root,
                                  lambda: make_clip(cfg, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id))
    enc = ClipTinyEncoder(model.visual, cfg, resolution)
    enc.meta = meta
    return enc
