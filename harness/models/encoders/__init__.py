"""Image encoders. Importing this package registers every encoder in ``ENCODERS``.

``clip_tiny``, ``aim_tiny`` (one tiny ViT, contrastive vs autoregressive pre-training: MM1 §3.2) and ``conv_tiny`` are
pre-trained on the embedded world by the harness; ``openclip``, ``timm`` and ``hf`` wrap the libraries' own models
(imported lazily, when such an encoder is built).
"""

from harness.models.encoders import (  # noqa: F401  (registration)
    aim_tiny,
    clip_tiny,
    conv_tiny,
    hf_vision,
    openclip,
    timm_models,
)
from harness.models.encoders.base import ENCODERS, EncoderCfg, FeatureMapEncoder, ImageEncoder


def build_encoder(cfg: EncoderCfg, resolution: int, world, tokenizer, cache_root) -> ImageEncoder:
    """The encoder, with ``meta["init"]``: ``random`` or ``pretrained:<source>`` (``EncoderCfg.init``)."""
    enc = ENCODERS.get(cfg.name)(cfg, resolution=resolution, world=world, tokenizer=tokenizer, cache_root=cache_root)
    if getattr(enc, "meta", None) is None:
        enc.meta = {}
    enc.meta.setdefault("init", cfg.init)
    return enc


__all__ = ["ENCODERS", "EncoderCfg", "FeatureMapEncoder", "ImageEncoder", "build_encoder"]
