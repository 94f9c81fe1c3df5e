"""Seeded sampling from named sources at configured weights, with the realised ratios counted.

Weights are given by name (``{caption: 0.45, interleaved: 0.45, text: 0.10}``), never by position, so reordering a
config cannot silently change the mixture. The one documented rule for weights that do not sum to 1: they are
normalised by their sum (``{caption: 9, interleaved: 9, text: 2}`` is the same mixture). Zero weights switch a
source off; negative weights, an empty mixture and unknown source names are errors.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from harness.data.sources import SOURCES, Example


def normalise_weights(mixture: dict[str, float]) -> dict[str, float]:
    for name, w in mixture.items():
        SOURCES.entry(name)  # unknown names fail with the list of valid sources
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"mixture weight for '{name}' must be a finite number >= 0, got {w}")
    total = float(sum(mixture.values()))
    if total <= 0:
        raise ValueError(f"mixture {dict(mixture)} has no positive weight; valid sources: {', '.join(SOURCES.names())}")
    return {k: float(v) / total for k, v in mixture.items() if v > 0}


class Mixture:
    def __init__(self, data, mixture: dict[str, float], split: str = "train"):
        """``data``: where the sources read their records, a ``Corpus`` or a ``World`` (``harness.data.sources``)."""
        self.weights = normalise_weights(dict(mixture))
        self.names = sorted(self.weights)
        self.sources = {n: SOURCES.get(n)(data, split) for n in self.names}
        for n, src in self.sources.items():
            if len(src) == 0:
                raise ValueError(f"data source '{n}' has no samples in split '{split}'")
        self.p = np.array([self.weights[n] for n in self.names])
        self.counts: Counter[str] = Counter()

    def sample(self, rng: np.random.Generator) -> Example:
        name = self.names[int(rng.choice(len(self.names), p=self.p))]
        self.counts[name] += 1
        return self.sources[name].sample(rng)

    def realised(self) -> dict[str, float]:
        total = sum(self.counts.values()) or 1
        return {n: self.counts[n] / total for n in self.names}
