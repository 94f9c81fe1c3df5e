"""``clip_tiny``: a small open_clip ViT pre-trained contrastively on the world (MM1's CLIP arm, Table 1).

MM1 §3.2 ablates image encoders by loss (contrastive CLIP vs reconstructive AIM), size, resolution and pre-training
data. Offline, the harness builds an ``open_clip.CLIP`` from a tiny config (``pretrained=None``), trains it with
open_clip's ``ClipLoss`` on world images and captions — plain captions or the denser, "visually enriched" ones
(``pretrain_captions=dense``, the VeCap arm of Table 1's data column) — and caches it content-addressed.

The image tower is the tiny ViT shared with ``aim_tiny`` (``harness.models.encoders.tiny_vit``, which documents the
feature layer and the position-embedding interpolation); this module adds the contrastive text side.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.models.encoders.base import ENCODERS, check_resolution
from harness.models.encoders.tiny_vit import TinyViTCfg, TinyViTEncoder
from harness.pretrain.clip import pretrained_clip


@dataclass
class ClipTinyCfg(TinyViTCfg):
    # The cache key is every field but feature_layer (harness.pretrain.clip.pretrained_clip): renaming, adding or
    # removing a field here (or in TinyViTCfg) re-trains every cached clip_tiny.
    name: str = "clip_tiny"
    embed_dim: int = 64  # joint image-text space of the contrastive objective
    pretrain_captions: str = "dense"  # caption | dense: Table 1's data axis; MM1's base encoder saw VeCap
    pretrain_hard_negatives: float = 0.5  # share of each batch given a NegCLIP hard-negative caption (0 = CLIP)
    text_width: int = 64
    text_layers: int = 2
    context_length: int = 56
    vocab_size: int = 512


def make_clip(cfg: ClipTinyCfg, vocab_size: int, pad_id: int, eos_id: int):
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(layers=cfg.layers, width=cfg.width, head_width=cfg.head_width,
                           patch_size=cfg.patch_size, image_size=cfg.pretrain_resolution)
    text = CLIPTextCfg(context_length=cfg.context_length, vocab_size=vocab_size, width=cfg.text_width,
                       heads=max(1, cfg.text_width // 32), layers=cfg.text_layers, pool_type="eos",
                       eos_id=eos_id, pad_id=pad_id)
    return open_clip.CLIP(embed_dim=cfg.embed_dim, vision_cfg=vision, text_cfg=text)


ClipTinyEncoder = TinyViTEncoder  # the CLIP tower's ``visual`` in the shared trunk; kept as the name callers import


@ENCODERS.register("clip_tiny", cfg=ClipTinyCfg)
def build_clip_tiny(cfg: ClipTinyCfg, resolution: int, world, tokenizer, cache_root) -> TinyViTEncoder:
    check_resolution(resolution, cfg.patch_size, "clip_tiny")  # before minutes of pre-training, not after
    model, meta = pretrained_clip(cfg, world, tokenizer, cache_root,
                                  lambda: make_clip(cfg, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id))
    enc = TinyViTEncoder(model.visual, cfg, resolution)
    enc.meta = meta
    return enc
