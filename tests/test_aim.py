"""AIM pre-training (``harness.pretrain.aim``, ``aim_tiny``): the target, the prefix-causal mask, and that it learns.

The shape/resolution/cache contract of ``aim_tiny`` is tested with every other encoder in ``test_encoders.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.models.encoders.aim_tiny import AimModel, AimTinyCfg
from harness.models.encoders.clip_tiny import ClipTinyCfg, make_clip
from harness.pretrain.aim import aim_loss, normalized_patches, patchify, prefix_causal_mask, pretrain_aim

# 32 px / patch 8: K = 16 patches on a 4x4 grid; 2 heads.
SMALL = AimTinyCfg(width=32, layers=2, head_width=16, head_hidden=32, pretrain_resolution=32)


def test_normalized_patch_target_on_a_hand_made_image() -> None:
    # One channel, 2 x 4 px, patch 2: a ramp patch [[0, 1], [2, 3]] and a flat patch of 5s, in raster order.
    img = torch.tensor([[[[0.0, 1.0, 5.0, 5.0], [2.0, 3.0, 5.0, 5.0]]]])
    patches = patchify(img, 2)
    assert patches.tolist() == [[[0.0, 1.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0]]]
    # ramp: mean 1.5, population variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25
    expected = [(v - 1.5) / math.sqrt(1.25 + 0.01) for v in (0, 1, 2, 3)]
    target = normalized_patches(patches, eps=0.01)
    torch.testing.assert_close(target[0, 0], torch.tensor(expected))
    assert target[0, 1].tolist() == [0.0, 0.0, 0.0, 0.0]  # a flat patch is all zeros, not NaN
    # with eps 0 each content patch has exactly zero mean and unit (population) variance
    unit = normalized_patches(patches, eps=0.0)[0, 0]
    assert float(unit.mean()) == pytest.approx(0.0, abs=1e-7) and float(unit.var(unbiased=False)) == pytest.approx(1.0)


def test_patch_order_matches_the_vit_token_order() -> None:
    """Target patch k must be the square the trunk embeds as token k, or the model is asked to predict the wrong
    patch. A conv stem that copies one pixel of its patch exposes its token order."""
    model = AimModel(SMALL)
    with torch.no_grad():
        model.visual.conv1.weight.zero_()
        model.visual.conv1.weight[0, 1, 2, 3] = 1.0  # token channel 0 = channel 1, row 2, column 3 of its patch
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    tokens = model.visual.conv1(pixels).flatten(2).transpose(1, 2)  # what tiny_vit.vit_hidden embeds
    p = SMALL.patch_size
    torch.testing.assert_close(tokens[..., 0], patchify(pixels, p)[..., 1 * p * p + 2 * p + 3])


def test_prefix_causal_mask_layout() -> None:
    mask = prefix_causal_mask(4, torch.tensor([2]), heads=1)[0]  # positions: CLS, patches 0..3; prefix = patches 0, 1
    allowed = (mask == 0).int().tolist()
    assert allowed == [
        [1, 1, 1, 0, 0],  # CLS: itself and the prefix
        [1, 1, 1, 0, 0],  # patch 0 (prefix): the whole prefix, bidirectionally
        [1, 1, 1, 0, 0],  # patch 1 (prefix)
        [1, 1, 1, 1, 0],  # patch 2: causal from here on
        [1, 1, 1, 1, 1],  # patch 3
    ]
    assert prefix_causal_mask(4, torch.tensor([1, 3]), heads=2).shape == (4, 5, 5)  # [B * heads, L, L]


@pytest.mark.parametrize("train_mode", [True, False])
def test_changing_a_later_patch_leaves_earlier_predictions_unchanged(train_mode: bool) -> None:
    torch.manual_seed(0)
    model = AimModel(SMALL).train(train_mode)
    prefix = torch.tensor([1, 6])  # pure causal, and a 6-patch bidirectional prefix
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    changed = pixels.clone()
    changed[:, :, 16:24, 8:16] += 3.0  # patch 9 (grid row 2, column 1)
    with torch.no_grad():
        a, b = model(pixels, prefix), model(changed, prefix)
    moved = (a - b).abs().amax(dim=-1)  # [B, K]
    assert moved[:, :9].max() < 1e-5, moved  # positions 0..8 only read patches 0..8 (prefix 6 < 9 too)
    assert (moved[:, 9:] > 1e-3).all(), moved  # patch 9 and everything after it see the change
    # without the mask (the bidirectional feature encoder) an earlier position does see the later patch
    full = torch.full((2,), 16)  # a prefix of all K patches: no causal part left
    with torch.no_grad():
        assert (model(pixels, full) - model(changed, full))[:, :9].abs().max() > 1e-3


def test_loss_scores_only_targets_after_the_prefix() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 6, 4, generator=g)
    pred = torch.randn(2, 6, 4, generator=g)
    prefix = torch.tensor([2, 4])
    pred[0, 1:5] = target[0, 2:6]  # perfect on image 0's targets 2..5 (outside its prefix of 2)
    pred[1, 3:5] = target[1, 4:6]  # perfect on image 1's targets 4..5
    assert float(aim_loss(pred, target, prefix)) == 0.0  # wrong in-prefix predictions and the last output are free
    pred[1, 3, 0] += 2.0  # one error of 2 on one of the 6 scored targets, over 4 pixels
    assert float(aim_loss(pred, target, prefix)) == pytest.approx(4.0 / 4 / 6)


def test_aim_and_clip_share_one_trunk() -> None:
    """The two Table 1 arms must differ in their loss only: same tower parameters (CLIP's adds its projection)."""
    cfg = ClipTinyCfg()
    clip = {k: v.shape for k, v in make_clip(cfg, 64, 0, 1).visual.state_dict().items() if k != "proj"}
    aim = {k: v.shape for k, v in AimModel(AimTinyCfg()).visual.state_dict().items()}
    assert aim == clip


def test_clip_tiny_cache_identity_is_unchanged_by_the_shared_trunk() -> None:
    """Moving clip_tiny's trunk fields into TinyViTCfg must not re-key (and so re-train) cached clip_tiny encoders:
    pinned values computed before the refactor. A deliberate change to clip_tiny's config updates them."""
    from dataclasses import asdict

    from harness.artifacts import content_hash

    pre = {k: v for k, v in asdict(ClipTinyCfg()).items() if k != "feature_layer"}
    assert content_hash(pre) == "f98d9abfc821"
    names = sorted((k, list(v.shape)) for k, v in make_clip(ClipTinyCfg(), 300, 0, 1).state_dict().items())
    assert content_hash(names) == "aa6d04054722"


def test_pretraining_learns_more_than_the_mean_patch_on_the_micro_world(shared_cache) -> None:
    """The first ~50 steps only bring the head's random output down to the mean patch (all zeros); by 100 steps the
    held-out next-patch error must be below that of predicting the mean and of copying the previous patch."""
    from harness.pretrain.aim import ImageSource
    from harness.world import World
    from tests.test_data_and_vlm import MICRO_WORLD

    world = World.build_or_load(MICRO_WORLD, shared_cache)
    cfg = AimTinyCfg(width=32, layers=2, head_width=16, head_hidden=32)  # 64 px: objects span several patches
    torch.manual_seed(0)
    model = AimModel(cfg)
    train = ImageSource(world, "train", cfg.pretrain_resolution)
    val = ImageSource(world, "val", cfg.pretrain_resolution).batch(np.random.default_rng(1), 50)
    with torch.enable_grad():
        meta = pretrain_aim(model, train, val, steps=100, batch=16, lr=3e-3, norm_eps=cfg.pretrain_norm_eps, seed=0,
                            tag="test")
    assert meta["final_loss"] < 0.85 * meta["first_loss"], meta["loss_curve"]
    held_out = meta["next_patch_mse_val"]
    assert held_out < 0.85 * meta["next_patch_mse_val_before"], meta
    assert held_out < 0.97 * meta["mean_prediction_mse_val"] and held_out < meta["copy_previous_mse_val"], meta
    assert meta["images_seen"] == 100 * 16
