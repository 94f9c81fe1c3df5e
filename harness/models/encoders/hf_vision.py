"""``hf``: CLIP and SigLIP vision towers through transformers (``CLIPVisionModel``, ``SiglipVisionModel``).

The form most VLM code loads encoders in: LLaVA-1.5 and Mini-Gemini take ``openai/clip-vit-large-patch14-336``,
Prismatic and Idefics2 a SigLIP (``google/siglip-so400m-patch14-384``). ``model`` is a hub id (found in the local
Hugging Face cache: runs are offline) or a local folder written by ``save_pretrained``; a full CLIP/SigLIP
checkpoint works, only its vision tower is built. ``config`` instead (with ``model: null``) builds a seeded random init
from vision-config keyword arguments, with no files at all (the tiny variants; recorded as ``random``: ``cfg.init``).
Keys left out take the family's config defaults (``CLIPVisionConfig``: ViT-B/32 at 224 px).

Features follow LLaVA's ``feature_select``: ``hidden_states[-1]`` (last) or ``[-2]`` (penultimate) from
``output_hidden_states``, i.e. block outputs without ``post_layernorm``; CLIP's CLS token is dropped, SigLIP has
none. ``interpolate_pos_encoding=True`` always: transformers bicubically resizes the position embeddings to the
input grid and returns them untouched at the native resolution. Shape ``[B, (r/p)^2, hidden_size]``.

Mean/std come from the checkpoint's ``preprocessor_config.json`` when there is one, else the family's own
processor defaults (CLIP: the OpenAI statistics; SigLIP: 0.5).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
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
    weights_meta,
)
from harness.registry import check_choice

FAMILIES = ("clip", "siglip")


@dataclass
class HFCfg(EncoderCfg):
    name: str = "hf"
    family: str = "clip"  # clip | siglip: CLIPVisionModel or SiglipVisionModel
    model: str | None = None  # hub id (from the local HF cache) or a local save_pretrained folder
    # Vision-config kwargs for a seeded random init (with model: null); {} or null = none. {} by default, not null: a
    # dict given on the command line is merged into the node, and OmegaConf cannot merge into a null one.
    config: dict[str, Any] | None = field(default_factory=dict)
    init_seed: int = 0  # random init only

    @property
    def init(self) -> str:
        return "random" if self.model is None else f"pretrained:{self.model}"


class HFVisionEncoder(EvalBackbone, ImageEncoder):
    """transformers vision tower: ``[B, 3, r, r] -> [B, (r/p)^2, hidden_size]``."""

    def __init__(self, model, cfg: HFCfg, resolution: int, mean, std):
        super().__init__(resolution)
        validate_feature_layer(cfg.feature_layer)
        patch = int(model.config.patch_size)
        check_resolution(resolution, patch, f"hf {cfg.model or cfg.family}")
        self.model = model
        self.cfg = cfg
        self.grid = resolution // patch
        self.mean, self.std = tuple(mean), tuple(std)
        self.eval()

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec(dim=int(self.model.config.hidden_size), grid=(self.grid, self.grid))

    def forward(self, pixels: Tensor) -> Tensor:
        out = self.model(pixel_values=pixels, output_hidden_states=True, interpolate_pos_encoding=True)
        x = out.hidden_states[-2 if self.cfg.feature_layer == "penultimate" else -1]
        return x[:, 1:] if self.cfg.family == "clip" else x


def _classes(family: str):
    from transformers import CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel

    return {"clip": (CLIPVisionModel, CLIPVisionConfig), "siglip": (SiglipVisionModel, SiglipVisionConfig)}[family]


def _snapshot(cfg: HFCfg) -> tuple[Path, dict]:
    """The folder the weights were read from, and their identity (local file hash, or hub id + revision)."""
    if looks_like_path(cfg.model):
        folder = Path(cfg.model).expanduser()
        return folder, {"file": cfg.model, "sha1": file_hash(folder)}
    folder, revision = hub_snapshot("hf", cfg.model, "config.json")
    return folder, {"hub": cfg.model, "revision": revision}


def _mean_std(folder: Path | None, family: str) -> tuple[list[float], list[float]]:
    pp = None if folder is None else folder / "preprocessor_config.json"
    if pp is not None and pp.is_file():
        d = json.loads(pp.read_text())
        return d["image_mean"], d["image_std"]
    from transformers.utils.constants import (
        IMAGENET_STANDARD_MEAN,
        IMAGENET_STANDARD_STD,
        OPENAI_CLIP_MEAN,
        OPENAI_CLIP_STD,
    )

    return (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD) if family == "clip" else (IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD)


@ENCODERS.register("hf", cfg=HFCfg)
def build_hf(cfg: HFCfg, resolution: int, world, tokenizer, cache_root) -> HFVisionEncoder:
    check_choice("hf family", cfg.family, FAMILIES)
    if (cfg.model is None) == (not cfg.config):
        raise ValueError("hf: set exactly one of model (hub id or local folder) and config (random init)")
    model_cls, config_cls = _classes(cfg.family)
    folder = None
    if cfg.config:
        with seeded(cfg.init_seed):
            model = model_cls(config_cls(**cfg.config))
        weights = {"random_init_seed": cfg.init_seed}
    else:
        if looks_like_path(cfg.model) and not Path(cfg.model).expanduser().is_dir():
            raise missing_path("hf", cfg.model, "local model folder")
        source = str(Path(cfg.model).expanduser()) if looks_like_path(cfg.model) else cfg.model
        try:
            model = model_cls.from_pretrained(source, dtype=torch.float32)
        except OSError as err:
            raise offline_failure("hf", cfg.model, err) from err
        folder, weights = _snapshot(cfg)
        model_type = json.loads((folder / "config.json").read_text())["model_type"]
        if not model_type.startswith(cfg.family):
            raise ValueError(f"hf: {cfg.model} is a '{model_type}' checkpoint, not family '{cfg.family}'")
    mean, std = _mean_std(folder, cfg.family)
    enc = HFVisionEncoder(model, cfg, resolution, mean, std)
    enc.meta = weights_meta(cfg, weights, ("transformers",))
    return enc
