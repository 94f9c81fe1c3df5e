"""Image encoders. Importing this package registers every encoder in ``ENCODERS``."""

from harness.models.encoders import clip_tiny, conv_tiny  # noqa: F401  (registration)
from harness.models.encoders.base import ENCODERS, EncoderCfg, FeatureMapEncoder, ImageEncoder


def build_encoder(cfg: EncoderCfg, resolution: int, world, tokenizer, cache_root) -> ImageEncoder:
    return ENCODERS.get(cfg.name)(cfg, resolution=resolution, world=world, tokenizer=tokenizer, cache_root=cache_root)


__all__ = ["ENCODERS", "EncoderCfg", "FeatureMapEncoder", "ImageEncoder", "build_encoder"]
