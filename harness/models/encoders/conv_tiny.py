"""``conv_tiny``: a small ConvNeXt-style convolutional encoder, CLIP-pre-trained on the world at high resolution.

Mini-Gemini's patch-info mining (arXiv 2403.18814 §3.1) pairs the low-resolution ViT with a high-resolution
convolutional encoder (OpenCLIP ConvNeXt-L, frozen) whose four stages (strides 4/8/16/32) are upsampled to the
stride-4 map and concatenated as keys/values. This is the same structure at toy scale: a 4x4/stride-4 patchify stem,
four stages of ConvNeXt blocks (7x7 depthwise conv, LayerNorm, inverted-bottleneck MLP, residual) with 2x2/stride-2
downsampling between stages, trained with the CLIP objective (its own small open_clip text tower) at
``pretrain_resolution`` and cached content-addressed.

``forward`` returns the last stage as tokens ``[B, (r/32)^2, C_last]`` (so it can also serve as the main encoder);
``forward_maps`` returns all four stage maps ``[B, C_i, r/s_i, r/s_i]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.models.connectors.base import FeatureMapSpec, FeatureSpec
from harness.models.encoders.base import ENCODERS, EncoderCfg, FeatureMapEncoder, check_resolution
from harness.pretrain.clip import pretrained_clip


@dataclass
class ConvTinyCfg(EncoderCfg):
    name: str = "conv_tiny"
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 96])
    depths: list[int] = field(default_factory=lambda: [1, 1, 1, 1])
    embed_dim: int = 64
    pretrain_resolution: int = 128
    pretrain_captions: str = "dense"
    pretrain_hard_negatives: float = 0.5  # share of each batch given a NegCLIP hard-negative caption (0 = CLIP)
    text_width: int = 64
    text_layers: int = 2
    context_length: int = 56
    vocab_size: int = 512
    pretrain_steps: int = 400
    pretrain_batch: int = 64
    pretrain_lr: float = 5e-4  # 2e-3 (fine for the ViT) collapsed this tower to a constant embedding
    pretrain_seed: int = 0


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of an NCHW map (ConvNeXt; avoids GroupNorm, which crashed at 1 thread on CPU)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps).permute(
            0, 3, 1, 2
        )


class ConvNeXtBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c))

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.dw(x).permute(0, 2, 3, 1))
        return x + self.mlp(y).permute(0, 3, 1, 2)


class ConvTower(nn.Module):
    """``[B, 3, r, r]`` -> four maps at strides 4, 8, 16, 32; ``pooled`` -> ``[B, embed_dim]`` for CLIP."""

    def __init__(self, channels: list[int], depths: list[int], embed_dim: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 4, stride=4), LayerNorm2d(channels[0]))
        self.down = nn.ModuleList(
            [nn.Identity()]
            + [nn.Sequential(LayerNorm2d(channels[i - 1]), nn.Conv2d(channels[i - 1], channels[i], 2, stride=2))
               for i in range(1, len(channels))]
        )
        self.stages = nn.ModuleList([nn.Sequential(*[ConvNeXtBlock(c) for _ in range(d)]) for c, d in zip(channels, depths)])
        self.head_norm = nn.LayerNorm(channels[-1])
        self.proj = nn.Linear(channels[-1], embed_dim, bias=False)

    def maps(self, x: Tensor) -> list[Tensor]:
        out, x = [], self.stem(x)
        for down, stage in zip(self.down, self.stages):
            x = stage(down(x))
            out.append(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.head_norm(self.maps(x)[-1].mean(dim=(2, 3))))


class ConvClip(nn.Module):
    """open_clip-style wrapper (``encode_image``/``encode_text``/``logit_scale``) around the conv tower."""

    def __init__(self, cfg: ConvTinyCfg, vocab_size: int, pad_id: int, eos_id: int):
        super().__init__()
        from open_clip.model import CLIPTextCfg, _build_text_tower

        self.visual = ConvTower(cfg.channels, cfg.depths, cfg.embed_dim)
        text = CLIPTextCfg(context_length=cfg.context_length, vocab_size=vocab_size, width=cfg.text_width,
                           heads=max(1, cfg.text_width // 32), layers=cfg.text_layers, pool_type="eos",
                           eos_id=eos_id, pad_id=pad_id)
        self.text = _build_text_tower(cfg.embed_dim, text)
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # log(1/0.07), CLIP's initial temperature

    def encode_image(self, x: Tensor, normalize: bool = False) -> Tensor:
        z = self.visual(x)
        return F.normalize(z, dim=-1) if normalize else z

    def encode_text(self, t: Tensor, normalize: bool = False) -> Tensor:
        z = self.text(t)
        return F.normalize(z, dim=-1) if normalize else z


class ConvTinyEncoder(FeatureMapEncoder):
    def __init__(self, tower: ConvTower, cfg: ConvTinyCfg, resolution: int):
        super().__init__(resolution)
        check_resolution(resolution, 32, "conv_tiny")
        self.tower = tower
        self.cfg = cfg

    @property
    def spec(self) -> FeatureSpec:
        g = self.resolution // 32
        return FeatureSpec(dim=self.cfg.channels[-1], grid=(g, g))

    @property
    def map_spec(self) -> FeatureMapSpec:
        sizes = tuple((self.resolution // s, self.resolution // s) for s in (4, 8, 16, 32))
        return FeatureMapSpec(channels=tuple(self.cfg.channels), sizes=sizes)

    def forward_maps(self, pixels: Tensor) -> list[Tensor]:
        return self.tower.maps(pixels)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.tower.maps(pixels)[-1].flatten(2).transpose(1, 2)


@ENCODERS.register("conv_tiny", cfg=ConvTinyCfg)
def build_conv_tiny(cfg: ConvTinyCfg, resolution: int, world, tokenizer, cache_root) -> ConvTinyEncoder:
    check_resolution(resolution, 32, "conv_tiny")
    model, meta = pretrained_clip(cfg, world, tokenizer, cache_root,
                                  lambda: ConvClip(cfg, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id))
    enc = ConvTinyEncoder(model.visual, cfg, resolution)
    enc.meta = meta
    return enc
