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

``subset`` means one thing: the slice of one task's queries an entry scores, ``all`` for every query (the task's
score), else the slice's name (the world's ``vqa`` scores each question type). A TextCore entry scores one lm-eval
task: its ``task`` is that lm-eval task, ``suite: "textcore"`` marks it, and its subset is ``all``. Records written
before (``{task: "textcore", subset: <lm-eval task>}``) are read the same way: :func:`text_task_of` and
:func:`canonical_entry` map them.

A task's score is its ``subset == "all"`` entry (slices are not tasks, TextCore entries not MM1 tasks). Each average
lists the tasks it covers under ``tasks``; its ``stderr`` is ``sqrt(sum se_i^2) / m`` (tasks scored on disjoint
data), ``n`` the number of evaluated samples over those tasks. A NaN task makes its averages NaN: a failed task is
never silently left out. The TextCore average is its own entry (``task: "textcore"``, see
:mod:`harness.eval.textcore`), computed here from the per-task TextCore entries (:func:`textcore_averages`).

Evaluation units and merging. A record's metrics are grouped into units (:func:`unit_of`): ``caption@<k>``,
``vqa@<k>``, ``bench:<task>@<k>`` and ``text:<lm-eval task>``; the averages are derived (``derived: true``,
``unit: "aggregate"``) and never stored as a unit of their own. :func:`merge_metrics` puts re-run units into an
older metric list and recomputes every derived entry over the result, so an evaluation that re-runs one unit keeps
every other unit's scores. A derived entry has ``status: "ok"``, or ``"incomplete"`` with a ``reason`` naming the
NaN (failed or skipped) tasks it averages.
"""

from __future__ import annotations

import math

from harness.eval.tasks import is_world_task

TEXTCORE_TASK = "textcore"
AGGREGATE_UNIT = "aggregate"  # the unit of derived entries
#: The metric of a TextCore task that enters the TextCore average (length-normalised accuracy where the Open LLM
#: Leaderboard and most papers report it). Tasks not listed use ``acc``, else ``exact_match``; tasks with neither
#: (perplexity only) are reported but left out of the average.
PRIMARY_METRIC: dict[str, str] = {
    "arc_challenge": "acc_norm",
    "hellaswag": "acc_norm",
    "world_textqa": "exact_match",
    "world_textmc": "acc",
}
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
        and e.get("task") not in (AVERAGE_TASK, TEXTCORE_TASK)
        and text_task_of(e) is None
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


# ---------------------------------------------------------------------------------------------------------------
# TextCore average
# ---------------------------------------------------------------------------------------------------------------


def textcore_average(primary: list[tuple[float, float, str]], shots: int) -> dict:
    """Unweighted mean of the tasks' primary metrics ``(value, stderr, task)``; NaN if any is NaN (a missing task
    is never dropped); stderr ``sqrt(sum se_i^2) / m``."""
    m = len(primary)
    value = math.fsum(p[0] for p in primary) / m if m else math.nan
    stderr = math.sqrt(math.fsum(p[1] ** 2 for p in primary)) / m if m else math.nan
    return {
        "task": TEXTCORE_TASK,
        "shots": shots,
        "metric": "textcore_average",
        "subset": "all",
        "value": value,
        "stderr": stderr,
        "n": m,
        "tasks": [p[2] for p in primary],
    }


def textcore_averages(entries: list[dict]) -> list[dict]:
    """One TextCore average per shot count over the per-task TextCore entries (:func:`text_task_of`), in the order
    the tasks first appear. A task's primary metric is :data:`PRIMARY_METRIC`'s, else ``acc``, else
    ``exact_match``; its NaN entry (failed, skipped) keeps the average NaN."""
    per_task = [e for e in entries if text_task_of(e) is not None]
    out = []
    for k in sorted({int(e.get("shots", 0)) for e in per_task}):
        names: list[str] = []
        found: dict[str, dict[str, dict]] = {}
        for e in per_task:
            if int(e.get("shots", 0)) == k:
                name = text_task_of(e)
                if name not in found:
                    names.append(name)
                found.setdefault(name, {})[e["metric"]] = e
        primary = []
        for name in names:
            want = PRIMARY_METRIC.get(name) or next((m for m in ("acc", "exact_match") if m in found[name]), None)
            if want is None:
                continue
            e = found[name].get(want)
            primary.append((float(e["value"]), float(e.get("stderr", math.nan)), name) if e else
                           (math.nan, math.nan, name))
        out.append(textcore_average(primary, k))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Units, derived entries and merging
# ---------------------------------------------------------------------------------------------------------------


def is_derived(entry: dict) -> bool:
    """An average over other entries (MM1's or TextCore's), in records of any age."""
    return bool(entry.get("derived")) or entry.get("task") == AVERAGE_TASK or (
        entry.get("task") == TEXTCORE_TASK and entry.get("metric") == "textcore_average")


def text_task_of(entry: dict) -> str | None:
    """The lm-eval task a per-task TextCore entry scores: its ``task`` (``suite: "textcore"``), or in a record
    written before that, its ``subset`` (``task: "textcore"``); None for every other entry and for the average."""
    if entry.get("suite") == TEXTCORE_TASK:
        return entry.get("task")
    if entry.get("task") == TEXTCORE_TASK and not is_derived(entry):
        return entry.get("subset")
    return None


def canonical_entry(entry: dict) -> dict:
    """``entry`` as this version writes it: an old per-task TextCore entry (``task: "textcore"``, ``subset``: the
    lm-eval task) becomes ``{task: <lm-eval task>, suite: "textcore", subset: "all"}``, its other fields and their
    order kept; any other entry is returned as it is."""
    if entry.get("task") != TEXTCORE_TASK or is_derived(entry) or entry.get("suite"):
        return entry
    out = {"task": entry.get("subset"), "suite": TEXTCORE_TASK}
    return out | {k: ("all" if k == "subset" else v) for k, v in entry.items() if k != "task"}


def unit_of(entry: dict) -> str:
    """The evaluation unit an entry belongs to: its ``unit`` if it has one; for entries written before units
    existed, derived from task and shots: the world's tasks ``<task>@<shots>``, TextCore's per-task entries
    ``text:<lm-eval task>``, averages :data:`AGGREGATE_UNIT`, anything else (a TSV benchmark)
    ``bench:<task>@<shots>``."""
    if entry.get("unit"):
        return entry["unit"]
    if is_derived(entry):
        return AGGREGATE_UNIT
    text = text_task_of(entry)
    if text is not None:
        return f"text:{text}"
    task = entry.get("task")
    if is_world_task(task):
        return f"{task}@{int(entry.get('shots', 0))}"
    return f"bench:{task}@{int(entry.get('shots', 0))}"


def _nan(v) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True


def derived_entries(entries: list[dict]) -> list[dict]:
    """The TextCore averages, then the MM1 averages, over the non-derived ``entries``; each marked ``derived``,
    ``unit: "aggregate"`` and ``status`` ok / incomplete (with the NaN tasks as ``reason``)."""
    base = [e for e in entries if not is_derived(e)]
    out = []
    for avg in textcore_averages(base):
        bad = [n for n in avg["tasks"] if any(_nan(e["value"]) for e in base if text_task_of(e) == n
                                               and int(e.get("shots", 0)) == avg["shots"])]
        out.append(_stamp(avg, [f"text:{n}" for n in bad]))
    headline = task_scores(base)
    for avg in mm1_averages(base):
        bad = [unit_of(e) for e in headline if e["task"] in avg["tasks"] and int(e["shots"]) == avg["shots"]
               and _nan(e["value"])]
        out.append(_stamp(avg, bad))
    return out


def _stamp(avg: dict, bad_units: list[str]) -> dict:
    avg = avg | {"derived": True, "unit": AGGREGATE_UNIT}
    if not _nan(avg["value"]):
        return avg | {"status": "ok"}
    why = f"NaN in {', '.join(dict.fromkeys(bad_units))}" if bad_units else "no task to average"
    return avg | {"status": "incomplete", "reason": f"{why} (failed or skipped units make the average NaN)"}


def merge_metrics(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` metric entries with the units of ``new`` replaced (in place, so the order of units is kept; units
    ``old`` lacks are appended) and every derived entry recomputed over the result. Old entries without a ``unit``
    are assigned one by :func:`unit_of`; entries are not modified."""
    fresh: dict[str, list[dict]] = {}
    for e in new:
        if not is_derived(e):
            fresh.setdefault(unit_of(e), []).append(e)
    out: list[dict] = []
    placed: set[str] = set()
    for e in old:
        if is_derived(e):
            continue
        u = unit_of(e)
        if u not in fresh:
            out.append(e)
        elif u not in placed:
            out += fresh[u]
            placed.add(u)
    for u, es in fresh.items():
        if u not in placed:
            out += es
    return out + derived_entries(out)
