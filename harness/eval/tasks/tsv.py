"""TSV benchmarks as tasks: :class:`BenchmarkSpec` and the registered benchmarks (MM1's eight and the world's own).

A benchmark is a VLMEvalKit-style TSV file (format and reader: :mod:`harness.eval.benchmarks`) and a ``kind`` that
says how each row is asked and answered, the way the world's own tasks do:

* ``caption``: the image, then ``eval.caption_prompt``; a demonstration is a row's first reference, in the query's
  format unless ``eval.caption_demo=bare`` (:func:`~harness.eval.tasks.caption_demo`); the answer is cut at a new
  question or line (as the world's ``caption``), ``eval.max_new_tokens_caption`` tokens at most;
* ``vqa``: the image, then ``eval.vqa_prompt`` on the row's question; a demonstration adds the row's majority answer;
  the answer is cut and lower-cased as the world's ``vqa``, ``eval.max_new_tokens_vqa`` tokens at most;
* ``mcq``: asked as ``vqa`` (the options are not listed; a demonstration adds the right option's text); the answer
  is mapped back to an option letter (:func:`~harness.eval.tasks.option_letter`).

Demonstrations come from the file's other rows (a TSV holds one split; MM1 draws from val when there is no train
split), never the query itself. The ``metric`` is one of :data:`METRICS`; a file given by path gets its kind's
(:data:`KIND_METRIC`). Registered benchmarks are :data:`TASKS` entries like the world's tasks, looked up through
:data:`BENCHMARKS` (the TSV ones only).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.eval.tasks import (
    TASKS,
    Task,
    answer_budget,
    caption_budget,
    caption_demo,
    first_line,
    majority_answer,
    option_letter,
    question_prompt,
    register,
    short_answer,
)
from harness.registry import RegistryView

KINDS = ("caption", "vqa", "mcq")
METRICS = ("cider", "vqa_accuracy", "exact_match", "accuracy")  # accuracy: multiple choice (the letter)
REQUIRED_COLUMNS = ("index", "image", "answer")
KIND_METRIC = {"caption": "cider", "vqa": "vqa_accuracy", "mcq": "accuracy"}  # the metric of a file given by path
KIND_COLUMNS = {  # what each kind reads from a row (BenchItem / the prompts below)
    "caption": REQUIRED_COLUMNS,
    "vqa": (*REQUIRED_COLUMNS, "question"),
    "mcq": (*REQUIRED_COLUMNS, "question", "A", "B"),
}


@dataclass(frozen=True)
class BenchmarkSpec(Task):
    """One benchmark: what it is, how it is asked and scored, and which file holds it."""

    name: str  # registry name; also the record's ``task``
    kind: str  # caption | vqa | mcq
    metric: str  # cider | vqa_accuracy | exact_match | accuracy
    file: str  # TSV file name under the benchmark root
    split: str  # the split MM1 reports (docs/mm1_reference.md §1.6); what the file should hold
    title: str = ""
    source: str = ""  # where the data comes from, for the missing-file message

    def __post_init__(self):
        if self.kind not in KINDS or self.metric not in METRICS:
            raise ValueError(
                f"benchmark {self.name}: kind {self.kind!r} / metric {self.metric!r} not in {KINDS} / {METRICS}"
            )

    # queries and demonstrations: the text after a row's image (``item``: a harness.eval.benchmarks.BenchItem)
    def prompt(self, item, cfg) -> str:
        return cfg.caption_prompt if self.kind == "caption" else question_prompt(cfg, item.question)

    def demo(self, item, cfg) -> str:
        if self.kind == "caption":
            return caption_demo(item.answers[0], cfg)
        ref = item.options.get(item.answers[0], item.answers[0]) if self.kind == "mcq" else majority_answer(item.answers)
        return self.prompt(item, cfg) + " " + ref

    def postprocess(self, raw: str, query=None) -> str:
        if self.kind == "caption":
            return first_line(raw)
        answer = short_answer(raw)
        return option_letter(answer, query.options) if self.kind == "mcq" else answer

    def max_new_tokens(self, cfg) -> int:
        return caption_budget(cfg) if self.kind == "caption" else answer_budget(cfg)

    def scores(self, queries: list[dict]) -> list[float]:
        from harness.eval.metrics import cider_scores, exact_match_scores, vqa_scores

        preds, refs = [q["prediction"] for q in queries], [q["refs"] for q in queries]
        if self.metric == "cider":
            return cider_scores(preds, refs)
        if self.metric == "vqa_accuracy":  # a single reference counts as 10 agreeing annotators (as the world's VQA)
            return vqa_scores(preds, [r * 10 if len(r) == 1 else r for r in refs])
        # exact_match (GQA): VQA-normalised string equality; accuracy (multiple choice): the option letter
        return exact_match_scores(preds, refs, normalize=self.metric == "exact_match")


BENCHMARKS: RegistryView[BenchmarkSpec] = RegistryView(TASKS, "benchmark", lambda t: isinstance(t, BenchmarkSpec))

# MM1 §3.1's eight tasks. File names: VLMEvalKit's where it ships one under that name (COCO_VAL, TextVQA_VAL,
# GQA_TestDev_Balanced); the others follow the same <NAME>_<SPLIT> pattern. VQAv2 and VizWiz are reported on
# test-dev in MM1, whose answers are not public: a scored file must hold a split with answers (val).
for _spec in (
    BenchmarkSpec("coco", "caption", "cider", "COCO_VAL.tsv", "val (Karpathy test in some papers)", "COCO Captions",
                  "COCO 2014 captions, 5 references per image"),
    BenchmarkSpec("nocaps", "caption", "cider", "NoCaps_VAL.tsv", "val", "NoCaps", "nocaps.org val, 10 references"),
    BenchmarkSpec("textcaps", "caption", "cider", "TextCaps_VAL.tsv", "val", "TextCaps", "textvqa.org/textcaps val"),
    BenchmarkSpec("vqav2", "vqa", "vqa_accuracy", "VQAv2_VAL.tsv", "val (MM1: test-dev)", "VQAv2",
                  "visualqa.org val, 10 answers per question"),
    BenchmarkSpec("textvqa", "vqa", "vqa_accuracy", "TextVQA_VAL.tsv", "val", "TextVQA",
                  "textvqa.org val, 10 answers per question"),
    BenchmarkSpec("vizwiz", "vqa", "vqa_accuracy", "VizWiz_VAL.tsv", "val (MM1: test-dev)", "VizWiz-VQA",
                  "vizwiz.org val, 10 answers incl. 'unanswerable'"),
    BenchmarkSpec("gqa", "vqa", "exact_match", "GQA_TestDev_Balanced.tsv", "testdev balanced", "GQA",
                  "cs.stanford.edu/people/dorarad/gqa testdev-balanced, one answer"),
    BenchmarkSpec("okvqa", "vqa", "vqa_accuracy", "OKVQA_VAL.tsv", "val", "OK-VQA",
                  "okvqa.allenai.org val, 10 answers (MM1 scores with stemming; not applied here)"),
    # the world's own test sets, written by harness.eval.benchmarks.export_world_benchmarks
    BenchmarkSpec("world_caption", "caption", "cider", "WORLD_CAPTION_TEST.tsv", "test", "world captioning",
                  "harness.eval.benchmarks.export_world_benchmarks"),
    BenchmarkSpec("world_vqa", "vqa", "vqa_accuracy", "WORLD_VQA_TEST.tsv", "test", "world VQA",
                  "harness.eval.benchmarks.export_world_benchmarks"),
    BenchmarkSpec("world_mcq", "mcq", "accuracy", "WORLD_MCQ_TEST.tsv", "test", "world multiple choice",
                  "harness.eval.benchmarks.export_world_benchmarks"),
):
    register(_spec)

MM1_BENCHMARKS: tuple[str, ...] = ("coco", "nocaps", "textcaps", "vqav2", "textvqa", "vizwiz", "gqa", "okvqa")
