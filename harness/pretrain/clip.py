"""Contrastive (CLIP) pre-training of a tiny image tower on the world's images and captions.

Uses open_clip's own ``ClipLoss`` (symmetric InfoNCE over the batch with a learned temperature), so the embedded
encoders are trained with the same objective as the CLIP encoders MM1 ablates. Any model with open_clip's
``encode_image`` / ``encode_text`` / ``logit_scale`` interface can be trained here (the ViT and the conv tower).

``hard_negatives`` > 0 adds NegCLIP's hard-negative captions (Yuksekgonul et al., ICLR 2023): for that share of the
batch, a copy of the caption with one shape, colour, position or glyph changed joins the image->text candidates
(``harness.world.language.hard_negative``). Measured on the embedded world (feature probe, 64 px, 8000 images):
plain CLIP encoded colour per grid cell at 0.99 but shape at 0.50 and the glyph at 0.17, because colour alone
separates the captions of a random batch; the VLM built on it never beat the majority answer on shape questions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from harness.artifacts import content_hash, tokenizer_fingerprint
from harness.pretrain.weights import pretrained_once
from harness.progress import note, progress
from harness.registry import check_choice
from harness.train.schedule import pretrain_warmup_cosine
from harness.world.language import hard_negative


class CaptionSource:
    """Random (image, caption) batches from the world's train split; ``kind`` picks plain or dense captions."""

    def __init__(self, world, tokenizer, context_length: int, kind: str = "caption", hard_negatives: float = 0.0):
        check_choice("pretrain_captions", kind, ("caption", "dense"))
        if not 0.0 <= hard_negatives <= 1.0:
            raise ValueError(f"pretrain_hard_negatives is a share of the batch in [0, 1], got {hard_negatives}")
        self.hard_negatives = hard_negatives
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

    def batch(self, rng: np.random.Generator, size: int, resolution: int):
        """``(pixels [B, 3, r, r], tokens [B, L], negatives [K, L])``; K = 0 without hard negatives."""
        from harness.models.encoders.base import to_pixels  # not at the top: the encoders package imports this module

        idx = np.sort(rng.choice(len(self.images), size=size, replace=False))
        pixels = to_pixels(torch.from_numpy(np.ascontiguousarray(self.images[idx])), resolution)
        texts = [self.text_of(int(i), rng) for i in idx]
        negs = [hard_negative(t, rng) for t in texts if rng.random() < self.hard_negatives]
        return pixels, self.tokens(texts), self.tokens([n for n in negs if n is not None])


@torch.no_grad()
def retrieval_accuracy(model, source: CaptionSource, resolution: int, n: int = 256, seed: int = 1) -> float:
    """Image->text top-1 accuracy within a batch of ``n`` held-in pairs: a sanity figure for the log."""
    model.eval()
    pixels, tokens, _ = source.batch(np.random.default_rng(seed), n, resolution)
    img = model.encode_image(pixels, normalize=True)
    txt = model.encode_text(tokens, normalize=True)
    model.train()
    return float((img @ txt.T).argmax(1).eq(torch.arange(n)).float().mean())


def negclip_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``img [B, E]``, ``txt [B + K, E]`` (B positives in image order, then K hard negatives) -> scalar.

    Image->text cross-entropy over all B + K captions, text->image over the B positives only (a negative caption
    has no matching image), averaged: open_clip's ``ClipLoss`` when K = 0.
    """
    target = torch.arange(img.shape[0])
    per_image = scale * img @ txt.T
    per_text = scale * txt[: img.shape[0]] @ img.T
    return (F.cross_entropy(per_image, target) + F.cross_entropy(per_text, target)) / 2


def pretrain_clip(model, image_tower, source: CaptionSource, resolution: int, steps: int, batch: int, lr: float,
                  seed: int, tag: str) -> dict:
    from open_clip.loss import ClipLoss

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    loss_fn = ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, pretrain_warmup_cosine(steps))
    acc0 = retrieval_accuracy(model, source, resolution)
    losses, t0 = [], time.time()
    model.train()
    for step in progress(range(steps), f"{tag} pre-training", "step"):
        pixels, tokens, negatives = source.batch(rng, batch, resolution)
        img = model.encode_image(pixels, normalize=True)
        if len(negatives):
            txt = model.encode_text(torch.cat([tokens, negatives]), normalize=True)
            loss = negclip_loss(img, txt, model.logit_scale.exp())
        else:
            loss = loss_fn(img, model.encode_text(tokens, normalize=True), model.logit_scale.exp())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if step % 200 == 0 or step == steps - 1:
            note(f"[{tag}] step {step:4d}/{steps} clip loss {loss:.3f} ({time.time() - t0:.0f}s)")
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
    covers the config (minus the feature-layer choice, which does not change weights), the world and the tokenizer's
    content (not its folder, so a moved cache still finds its backbones).
    """
    pre = {k: v for k, v in asdict(cfg).items() if k != "feature_layer"}
    key = {"cfg": pre, "world": world.hash, "tokenizer": tokenizer_fingerprint(tokenizer), "v": 2}
    path = Path(cache_root) / "encoders" / f"{cfg.name}-{content_hash(key)}"

    def pretrain(model) -> dict:
        source = CaptionSource(world, tokenizer, cfg.context_length, cfg.pretrain_captions,
                               cfg.pretrain_hard_negatives)
        return pretrain_clip(model, model.visual, source, cfg.pretrain_resolution, cfg.pretrain_steps,
                             cfg.pretrain_batch, cfg.pretrain_lr, cfg.pretrain_seed, tag=cfg.name)

    return pretrained_once(path, "clip.pt", cfg, make_model, pretrain)
