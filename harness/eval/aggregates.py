"""MM1-style averages over tasks, added to a record beside the per-task entries.

MM1's ablation plots (Figure 4/5, Table 1) show, per shot count, one number: the plain unweighted mean of the
per-task scores over its eight benchmarks, CIDEr for the captioning sets and VQA accuracy (GQA: exact match) for
the VQA sets (docs/mm1_reference.md §1.1/§1.6). For each k this module adds

* ``{task: "mm1_average", metric: "cider_mean", subset: "caption_tasks"}``: mean CIDEr over the captioning tasks,
* ``{task: "mm1_average", metric: "vqa_mean", subset: "vqa_tasks"}``: mean VQA accuracy / exact match over the VQA
  tasks,
* ``{task: "mm1_average", metric: "task_mean", subset: "all_tasks"}``: mean over every task, MM1's plotted number on
  this harness's natural scale (the paper prints 100 x; CIDEr here is pycocoevalcap's, so 1.0 = the paper's 100).

No average uses ``subset: "all"``, which marks a task's own overall score throughout the records.

A task's score is its ``subset == "all"`` entry (per-question-type subsets are not tasks). Each average lists the
tasks it covers under ``tasks``; its ``stderr`` is ``sqrt(sum se_i^2) / m`` (tasks scored on disjoint data), ``n``
the number of evaluated samples over those tasks. A NaN task makes its averages NaN: a failed task is never
silently left out. The TextCore average is its own entry (``task: "textcore"``, see :mod:`harness.eval.textcore`).
"""

from __future__ import annotations

import math

CAPTION_METRICS = ("cider",)
VQA_METRICS = ("vqa_accuracy", "exact_match")
AVERAGE_TASK = "mm1_average"
GROUPS = (
    ("cider_mean", "caption_tasks", CAPTION_METRICS),
    ("vqa_mean", "vqa_tasks", VQA_METRICS),
    ("task_mean", "all_tasks", CAPTION_METRICS + VQA_METRICS),
)


def task_scores(entries: list[dict]) -> list[dict]:
    """The one headline entry per (task, shots): ``subset == "all"`` with a caption or VQA metric."""
    return [
        e
        for e in entries
        if e.get("subset") == "all"
        and e.get("metric") in CAPTION_METRICS + VQA_METRICS
        and e.get("task") not in (AVERAGE_TASK, "textcore")
    ]


def _mean_entry(scores: list[dict], k: int, metric: str, subset: str) -> dict:
    m = len(scores)
    value = math.fsum(float(e["value"]) for e in scores) / m
    stderr = math.sqrt(math.fsum(float(e.get("stderr", math.nan)) ** 2 for e in scores)) / m
    return {
        "task": AVERAGE_TASK,
        "shots": k,
        "metric": metric,
        "subset": subset,
        "value": value,
        "stderr": stderr,
        "n": int(sum(int(e.get("n") or 0) for e in scores)),
        "tasks": [e["task"] for e in scores],
    }


def mm1_averages(entries: list[dict]) -> list[dict]:
    """The averages above, for every shot count that has task scores (an average over no task is not written)."""
    scores = task_scores(entries)
    out = []
    for k in sorted({int(e["shots"]) for e in scores}):
        at_k = [e for e in scores if int(e["shots"]) == k]
        for metric, subset, metrics in GROUPS:
            chosen = [e for e in at_k if e["metric"] in metrics]
            if chosen:
                out.append(_mean_entry(chosen, k, metric, subset))
    return out
