"""``caption``: describe a held-out world image (MM1 §3.1's captioning at toy scale), scored by CIDEr-D against the
image's reference captions.

Query: the image, then ``eval.caption_prompt`` (the continuation is the caption); one query per image. A
demonstration is a train image with its first reference caption, in the query's format by default
(``eval.caption_demo``, :func:`harness.eval.tasks.caption_demo`). The answer is cut at a new question or line, and
at most ``eval.max_new_tokens_caption`` tokens long.
"""

from __future__ import annotations

import numpy as np

from harness.eval.tasks import WorldTask, caption_budget, caption_demo, first_line, register


@register
class Caption(WorldTask):
    name = "caption"
    metric = "cider"
    stream = 0  # the demonstrations' seed stream since before the registry: keep it, and the draws stay the same
    column = "CIDEr"
    headline = "CIDEr"

    def queries(self, samples: list[dict], cfg) -> list[dict]:
        return [{"image": i, "prompt": cfg.caption_prompt, "refs": s["captions"], "type": self.name}
                for i, s in enumerate(samples)]

    def demo(self, sample: dict, rng: np.random.Generator, cfg) -> str:
        return caption_demo(sample["captions"][0], cfg)

    def postprocess(self, raw: str, query=None) -> str:
        return first_line(raw)

    def max_new_tokens(self, cfg) -> int:
        return caption_budget(cfg)

    def scores(self, queries: list[dict]) -> list[float]:
        from harness.eval.metrics import cider_scores

        return cider_scores([q["prediction"] for q in queries], [q["refs"] for q in queries])
