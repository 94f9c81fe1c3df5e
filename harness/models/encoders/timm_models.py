"""``timm``: any timm image model (Wightman, github.com/huggingface/pytorch-image-models), as tokens or stage maps.

Two shapes of backbone, chosen by ``features_only`` (timm's own flag):

* ``features_only: false`` - a ViT (anything with a ``patch_embed``: ViT, DeiT, EVA, SigLIP, DINOv2, ...). Features
  are the hidden states after the last (or penultimate) block from ``forward_intermediates`` (what
  ``get_intermediate_layers`` calls; ``stop_early`` skips the unused last block), without the final norm, with the
  CLS and register tokens dropped by timm: ``[B, (r/p)^2, embed_dim]``. At a resolution other than the model's,
  ``set_input_size`` resamples the position embedding once to the new grid (bicubic, antialiased); at the native
  resolution nothing changes.
* ``features_only: true`` - a hierarchical CNN such as ConvNeXt: ``create_model(..., features_only=True)`` returns
  one ``[B, C_i, r/s_i, r/s_i]`` map per stage (ConvNeXt: strides 4/8/16/32). This is a ``FeatureMapEncoder``:
  Mini-Gemini's high-resolution branch (arXiv 2403.18814 §3.1, an OpenCLIP ConvNeXt-L; timm ships the same CLIP
  weights as ``convnext_large_mlp.clip_laion2b_ft_soup_320``). As the main encoder its tokens are the last stage,
  ``[B, (r/32)^2, C_last]``; ``feature_layer: penultimate`` is a ViT notion and is rejected here.

``pretrained: false`` builds a seeded random init offline (recorded as ``random``: ``cfg.init``); ``weights_file`` loads a local checkpoint through timm's
pretrained machinery; ``model_kwargs`` override constructor arguments (how the tiny variants shrink a model). Image
mean/std come from the model's pretrained config. ``wrap_timm`` is also how ``openclip`` serves open_clip towers
built on timm trunks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from harness.models.connectors.base import FeatureMapSpec, FeatureSpec
from harness.models.encoders.base import (
    ENCODERS,
    EncoderCfg,
    FeatureMapEncoder,
    ImageEncoder,
    check_resolution,
    validate_feature_layer,
)
from harness.models.encoders.external import (
    EvalBackbone,
    file_hash,
    missing_path,
    offline_failure,
    seeded,
    unknown_model,
    weights_meta,
)


@dataclass
class TimmCfg(EncoderCfg):
    name: str = "timm"
    model: str = "vit_base_patch16_224"  # timm name, optionally with a pretrained tag (name.tag)
    pretrained: bool = False  # false = seeded random init, nothing downloaded
    weights_file: str | None = None  # local checkpoint (implies pretrained); identified by its SHA-1
    features_only: bool = False  # true: multi-stage maps (ConvNeXt etc.), usable as the mining hr_encoder
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # constructor overrides (tiny variants)
    init_seed: int = 0  # random init only

    @property
    def init(self) -> str:
        if self.weights_file is not None:
            return f"pretrained:{self.weights_file}"
        return f"pretrained:{self.model}" if self.pretrained else "random"


class TimmViTEncoder(EvalBackbone, ImageEncoder):
    """timm ViT: ``[B, 3, r, r] -> [B, (r/p)^2, embed_dim]``."""

    def __init__(self, model: nn.Module, cfg, resolution: int, mean, std, who: str):
        super().__init__(resolution)
        validate_feature_layer(cfg.feature_layer)
        patch = int(model.patch_embed.patch_size[0])
        check_resolution(resolution, patch, who)
        self.grid = resolution // patch
        if tuple(model.patch_embed.grid_size) != (self.grid, self.grid):
            model.set_input_size(img_size=(resolution, resolution))  # resamples pos_embed to the new grid once
        self.model = model
        self.cfg = cfg
        self.mean, self.std = tuple(mean), tuple(std)
        self.layer = len(model.blocks) - (2 if cfg.feature_layer == "penultimate" else 1)
        self.eval()

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec(dim=self.model.embed_dim, grid=(self.grid, self.grid))

    def forward(self, pixels: Tensor) -> Tensor:
        (x,) = self.model.forward_intermediates(
            pixels, indices=[self.layer], norm=False, stop_early=True, output_fmt="NLC", intermediates_only=True
        )
        return x


class TimmMapEncoder(EvalBackbone, FeatureMapEncoder):
    """timm feature-map network (``features_only``): one ``[B, C_i, r/s_i, r/s_i]`` map per stage."""

    def __init__(self, net: nn.Module, cfg, resolution: int, mean, std, who: str):
        super().__init__(resolution)
        if cfg.feature_layer != "last":
            raise ValueError(
                f"{who}: feature_layer={cfg.feature_layer!r} selects a ViT block; a feature-map "
                "model's tokens are its last stage (use feature_layer: last)"
            )
        self.channels = tuple(int(c) for c in net.feature_info.channels())
        self.strides = tuple(int(s) for s in net.feature_info.reduction())
        check_resolution(resolution, max(self.strides), who)
        self.net = net
        self.cfg = cfg
        self.mean, self.std = tuple(mean), tuple(std)
        self.eval()

    @property
    def spec(self) -> FeatureSpec:
        g = self.resolution // self.strides[-1]
        return FeatureSpec(dim=self.channels[-1], grid=(g, g))

    @property
    def map_spec(self) -> FeatureMapSpec:
        sizes = tuple((self.resolution // s, self.resolution // s) for s in self.strides)
        return FeatureMapSpec(channels=self.channels, sizes=sizes)

    def forward_maps(self, pixels: Tensor) -> list[Tensor]:
        return list(self.net(pixels))

    def forward(self, pixels: Tensor) -> Tensor:
        return self.forward_maps(pixels)[-1].flatten(2).transpose(1, 2)


def wrap_timm(model: nn.Module, cfg, resolution: int, mean, std, who: str) -> ImageEncoder:
    """An already built timm model (e.g. an open_clip trunk): ViTs give tokens, other models their stage maps."""
    if hasattr(model, "patch_embed"):
        return TimmViTEncoder(model, cfg, resolution, mean, std, who)
    from timm.models._features import FeatureGetterNet

    return TimmMapEncoder(FeatureGetterNet(model, out_indices=len(model.feature_info)), cfg, resolution, mean, std, who)


@ENCODERS.register("timm", cfg=TimmCfg)
def build_timm(cfg: TimmCfg, resolution: int, world, tokenizer, cache_root) -> ImageEncoder:
    import timm
    from timm.data import resolve_model_data_config

    if not timm.is_model(cfg.model):
        raise unknown_model("timm", cfg.model, timm.list_models(), "timm.list_models()")
    kwargs = dict(cfg.model_kwargs)
    weights = None if cfg.pretrained else {"random_init_seed": cfg.init_seed}  # a tag's identity is known once built
    if cfg.weights_file is not None:
        path = os.path.expanduser(cfg.weights_file)
        if not os.path.isfile(path):
            raise missing_path("timm", cfg.weights_file, "weights_file")
        kwargs["pretrained_cfg_overlay"] = {"file": path}
        weights = {"file": cfg.weights_file, "sha1": file_hash(path)}
    pretrained = cfg.pretrained or cfg.weights_file is not None
    try:
        with seeded(cfg.init_seed):
            model = timm.create_model(cfg.model, pretrained=pretrained, features_only=cfg.features_only, **kwargs)
    except (RuntimeError, OSError) as err:
        if not pretrained:
            raise
        raise offline_failure("timm", cfg.model, err) from err
    if weights is None:
        pc = model.pretrained_cfg
        weights = {"tag": f"{pc['architecture']}.{pc['tag']}", "hf_hub_id": pc.get("hf_hub_id"), "url": pc.get("url")}
    data = resolve_model_data_config(model)
    who = f"timm {cfg.model}"
    if cfg.features_only:
        enc = TimmMapEncoder(model, cfg, resolution, data["mean"], data["std"], who)
    elif hasattr(model, "patch_embed"):
        enc = TimmViTEncoder(model, cfg, resolution, data["mean"], data["std"], who)
    else:
        raise ValueError(
            f"{who} has no patch embedding (not a ViT): set features_only: true for convolutional or "
            "hierarchical models to use their stage maps"
        )
    enc.meta = weights_meta(cfg, weights, ("timm",))
    return enc
