"""Autoregressive image pre-training (AIM) of a tiny image tower on the world's images (MM1's AIM arm, §3.2 Table 1).

AIM (El-Nouby et al. 2024, "Scalable Pre-training of Large Autoregressive Image Models", §2-3): split the image into
K non-overlapping patches in raster order and, at every position k, regress the pixels of patch k+1 from patches
1..k with a causal transformer and a per-patch MLP head. Targets are normalised per patch (each patch's pixels minus
their mean, divided by their standard deviation, as in MAE), the loss is the mean squared error. Pre-training uses
*prefix* attention: a prefix length S is drawn per image (here uniformly from 1..K-1), the first S patches attend
to each other bidirectionally, the rest causally, and only the K - S patches after the prefix are predicted. This
lets the trunk run bidirectionally downstream (as MM1 and AIM use it) without a train/test attention mismatch.

What this module simplifies, and why:
- ``norm_eps`` is 1e-2 (AIM/MAE: 1e-6, in [-1, 1] pixel units here). About 80% of the world's 8x8 patches at 64 px
  are flat background whose only variance is the renderer's pixel noise (~1e-3); with a tiny eps those become
  unit-variance white-noise targets that dominate the loss and can never be predicted. An eps above the noise
  floor keeps them near zero and leaves the loss to the patches with content (variance ~0.1-0.2, barely changed).
- The trunk is ``clip_tiny``'s (learned position embeddings, biases, open_clip's class token) so the two arms differ
  in the loss only; AIM's own ViT uses sinusoidal position embeddings and has no class token. Here the class token
  acts as a learned start token: every patch may attend to it and it sees only prefix patches, so it leaks nothing.
- A 2-layer MLP pixel head (AIM: a stack of MLP blocks) and no data augmentation.

``model(pixels [B, 3, r, r], prefix [B]) -> [B, K, 3 p^2]`` (prediction at position k = next patch's pixels) is the
interface trained here; ``harness.models.encoders.aim_tiny`` provides it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from harness.artifacts import content_hash
from harness.pretrain.weights import pretrained_once
from harness.progress import note, progress
from harness.train.schedule import pretrain_warmup_cosine


def patchify(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, C, r, r] -> [B, (r/p)^2, C p^2]``: patches in raster order (row by row), as the ViT's conv stem orders
    its tokens, so token k and target patch k are the same square."""
    b, c, h, w = pixels.shape
    x = pixels.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // patch) * (w // patch), c * patch * patch)


