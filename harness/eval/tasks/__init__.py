"""The evaluation task registry: the world's own image tasks and the TSV benchmarks, one entry each.

``TASKS`` maps a task name to a :class:`Task`, an object that declares everything the Evaluator
(:mod:`harness.eval.runner`) needs to score it, in one place:

* **queries**: what is asked, one dict per query (``image``, ``prompt``, ``refs``, ``type``; see :class:`WorldTask`);
* **demos**: the text of a few-shot demonstration (the Evaluator draws which examples, with the task's ``stream``);
* **post-processing**: generated text -> the prediction that is scored (:meth:`Task.postprocess`);
* **generation budget**: :meth:`Task.max_new_tokens`, read from the eval config;
* **metric**: the record's ``metric`` name and the per-query scores (:meth:`Task.scores`).

Two kinds of entry share that interface. A :class:`WorldTask` asks about the world's held-out images and draws its
demonstrations from the world's train split; its evaluation units are ``<name>@<k>`` and it runs when listed in
``eval.tasks``. A TSV benchmark (:class:`~harness.eval.tasks.tsv.BenchmarkSpec`) reads a VLMEvalKit-style file; how
it asks and answers follows its ``kind`` (caption, vqa, mcq, the same prompts, post-processing and budgets as the
world's ``caption`` and ``vqa``); its units are ``bench:<name>@<k>`` and it runs when listed in ``eval.benchmarks``.

Adding a task: a module in this package that registers it (every module here is imported with the package, so no
import line to add), then list its name in an eval config (``sweeps/eval/<option>.yaml``). docs/extending.md has the
steps. A task name is also the record's ``task`` and the predictions files' stem: letters, digits, ``_`` and ``-``
only, and not one of :data:`RESERVED`, the names the record gives its averages.

The record's ``subset`` means one thing: the slice of a task's queries an entry scores, :data:`ALL` for every query
(the task's score), else the slice's name. A world task's queries carry a ``type``, and :meth:`WorldTask.entries`
may score each type on its own (``vqa``: its question types). TextCore entries follow the same rule: the lm-eval task
is the entry's ``task`` (``suite: "textcore"``), its subset ``all`` (harness.eval.aggregates.text_task_of).
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import re
from abc import ABC, abstractmethod
from typing import Any, TypeVar

import numpy as np

from harness.registry import Registry, RegistryView

ALL = "all"  # the subset of an entry that scores every query of its task
RESERVED = ("textcore", "mm1_average")  # record task names of the TextCore and MM1 averages (harness.eval.aggregates)
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class Task(ABC):
    """What every evaluation task declares (subclassed by :class:`WorldTask` and the TSV ``BenchmarkSpec``)."""

    name: str  # the registry name: the record's ``task``, the units' and predictions files' name
    metric: str  # the record's metric of the task's score (cider, vqa_accuracy, exact_match, accuracy, ...)

    @property
    def stream(self) -> int:
        """The seed stream of this task's demonstration draws (``[seed, k, trial, stream]``)."""
        return 2 + sum(map(ord, self.name))

    @abstractmethod
    def max_new_tokens(self, cfg) -> int:
        """The generation budget of one answer under eval config ``cfg``."""

    def postprocess(self, raw: str, query: Any = None) -> str:
        """The generated text ``raw`` of ``query`` -> the prediction that is scored."""
        return first_line(raw)

    @abstractmethod
    def scores(self, queries: list[dict]) -> list[float]:
        """One score per query (each with ``prediction`` and ``refs``), in the task's metric."""


class WorldTask(Task):
    """A task on the world's held-out images (``eval.split``), demonstrations from its train split.

    A subclass sets ``name`` and ``metric`` and defines :meth:`queries`, :meth:`demo`, :meth:`max_new_tokens` and
    :meth:`scores`; :meth:`postprocess` defaults to the first line of the answer, :meth:`entries` to one entry over
    every query. ``column`` names the task's column in the end-of-sweep summary (default: its name); ``headline`` its
    label in the study tables (``None``: not shown there).
    """

    column: str | None = None
    headline: str | None = None

    @abstractmethod
    def queries(self, samples: list[dict], cfg) -> list[dict]:
        """The queries on the eval split's ``samples`` (the world's sample dicts, in order). Each is a dict with
        ``image`` (the sample's position in ``samples``), ``prompt`` (the text after the query image), ``refs`` (the
        references its score reads) and ``type`` (the slice it belongs to; the task's name when it has none). Other
        keys are kept for :meth:`postprocess` and :meth:`scores`."""

    @abstractmethod
    def demo(self, sample: dict, rng: np.random.Generator, cfg) -> str:
        """The text after the image of a demonstration drawn from the train split (``sample``); ``rng`` is the
        Evaluator's draw generator, for a task that picks among a sample's references."""

    def entries(self, per_trial: list[list[dict]], base: dict, world) -> list[dict]:
        """The record entries of one (task, k): ``per_trial`` holds each trial's answered queries (with
        ``prediction``), ``base`` the fields every entry carries (task, shots, split, trials). Default: one entry over
        all queries, each query's score averaged over the trials."""
        from harness.eval.metrics import mean_result

        trial_scores = [self.scores(qs) for qs in per_trial]
        r = mean_result(np.mean(trial_scores, axis=0).tolist())
        return [base | {"metric": self.metric, "subset": ALL, **r.to_dict(),
                        "trial_std": float(np.std([np.mean(s) for s in trial_scores]))}]

    def nan_entries(self, k: int, split: str | None = None) -> list[dict]:
        """The headline entries of a unit (or point) that failed, NaN: they show as a gap, never as a zero."""
        nan = float("nan")
        where = {} if split is None else {"split": split}
        return [{"task": self.name, "shots": k, "metric": self.metric, **where, "subset": ALL, "value": nan,
                 "stderr": nan, "n": 0}]


