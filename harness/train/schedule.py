"""Learning-rate schedules: linear warm-up and cosine decay, as multipliers of the base rate for ``LambdaLR``.

Two shapes, each written exactly as its callers had it (a different float expression would change cached backbones
and recorded losses):

* :func:`warmup_cosine`, the VLM training stages' (``harness.train.loop``; MM1 §3.4's shape): ``warmup`` steps of
  linear warm-up, then a cosine decay over the remaining steps down to ``floor`` of the base rate.
* :func:`pretrain_warmup_cosine`, the tiny backbones' pre-training (the LLM, CLIP and AIM towers): a linear warm-up
  over the first 5% of the steps multiplied into one cosine decay to 0 over all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable


def warmup_cosine(warmup: int, total: int, floor: float = 0.1) -> Callable[[int], float]:
    """Step -> rate multiplier: ``(step + 1) / warmup`` during the warm-up, then cosine from 1 to ``floor`` over
    ``total - warmup`` steps (``floor`` after them)."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        t = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


def pretrain_warmup_cosine(steps: int) -> Callable[[int], float]:
    """Step -> rate multiplier: ``min(1, (step + 1) / warm)`` times a cosine from 1 to 0 over ``steps``, with
    ``warm`` = 5% of ``steps`` (at least 1)."""
    warm = max(1, steps // 20)
    return lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
