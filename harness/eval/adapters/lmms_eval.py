"""lmms-eval adapter: a finished harness run as an lmms-eval model, so the kit's tasks run on our models.

lmms-eval's model API (lmms_eval/api/model.py, class ``lmms``): the evaluator hands a model lists of ``Instance``
requests and stores each task's dataset in ``model.task_dict[task][split]``. ``generate_until`` requests carry
``args = (context, gen_kwargs, doc_to_visual, doc_id, task, split)``: the visuals are ``doc_to_visual(doc)`` (a list
of PIL images for image tasks), ``gen_kwargs`` holds ``until`` and ``max_new_tokens``. ``loglikelihood`` requests
(multiple-choice tasks) carry ``(context, continuation, doc_to_visual, doc_id, task, split)``, the continuation a
string or ``doc_to_target``, and want ``(sum of log-probabilities, is_greedy)``. ``generate_until_multi_round`` is the
chat-style multi-turn variant. Models are found by name through ``lmms_eval.models`` (a built-in table, the
``lmms_eval.models`` entry-point group of installed packages, or ``@register_model`` for classes defined in-process).

Why these choices: our models are base models, so a request's images open the prompt and the task's context
continues after them (harness.eval.adapters.core lays it out as training did); an ``<image>`` placeholder in the
context places the images instead, when there is one per image. Decoding is the harness's greedy, batched,
batch-size-invariant decoder; sampling settings are ignored (a base-model benchmark is greedy). Multi-round chat is
refused: there is no chat template to continue.

The kit is imported only inside :func:`model_class` (``import harness`` never needs it; its dependencies conflict
with hydra's omegaconf, docs/dependencies.md). Installed with the ``lmms-eval`` extra, the package's entry point
makes ``python -m lmms_eval --model mm_ablate --model_args run_dir=RUN`` work; or pass an instance to
``lmms_eval.evaluator.simple_evaluate(model=model_class()(run_dir=RUN), ...)``.
"""

from __future__ import annotations

import warnings
from typing import Any

from harness.eval.adapters.core import IMAGE, TEXT, RunModel, Segment, cut_at_stops

NAME = "mm_ablate"
CLASS_NAME = "MMAblateLMMS"
PLACEHOLDER = "<image>"


def _flatten(visuals: Any) -> list:
    if visuals is None:
        return []
    if isinstance(visuals, (list, tuple)):
        return [v for x in visuals for v in _flatten(x)]
    return [visuals]


def request_segments(context: str, visuals: Any) -> list[Segment]:
    """A request's context and ``doc_to_visual(doc)`` -> interleaved segments: images first, then the context, or
    the images at the context's ``<image>`` placeholders when there is one per image."""
    images = _flatten(visuals)
    for v in images:
        if isinstance(v, (str, dict)):  # lmms-eval passes videos as paths and audio as dicts
            raise TypeError(f"lmms-eval visual {type(v).__name__} {str(v)[:80]!r}: mm-ablate models read images only")
    parts = context.split(PLACEHOLDER)
    if images and len(parts) == len(images) + 1:
        out = [Segment(TEXT, parts[0])] if parts[0].strip() else []
        for img, text in zip(images, parts[1:]):
            out += [Segment(IMAGE, img)] + ([Segment(TEXT, text)] if text.strip() else [])
        return out
    return [Segment(IMAGE, v) for v in images] + [Segment(TEXT, context)]


def generation_budget(gen_kwargs: dict | None, default_max_new: int) -> tuple[int, list[str]]:
    """(max_new_tokens, until) from a request's ``gen_kwargs``; greedy regardless of any sampling setting."""
    kw = dict(gen_kwargs or {})
    until = kw.get("until") or []
    until = [until] if isinstance(until, str) else list(until)
    if kw.get("do_sample") or float(kw.get("temperature") or 0) > 0:
        warnings.warn("mm_ablate decodes greedily; do_sample / temperature are ignored", stacklevel=2)
    return int(kw.get("max_new_tokens") or default_max_new), until


def model_class():
    """The ``lmms`` subclass (imports lmms-eval), registered as ``mm_ablate``."""
    from lmms_eval.api.model import lmms
    from lmms_eval.api.registry import register_model

    @register_model(NAME)
    class MMAblateLMMS(lmms):
        is_simple = True  # plain (context, images) requests, no chat messages

        def __init__(self, run_dir: str, cache_dir: str | None = None, device: str = "cpu", batch_size: int | str = 16,
                     **kwargs):
            super().__init__()
            if kwargs:
                warnings.warn(f"mm_ablate ignores model_args {sorted(kwargs)}", stacklevel=2)
            self.model = RunModel(run_dir, cache_dir, device, batch_size=int(batch_size))
            self.batch_size = int(batch_size)

        def _doc(self, task: str, split: str, doc_id: int):
            return self.task_dict[task][split][doc_id]

        def _segments(self, context: str, doc_to_visual, task: str, split: str, doc_id: int) -> list[Segment]:
            visuals = doc_to_visual(self._doc(task, split, doc_id)) if doc_to_visual is not None else []
            return request_segments(context, visuals)

        def generate_until(self, requests) -> list[str]:
            default = self.model.max_new_tokens("vqa")
            jobs = []
            for req in requests:
                context, gen_kwargs, doc_to_visual, doc_id, task, split = req.args
                jobs.append((self._segments(context, doc_to_visual, task, split, doc_id),
                             *generation_budget(gen_kwargs, default)))
            out: list[str] = [""] * len(jobs)
            by_budget: dict[tuple, list[int]] = {}  # one decoding call per (max_new_tokens, until)
            for i, (_, max_new, until) in enumerate(jobs):
                by_budget.setdefault((max_new, tuple(until)), []).append(i)
            for (max_new, until), rows in by_budget.items():
                texts = self.model.generate([jobs[i][0] for i in rows], max_new)
                for i, text in zip(rows, texts):
                    out[i] = cut_at_stops(text, until).strip()
            return out

        def loglikelihood(self, requests) -> list[tuple[float, bool]]:
            out = []
            for req in requests:
                context, target, doc_to_visual, doc_id, task, split = req.args
                cont = target if isinstance(target, str) else target(self._doc(task, split, doc_id))
                out.append(self.model.loglikelihood(self._segments(context, doc_to_visual, task, split, doc_id), cont))
            return out

        def generate_until_multi_round(self, requests) -> list[str]:
            raise NotImplementedError("mm_ablate models are base models without a chat template: multi-round "
                                      "tasks do not apply")

    return MMAblateLMMS


def manifest():
    """Entry point of the ``lmms_eval.models`` group (pyproject.toml): ``--model mm_ablate`` resolves to this
    module's class, created on first access (module ``__getattr__``), so the entry point imports nothing heavy."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=NAME, simple_class_path=f"{__name__}.{CLASS_NAME}")


_CLASS = None


def __getattr__(name: str):
    global _CLASS
    if name != CLASS_NAME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _CLASS is None:
        _CLASS = model_class()
    return _CLASS
