"""``vqa``: answer the world's questions about a held-out image, scored by VQA accuracy (official normalisation)
against the answer repeated 10 times (the world has one unambiguous answer per question, so this equals normalised
exact match), over all questions and per question type, with the majority-answer baseline per type beside it.

Query: the image, then ``eval.vqa_prompt`` on the question; one query per question. A demonstration is a train
image with one of its questions (drawn with the Evaluator's generator) and that question's answer. The answer is cut
at a new question or line, lower-cased without a final full stop, and at most ``eval.max_new_tokens_vqa`` tokens
long. The record's ``subset`` is ``all`` or a question type (harness.world.language.QUESTION_TYPES).
"""

from __future__ import annotations

import numpy as np

from harness.eval.tasks import ALL, WorldTask, answer_budget, question_prompt, register, short_answer


@register
class VQA(WorldTask):
    name = "vqa"
    metric = "vqa_accuracy"
    stream = 1  # the demonstrations' seed stream since before the registry: keep it, and the draws stay the same
    column = "VQA"
    headline = "VQA acc"

    def queries(self, samples: list[dict], cfg) -> list[dict]:
        return [{"image": i, "prompt": question_prompt(cfg, qa["question"]), "refs": [qa["answer"]] * 10,
                 "type": qa["type"], "question": qa["question"]}
                for i, s in enumerate(samples) for qa in s["qa"]]

    def demo(self, sample: dict, rng: np.random.Generator, cfg) -> str:
        qa = sample["qa"][int(rng.integers(len(sample["qa"])))]
        return question_prompt(cfg, qa["question"]) + " " + qa["answer"]

    def postprocess(self, raw: str, query=None) -> str:
        return short_answer(raw)

    def max_new_tokens(self, cfg) -> int:
        return answer_budget(cfg)

    def scores(self, queries: list[dict]) -> list[float]:
        from harness.eval.metrics import vqa_scores

        return vqa_scores([q["prediction"] for q in queries], [q["refs"] for q in queries])

    def entries(self, per_trial: list[list[dict]], base: dict, world) -> list[dict]:
        """One entry over all questions, then one per question type, each with the majority-answer baseline (the
        train split's most frequent answer of the type) scored on the same questions."""
        from harness.eval.metrics import mean_result, vqa_scores

        majority = world.majority_answers()
        trial_scores = [np.array(self.scores(qs)) for qs in per_trial]
        per_sample = np.mean(trial_scores, axis=0)
        qs0 = per_trial[0]
        types = np.array([q["type"] for q in qs0])
        base_scores = np.array(vqa_scores([majority.get(q["type"], "") for q in qs0], [q["refs"] for q in qs0]))
        out = []
        for subset in [ALL, *sorted(set(types.tolist()))]:
            sel = np.ones(len(types), bool) if subset == ALL else types == subset
            r = mean_result(per_sample[sel].tolist())
            b = mean_result(base_scores[sel].tolist())
            out.append(base | {"metric": self.metric, "subset": subset, **r.to_dict(),
                               "trial_std": float(np.std([s[sel].mean() for s in trial_scores])),
                               "majority_baseline": b.value})
        return out
