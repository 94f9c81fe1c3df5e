"""Encoder pre-training pieces: NegCLIP hard negatives and their loss."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from harness.pretrain.clip import negclip_loss
from harness.world.language import SHAPE_WORDS, hard_negative

DENSE = ("there are 2 objects on a light grey background. a large red circle at the top left. "
         "a small blue plus sign in the center. the number 7 is written in the bottom right corner.")


def _diff(a: str, b: str) -> list[tuple[str, str]]:
    """Differing words, as (old, new) pairs, of two captions aligned on their common prefix and suffix."""
    i = 0
    while a[i] == b[i]:
        i += 1
    j = 0
    while a[-1 - j] == b[-1 - j]:
        j += 1
    return [(a[i : len(a) - j], b[i : len(b) - j])]


def test_hard_negative_changes_exactly_one_attribute_to_another_value() -> None:
    rng = np.random.default_rng(0)
    seen_kinds = set()
    for _ in range(200):
        neg = hard_negative(DENSE, rng)
        assert neg is not None and neg != DENSE
        # object count sentence and everything else untouched
        assert neg.startswith("there are 2 objects") and neg.count(".") == DENSE.count(".")
        digits_old = re.findall(r"number (\d)", DENSE)
        digits_new = re.findall(r"number (\d)", neg)
        if digits_old != digits_new:
            seen_kinds.add("glyph")
            assert neg.replace(f"number {digits_new[0]}", "number 7") == DENSE
            continue
        (old, new), = _diff(DENSE, neg)
        canon = {w: s for s, ws in SHAPE_WORDS.items() for w in ws}
        if canon.get(old.split()[-1]) and canon.get(new.split()[-1]):
            seen_kinds.add("shape")
            assert canon[old.split()[-1]] != canon[new.split()[-1]]
        else:
            seen_kinds.add("colour or position")
    assert seen_kinds == {"glyph", "shape", "colour or position"}


def test_hard_negative_of_text_without_attributes_is_none() -> None:
    assert hard_negative("there are 4 objects.", np.random.default_rng(0)) is None  # a count digit is not a glyph


def test_negclip_loss_without_negatives_is_clip_loss() -> None:
    from open_clip.loss import ClipLoss

    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=-1)
    scale = torch.tensor(10.0)
    assert negclip_loss(img, txt, scale) == pytest.approx(float(ClipLoss()(img, txt, scale)), rel=1e-6)


def test_negclip_hard_negative_raises_the_loss_only_when_it_looks_like_the_image() -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(4, 16, generator=g), dim=-1)
    txt = img.clone()  # perfect positives
    far = -img[:1]
    near = torch.nn.functional.normalize(img[:1] + 0.05 * torch.randn(1, 16, generator=g), dim=-1)
    scale = torch.tensor(20.0)
    base = negclip_loss(img, txt, scale)
    assert negclip_loss(img, torch.cat([txt, far]), scale) == pytest.approx(float(base), abs=1e-6)
    # only image 0's image->text term changes: log(1 + exp(scale * (sim(near) - 1))), averaged over 4 images x 2 sides
    expected = float(torch.log1p(torch.exp(scale * (img[0] @ near[0] - 1)))) / 8
    assert float(negclip_loss(img, torch.cat([txt, near]), scale) - base) == pytest.approx(expected, rel=1e-3)
    assert expected > 0.01
