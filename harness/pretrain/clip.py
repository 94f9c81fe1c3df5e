"""Contrastive (CLIP) pre-training of a tiny image tower on the world's images and captions.

Uses open_clip's own ``ClipLoss`` (symmetric InfoNCE over the batch with a learned temperature), so the embedded
encoders are trained with the same objective as the CLIP encoders MM1 ablates. Any model with open_clip's
``encode_image`` / ``encode_text`` / ``logit_scale`` interface can be trained here (the ViT and the conv tower).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from harness.artifacts import build_once, content_hash, read_meta
from harness.models.encoders.base import to_pixels
from harness.registry import check_choice


class CaptionSource:
    """Random (image, caption) batches from the world's train split; ``kind`` picks plain or dense captions."""

    def __init__(self, world, tokenizer, context_length: int, kind: str = "caption"):
        check_choice("pretrain_captions", kind, ("caption", "dense"))
        self.images = world.images("train")
        self.samples = world.samples("train")
        self.tok = tokenizer
        self.L = context_length
        self.kind = kind

    def text_of(self, i: int, rng: np.random.Generator) -> str:
        s = self.samples[i]
        return s["dense_caption"] if self.kind == "dense" else s["captions"][rng.integers(len(s["captions"]))]

    def tokens(self, texts: list[str]) -> torch.Tensor:
        out = torch.full((len(texts), self.L), self.tok.pad_token_id, dtype=torch.long)
        for r, t in enumerate(texts):
            ids = self.tok(t, add_special_tokens=False)["input_ids"][: self.L - 1] + [self.tok.eos_token_id]
            out[r, : len(ids)] = torch.tensor(ids)
        return out

    def batch(self, rng: np.random.Generator, size: int, resolution: int, split_images=None):
        idx = np.sort(rng.choice(len(self.images), size=size, replace=False))
        pixels = to_pixels(torch.from_numpy(np.ascontiguousarray(self.images[idx])), resolution)
        return pixels, self.tokens([self.text_of(int(i), rng) for i in idx])


@torch.no_grad()
def retrieval_accuracy(model, source: CaptionSource, resolution: int, n: int = 256, seed: int = 1) -> float:
    """Image->text top-1 accuracy within a batch of ``n`` held-in pairs: a sanity figure for the log."""
    model.eval()
    pixels, tokens = source.batch(np.random.default_rng(seed), n, resolution)
    img = model.encode_image(pixels, normalize=True)
    txt = model.encode_text(tokens, normalize=True)
    model.train()
    return float((img @ txt.T).argmax(1).eq(torch.arange(n)).float().mean())


def pretrain_clip(model, image_tower, source: CaptionSource, resolution: int, steps: int, batch: int, lr: float,
                  seed: int, tag: str) -> dict:
    from open_clip.loss import ClipLoss

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    loss_fn = ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.98))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    acc0 = retrieval_accuracy(model, source, resolution)
    losses, t0 = [], time.time()
    model.train()
    for step in range(steps):
        pixels, tokens = source.batch(rng, batch, resolution)
        img = model.encode_image(pixels, normalize=True)
        txt = model.encode_text(tokens, normalize=True)
        loss = loss_fn(img, txt, model.logit_scale.exp())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if step % 200 == 0 or step == steps - 1:
            print(f"[{tag}] step {step:4d}/{steps} clip loss {loss:.3f} ({time.time() - t0:.0f}s)", flush=True)
    acc = retrieval_accuracy(model, source, resolution)
    curve = [float(np.mean(losses[i : i + 50])) for i in range(0, len(losses), 50)]
    print(f"[{tag}] in-batch retrieval top-1 (256-way): {acc0:.3f} -> {acc:.3f}", flush=True)
    if steps >= 100 and acc < 4 * (1 / 256):
        # A collapsed tower (constant embedding, loss stuck at ln(batch)) must not be cached and silently used.
        raise RuntimeError(f"{tag}: contrastive pre-training did not learn (retrieval top-1 {acc:.3f}, chance "
                           f"{1 / 256:.3f}; final loss {curve[-1]:.3f} vs ln(batch) {math.log(batch):.3f}). "
                           f"Lower pretrain_lr (now {lr}) or check the data.")
    return {
        "objective": "clip", "loss_curve_every_50": curve, "first_loss": curve[0], "final_loss": curve[-1],
        "retrieval_top1_256_before": acc0, "retrieval_top1_256_after": acc,
        "params_image_tower": sum(p.numel() for p in image_tower.parameters()),
        "images_seen": steps * batch, "train_wall_s": round(time.time() - t0, 1),
    }


def pretrained_clip(cfg, world, tokenizer, cache_root, make_model: Callable[[], torch.nn.Module]):
    """``(model, meta)``: a CLIP model pre-trained on ``world`` once and cached content-addressed.

    ``make_model()`` builds the untrained architecture (called for training and again for loading). The cache key
    covers the config (minus the feature-layer choice, which does not change weights), the world and the tokenizer.
    """
    pre = {k: v for k, v in asdict(cfg).items() if k != "feature_layer"}
    key = {"cfg": pre, "world": world.hash, "tokenizer": tokenizer.name_or_path, "v": 1}
    path = Path(cache_root) / "encoders" / f"{cfg.name}-{content_hash(key)}"

    def build(tmp: Path) -> dict:
        model = make_model()
        source = CaptionSource(world, tokenizer, cfg.context_length, cfg.pretrain_captions)
        meta = pretrain_clip(model, model.visual, source, cfg.pretrain_resolution, cfg.pretrain_steps,
                             cfg.pretrain_batch, cfg.pretrain_lr, cfg.pretrain_seed, tag=cfg.name)
        torch.save(model.state_dict(), tmp / "clip.pt")
        return meta | {"cfg": asdict(cfg)}

    build_once(path, build)
    model = make_model()
    model.load_state_dict(torch.load(path / "clip.pt", map_location="cpu", weights_only=True))
    return model, read_meta(path) | {"artifact": str(path)}