def normalized_patches(patches: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-patch ``(x - mean) / sqrt(var + eps)`` over each patch's pixels (population variance): ``[..., D]``."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, unbiased=False, keepdim=True)
    return (patches - mean) / torch.sqrt(var + eps)


def prefix_causal_mask(num_patches: int, prefix: torch.Tensor, heads: int) -> torch.Tensor:
    """Additive attention mask ``[B * heads, 1 + K, 1 + K]`` over (CLS, patch 0..K-1) for prefix lengths ``[B]``.

    Token positions are -1 (CLS), 0..K-1 (patches). A query at position q may read a key at position k if
    ``k <= q`` (causal) or ``k < S`` (the bidirectional prefix); everything else gets -inf. The float form matters:
    open_clip casts the mask to the activations' dtype, which would turn a boolean mask into an additive +1.
    """
    pos = torch.arange(-1, num_patches, device=prefix.device)
    causal = pos[None, :, None] >= pos[None, None, :]  # [1, L, L]: query (rows) >= key (columns)
    in_prefix = pos[None, None, :] < prefix[:, None, None]  # [B, 1, L]
    allowed = causal | in_prefix  # [B, L, L]
    mask = torch.zeros(allowed.shape, dtype=torch.float32, device=prefix.device)
    mask.masked_fill_(~allowed, float("-inf"))
    return mask.repeat_interleave(heads, dim=0)  # nn.MultiheadAttention wants [B * heads, L, L], batch-major


def sample_prefix(batch: int, num_patches: int, generator: torch.Generator) -> torch.Tensor:
    """Prefix lengths ``[B]`` drawn uniformly from 1..K-1 (AIM §3): at least one patch to predict, one to read."""
    return torch.randint(1, num_patches, (batch,), generator=generator)


def aim_loss(pred: torch.Tensor, target: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    """MSE of next-patch predictions after the prefix: ``pred, target [B, K, D]``, ``prefix [B]`` -> scalar.

    ``pred[:, k]`` is the prediction for ``target[:, k + 1]``. Only targets ``k + 1 >= S`` count: an earlier one sits
    in the bidirectional prefix, where position k can see it.
    """
    k = pred.shape[1]
    err = (pred[:, :-1] - target[:, 1:]).pow(2).mean(dim=-1)  # [B, K-1]: position k vs patch k+1
    scored = torch.arange(1, k, device=pred.device)[None, :] >= prefix[:, None]  # patch k+1 outside the prefix
    return (err * scored).sum() / scored.sum().clamp(min=1)


class ImageSource:
    """Random pixel batches ``[B, 3, r, r]`` from one split of the world (AIM needs no captions)."""

    def __init__(self, world, split: str, resolution: int):
        self.images = world.images(split)
        self.resolution = resolution

    def batch(self, rng: np.random.Generator, size: int) -> torch.Tensor:
        from harness.models.encoders.base import to_pixels  # not at the top: the encoders package imports this module

        idx = np.sort(rng.choice(len(self.images), size=min(size, len(self.images)), replace=False))
        return to_pixels(torch.from_numpy(np.ascontiguousarray(self.images[idx])), self.resolution)


@torch.no_grad()
def next_patch_probe(model, pixels: torch.Tensor, norm_eps: float) -> dict[str, float]:
    """Held-out next-patch MSE of the model under a pure causal mask (S = 1: every patch from its predecessors only),
    against two predictors that need no learning: copy the previous (raster) patch, and the mean (predict 0)."""
    was_training = model.training
    model.eval()
    target = normalized_patches(patchify(pixels, model.patch_size), norm_eps)
    prefix = torch.ones(pixels.shape[0], dtype=torch.long)
    pred = model(pixels, prefix)
    model.train(was_training)
    return {
        "next_patch_mse_val": float((pred[:, :-1] - target[:, 1:]).pow(2).mean()),
        "copy_previous_mse_val": float((target[:, :-1] - target[:, 1:]).pow(2).mean()),
        "mean_prediction_mse_val": float(target[:, 1:].pow(2).mean()),
    }


def pretrain_aim(model, train: ImageSource, val: torch.Tensor, steps: int, batch: int, lr: float, norm_eps: float,
                 seed: int, tag: str) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    # AIM's optimiser (AdamW, beta2 0.95, weight decay 0.05) with a linear warm-up and cosine decay.
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, pretrain_warmup_cosine(steps))
    before = next_patch_probe(model, val, norm_eps)
    losses, t0 = [], time.time()
    model.train()
    for step in progress(range(steps), f"{tag} pre-training", "step"):
        pixels = train.batch(rng, batch)
        target = normalized_patches(patchify(pixels, model.patch_size), norm_eps)
        prefix = sample_prefix(pixels.shape[0], target.shape[1], gen)
        loss = aim_loss(model(pixels, prefix), target, prefix)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 200 == 0 or step == steps - 1:
            note(f"[{tag}] step {step:4d}/{steps} aim loss {loss:.4f} ({time.time() - t0:.0f}s)")
    after = next_patch_probe(model, val, norm_eps)
    print(f"[{tag}] held-out next-patch MSE {before['next_patch_mse_val']:.4f} -> {after['next_patch_mse_val']:.4f} "
          f"(copy previous {after['copy_previous_mse_val']:.4f}, mean {after['mean_prediction_mse_val']:.4f})",
          flush=True)
    if steps >= 100 and after["next_patch_mse_val"] >= after["mean_prediction_mse_val"]:
        # A trunk that only learned to predict the mean patch carries no image information: never cache it.
        raise RuntimeError(f"{tag}: AIM pre-training did not learn (held-out next-patch MSE "
                           f"{after['next_patch_mse_val']:.4f} >= {after['mean_prediction_mse_val']:.4f} of predicting "
                           f"the mean patch). Lower pretrain_lr (now {lr}) or raise pretrain_steps (now {steps}).")
    every = max(1, steps // 20)  # a 20-point curve whatever the budget; first/final loss = first/last 5% of steps
    curve = [float(np.mean(losses[i : i + every])) for i in range(0, len(losses), every)]
    return {
        "objective": "aim", "loss_curve": curve, "loss_curve_every": every, "first_loss": curve[0],
        "final_loss": curve[-1],
        **after, "next_patch_mse_val_before": before["next_patch_mse_val"],
        "params_image_tower": sum(p.numel() for p in model.visual.parameters()),
        "params_pixel_head": sum(p.numel() for p in model.head.parameters()),
        "images_seen": steps * batch, "train_wall_s": round(time.time() - t0, 1),
    }


def pretrained_aim(cfg, world, cache_root, make_model: Callable[[], torch.nn.Module], n_val: int = 256):
    """``(model, meta)``: an AIM model pre-trained on ``world`` once and cached content-addressed.

    ``make_model()`` builds the untrained trunk + pixel head (called for training and again for loading). The key
    covers the config minus the feature-layer choice (which does not change weights) and the world; no tokenizer,
    as AIM never reads text.
    """
    pre = {k: v for k, v in asdict(cfg).items() if k != "feature_layer"}
    path = Path(cache_root) / "encoders" / f"{cfg.name}-{content_hash({'cfg': pre, 'world': world.hash, 'v': 2})}"

    def pretrain(model) -> dict:
        train = ImageSource(world, "train", cfg.pretrain_resolution)
        val = ImageSource(world, "val", cfg.pretrain_resolution).batch(np.random.default_rng(1), n_val)
        return pretrain_aim(model, train, val, cfg.pretrain_steps, cfg.pretrain_batch, cfg.pretrain_lr,
                            cfg.pretrain_norm_eps, cfg.pretrain_seed, tag=cfg.name)

    return pretrained_once(path, "aim.pt", cfg, make_model, pretrain)
