"""``openclip``: the image tower of any open_clip model (Ilharco et al., github.com/mlfoundations/open_clip).

MM1 (§3.2, Table 1) ablates CLIP ViTs by size, resolution and pre-training data: OpenAI ViT-L/14-336 and DFN
ViT-L/H; open_clip ships all of them as ``(model name, pretrained tag)`` pairs, so one encoder covers the table.
``pretrained: null`` builds the architecture with a seeded random init (``init_seed``) and downloads nothing (tiny
variants, random baselines, real-size speed tests such as ``openclip_vit_b32_random``); the run records it as
``random`` (``cfg.init``). ``model_cfg`` replaces top-level keys of the model config (``vision_cfg``, ``text_cfg``,
...), which is how ``openclip_tiny`` shrinks ViT-B-32 to a few layers; note a replaced ``vision_cfg`` is the whole
sub-dict, so give every key the tower needs (docs/real-scale.md).

Towers: open_clip's own ``VisionTransformer`` is run block by block. Features are the hidden states after the last
(or penultimate) block, CLS dropped, without ``ln_post`` (as HF's ``last_hidden_state`` that LLaVA and Honeybee
consume; the same convention as ``clip_tiny``): ``[B, (r/p)^2, width]``. At a run resolution other than the
tower's, the patch position embeddings are bicubically interpolated to the new grid (open_clip's
``resize_pos_embed``, done on the fly so a trained encoder still updates the stored embedding); at the native
resolution they are used unchanged. Towers that open_clip builds from a timm trunk (ConvNeXt such as Mini-Gemini's
``convnext_large_d_320``, SigLIP ViTs) are handed to the ``timm`` encoder's wrappers: ViT trunks give tokens,
convolutional trunks give a multi-stage ``FeatureMapEncoder`` usable as the mining ``hr_encoder``.

Normalisation uses the mean/std of the model's preprocess config (set by open_clip from the pretrained tag); the
resize stays the harness's, so every encoder in a sweep sees the same pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.models.connectors.base import FeatureSpec
from harness.models.encoders.base import ENCODERS, EncoderCfg, ImageEncoder, check_resolution, validate_feature_layer
from harness.models.encoders.external import (
    EvalBackbone,
    file_hash,
    hub_snapshot,
    looks_like_path,
    missing_path,
    offline_failure,
    seeded,
    unknown_model,
    weights_meta,
)


@dataclass
class OpenClipCfg(EncoderCfg):
    name: str = "openclip"
    model: str = "ViT-B-32"  # open_clip model name (open_clip.list_models()); hf-hub: / local-dir: schemas too
    pretrained: str | None = None  # tag ("openai", "dfn5b", ...) or a checkpoint file; null = seeded random init
    model_cfg: dict[str, Any] = field(default_factory=dict)  # replaces top-level model-config keys (tiny variants)
    init_seed: int = 0  # random init only

    @property
    def init(self) -> str:
        if self.model.startswith(("hf-hub:", "local-dir:")):  # the weights come with the model name
            return f"pretrained:{self.model}"
        return "random" if self.pretrained is None else f"pretrained:{self.pretrained}"


def interpolate_pos_embed(pos: Tensor, grid: int) -> Tensor:
    """``[1 + g0^2, D]`` (CLS first) -> ``[1 + grid^2, D]``; returns ``pos`` itself when ``grid == g0``."""
    g0 = round((pos.shape[0] - 1) ** 0.5)
    if g0 == grid:
        return pos
    patch = pos[1:].reshape(1, g0, g0, -1).permute(0, 3, 1, 2)
    patch = F.interpolate(patch, size=(grid, grid), mode="bicubic", align_corners=False, antialias=True)
    return torch.cat([pos[:1], patch.permute(0, 2, 3, 1).reshape(grid * grid, -1)], dim=0)


class OpenClipViTEncoder(EvalBackbone, ImageEncoder):
    """open_clip ``VisionTransformer``: ``[B, 3, r, r] -> [B, (r/p)^2, width]``."""

    def __init__(self, visual, cfg: OpenClipCfg, resolution: int):
        super().__init__(resolution)
        validate_feature_layer(cfg.feature_layer)
        self.patch = int(visual.patch_size[0])
        check_resolution(resolution, self.patch, f"openclip {cfg.model}")
        self.visual = visual
        self.cfg = cfg
        self.grid = resolution // self.patch
        self.mean = tuple(visual.preprocess_cfg["mean"])
        self.std = tuple(visual.preprocess_cfg["std"])
        self.eval()

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec(dim=self.visual.conv1.out_channels, grid=(self.grid, self.grid))

    def forward(self, pixels: Tensor) -> Tensor:
        v = self.visual
        x = v.conv1(pixels).flatten(2).transpose(1, 2)  # [B, N, width]
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + interpolate_pos_embed(v.positional_embedding, self.grid).to(x.dtype)
        x = v.ln_pre(x)
        last = len(v.transformer.resblocks) - (2 if self.cfg.feature_layer == "penultimate" else 1)
        _, (x,) = v.transformer.forward_intermediates(x, indices=[last], stop_early=True)
        return x[:, 1:]


def _weights(cfg: OpenClipCfg) -> dict:
    """Validate the model name and pretrained source before building; return the weights' identity."""
    import open_clip

    if not cfg.model.startswith(("hf-hub:", "local-dir:")) and open_clip.get_model_config(cfg.model) is None:
        raise unknown_model("openclip", cfg.model, open_clip.list_models(), "open_clip.list_models()")
    if cfg.model.startswith("local-dir:"):
        folder = cfg.model.removeprefix("local-dir:")
        if not os.path.isdir(os.path.expanduser(folder)):
            raise missing_path("openclip", folder, "local-dir model folder")
        return {"file": folder, "sha1": file_hash(folder)}
    if cfg.model.startswith("hf-hub:"):
        return {"hub": cfg.model.removeprefix("hf-hub:")}  # + the cached revision, once open_clip has loaded it
    if cfg.pretrained is None:
        return {"random_init_seed": cfg.init_seed}
    if cfg.pretrained in open_clip.list_pretrained_tags_by_model(cfg.model):
        return {"tag": cfg.pretrained, "source": open_clip.get_pretrained_cfg(cfg.model, cfg.pretrained)}
    if looks_like_path(cfg.pretrained):
        if not os.path.isfile(os.path.expanduser(cfg.pretrained)):
            raise missing_path("openclip", cfg.pretrained, "pretrained checkpoint")
        return {"file": cfg.pretrained, "sha1": file_hash(cfg.pretrained)}
    tags = open_clip.list_pretrained_tags_by_model(cfg.model)
    raise ValueError(
        f"openclip: pretrained '{cfg.pretrained}' is neither a tag of {cfg.model} (valid: "
        f"{', '.join(tags) or 'none'}) nor a checkpoint path; null builds a random init"
    )