TASKS: Registry[Task] = Registry("eval task")
WORLD_TASKS: RegistryView[Task] = RegistryView(TASKS, "world task", lambda t: isinstance(t, WorldTask))

T = TypeVar("T")


def register(task: T) -> T:
    """Register a :class:`Task` instance, or a ``Task`` subclass (instantiated without arguments: usable as a class
    decorator), under its ``name``. Refuses a name the record reserves or one that could not be a unit's."""
    obj = task() if isinstance(task, type) else task
    name = obj.name
    if not isinstance(name, str) or not _NAME.match(name) or name in RESERVED:
        raise ValueError(f"eval task name {name!r}: use letters, digits, _ and - only, and none of {', '.join(RESERVED)}")
    TASKS.register(name)(obj)
    return task


def world_tasks() -> list[str]:
    """Names of the registered world tasks (the valid ``eval.tasks`` entries), sorted."""
    return WORLD_TASKS.names()


def is_world_task(name: object) -> bool:
    return name in WORLD_TASKS


def world_task(name: str) -> WorldTask:
    """The world task ``name``; an unknown name raises ``ValueError`` with the valid ones (a TSV benchmark's name
    says to list it under ``eval.benchmarks``)."""
    if name not in WORLD_TASKS:
        raise ValueError(unknown_world_task(name))
    return WORLD_TASKS.get(name)  # type: ignore[return-value]


def unknown_world_task(name: str) -> str:
    """``unknown task 'x'; valid: ...``, with the closest names, or where a TSV benchmark's name belongs."""
    msg = f"unknown task '{name}'; valid: {', '.join(world_tasks())} (eval.tasks=[] runs none of the world's tasks)"
    if name in TASKS:
        return msg + f"; '{name}' is a TSV benchmark: list it under eval.benchmarks"
    close = difflib.get_close_matches(str(name), world_tasks(), n=3, cutoff=0.5)
    return msg + (f". Did you mean: {', '.join(close)}?" if close else "")


# -- the ways of asking and answering that the world's tasks and the TSV kinds share ----------------------------------


def first_line(raw: str) -> str:
    """A caption: the generated text up to a new question or line."""
    return raw.split("Question:")[0].split("\n")[0].strip()


def short_answer(raw: str) -> str:
    """A VQA answer: :func:`first_line`, lower-cased, without a final full stop."""
    return first_line(raw).rstrip(".").strip().lower()


def question_prompt(cfg, question: str) -> str:
    """The text after a question's image: ``eval.vqa_prompt`` on the question."""
    return cfg.vqa_prompt.format(question=question)


# eval.caption_demo's value before the field existed: what records and saved answers without it were scored with.
CAPTION_DEMO_BEFORE = "bare"


def shows_caption_demos(metric: str | None, shots: int) -> bool:
    """Whether a unit's prompts show caption demonstrations (so ``eval.caption_demo`` can change its numbers): a
    captioning score (CIDEr: the world's captions, caption benchmarks) at k > 0."""
    return metric == "cider" and shots > 0


def caption_demo(caption: str, cfg) -> str:
    """The text after a caption demonstration's image under ``eval.caption_demo``. "prompted": the query's
    ``caption_prompt`` followed by the caption, so a demonstration reads as a query answered with that caption and
    the model sees in context the format it must continue. A caption that already opens with the prompt is kept as
    it is; a capitalised article is lower-cased to follow it ("A dog." -> "an image of a dog."), any other word
    keeps its case (names: "Paris at night."). "bare": the caption alone."""
    prompt = cfg.caption_prompt.strip()
    if cfg.caption_demo == "bare" or not prompt or f"{caption} ".lower().startswith(f"{prompt} ".lower()):
        return caption
    first, _, rest = caption.partition(" ")
    if first in ("A", "An", "The") and rest:
        caption = f"{first.lower()} {rest}"
    return f"{prompt} {caption}"


def caption_budget(cfg) -> int:
    return int(cfg.max_new_tokens_caption)


def answer_budget(cfg) -> int:
    return int(cfg.max_new_tokens_vqa)


def majority_answer(answers: list[str]) -> str:
    """The most frequent answer (the first of equals): a VQA demonstration's answer."""
    return max(answers, key=lambda a: (answers.count(a), -answers.index(a)))


def option_letter(prediction: str, options: dict[str, str]) -> str:
    """Map a generated answer to an option letter: the option whose text it equals (VQA-normalised), else the
    letter itself if the model wrote one, else the prediction unchanged (scored wrong)."""
    from harness.eval.metrics import normalize_vqa_answer

    norm = normalize_vqa_answer(prediction)
    for letter, text in options.items():
        if normalize_vqa_answer(text) == norm:
            return letter
    return prediction.strip().upper() if prediction.strip().upper() in options else prediction


def _import_task_modules() -> None:
    """Every module of this package registers its tasks when imported: a new task is a new module, no import line."""
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


_import_task_modules()