@ENCODERS.register("openclip", cfg=OpenClipCfg)
def build_openclip(cfg: OpenClipCfg, resolution: int, world, tokenizer, cache_root) -> ImageEncoder:
    import open_clip
    from open_clip.timm_model import TimmModel
    from open_clip.transformer import VisionTransformer

    from harness.models.encoders.timm_models import wrap_timm

    weights = _weights(cfg)
    pretrained = os.path.expanduser(cfg.pretrained) if cfg.pretrained and "file" in weights else cfg.pretrained
    try:
        with seeded(cfg.init_seed):
            model = open_clip.create_model(cfg.model, pretrained=pretrained, **dict(cfg.model_cfg))
    except (RuntimeError, OSError) as err:
        if pretrained is None and not cfg.model.startswith("hf-hub:"):
            raise
        raise offline_failure("openclip", f"{cfg.model} / {pretrained}", err) from err
    if "hub" in weights:
        weights["revision"] = hub_snapshot("openclip", weights["hub"], "open_clip_config.json")[1]
    visual = model.visual
    if isinstance(visual, VisionTransformer):
        enc = OpenClipViTEncoder(visual, cfg, resolution)
    elif isinstance(visual, TimmModel):
        pp = visual.preprocess_cfg
        enc = wrap_timm(visual.trunk, cfg, resolution, tuple(pp["mean"]), tuple(pp["std"]), f"openclip {cfg.model}")
    else:
        raise TypeError(
            f"openclip: {cfg.model} has a {type(visual).__name__} image tower; supported are open_clip "
            "ViTs and timm trunks (ModifiedResNet towers have no patch-token interface here)"
        )
    enc.meta = weights_meta(cfg, weights, ("open_clip_torch",))
    return enc
