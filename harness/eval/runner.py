"""The Evaluator: k-shot world tasks (captioning, VQA, ...) on the world's held-out split (MM1 §3.1 protocol at toy
scale), TSV benchmarks and TextCore, as evaluation units.

What a task asks, its demonstrations' text, its post-processing, generation budget and metric are the task's own
(:mod:`harness.eval.tasks`: ``caption``, ``vqa``, the registered TSV benchmarks); this module runs them the same way
for every task. For each world task in ``eval.tasks`` and each k in ``eval.shots``: every query (a test image for
captioning; a test image + question for VQA) gets k demonstrations drawn from the *train* split with a seeded
generator (``[seed, k, trial, task.stream]``; a query is never among its own demonstrations), interleaved as
image-text chunks exactly as in training, then the open query chunk; greedy decoding continues it. 0-shot has no
demonstrations (MM1's 0-shot, unlike Flamingo's two text-only demos). k > 0 runs ``trials`` seeded draws; the
record holds the mean and the spread across trials (``task.entries``: caption's CIDEr-D; vqa's accuracy overall and
per question type, with the majority-answer baseline beside it). Every prediction is written to
``predictions/<task>_<k>shot_t<trial>.jsonl`` so any score can be traced to its answers.

Resume: those files are also what makes a killed evaluation restartable. Each batch's answers are appended (and
flushed) as they are generated, one line per query keyed by ``task``, ``shots`` (k), ``trial`` and ``index`` (the
query's position), with the weights' fingerprint (``model``), ``max_new_tokens``, the prompt and demonstrations, and for
k-shot captions their format (``caption_demo``).
A killed point is simply launched again: same config, same hash, same run folder, and training resumes from the
checkpoint of its last step (``runtime.checkpoint_every > 0``). A line is then reused only if all of the above match
what would be generated now, so answers of other weights (``runtime.rerun=true`` retrains, and unhashed runtime
settings such as threads can change the bits) or of another protocol are generated afresh. A half-written last line
is ignored. Only the missing queries are generated; batched generation is batch-size invariant
(:mod:`harness.eval.generate`), so the answers, scores and final files equal an uninterrupted run's. When a trial is
complete its file is rewritten in query order. TSV benchmarks and TextCore are recomputed on a rerun.

After the image tasks: TextCore (``eval.text_tasks``, lm-eval on the language model alone,
:mod:`harness.eval.textcore`) and the MM1-style averages over tasks per k (:mod:`harness.eval.aggregates`).

Units: the work is split into evaluation units (:meth:`Evaluator.units`): ``<task>@<k>`` per world task and k,
``bench:<task>@<k>`` per TSV benchmark and k (``<task>``: the registry key or the file's sanitised stem; run by
:mod:`harness.eval.bench_units`), and
``text:<lm-eval task>`` per TextCore task. :meth:`Evaluator.run` runs each unit not in ``skip`` on its own: every
entry it returns carries ``unit`` and ``status``: ``ok``; ``failed`` (NaN, ``error``: the exception's first line;
an exception in one unit leaves the others' scores); or ``skipped`` (NaN, ``reason``: a text task whose data is not
available offline). The averages are derived from the returned units (``derived: true``); :func:`merge_metrics`
merges a run of some units into an older record's metrics and derives them again over the whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import traceback
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from harness.data.features import FeatureBank, bank_for
from harness.data.sequences import Chunk, Encoded, SequenceBuilder
from harness.eval.aggregates import derived_entries, merge_metrics, unit_of
from harness.eval.bench_units import BenchmarkUnits, encode_visual
from harness.eval.generate import greedy_generate
from harness.eval.tasks import CAPTION_DEMO_BEFORE, TASKS, WorldTask, shows_caption_demos, world_task
from harness.models.llm.tokenizer import EOC
from harness.models.vlm import VLM
from harness.progress import progress

# Visual tokens kept for reuse during one evaluation (per image [M, d]: 8 KiB embedded, about 0.5 MiB for 144 tokens
# into Qwen2.5-0.5B, 2.3 MiB into a 4096-wide LLM at float32). Bounded so a large eval split cannot grow it unseen.
TOKEN_CACHE_BYTES = 512 << 20

__all__ = ["TASKS", "Evaluator", "encode_visual", "merge_metrics", "unit_of", "weights_fingerprint"]


def _postprocess(text: str, task: str) -> str:
    """The prediction of world task ``task`` (``caption``, ``vqa``, ...) for generated ``text``: its post-processing
    (the adapters and harness.diagnostics call it by task name)."""
    return world_task(task).postprocess(text)


# -- predictions files: one line per query, appended as answers come (see "Resume" above) --------------------------
PREDICTION_KEYS = ("image", "type", "prompt", "demos", "raw", "prediction", "refs")


def weights_fingerprint(module: torch.nn.Module) -> str:
    """sha1 over every parameter and buffer (names, shapes, dtypes, bytes): equal iff the weights are bitwise equal.
    Reads each weight once (about a second per GB), once per evaluation."""
    h = hashlib.sha1()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


# Keys a saved answer line gained later, with the value lines written before them were generated under.
LEGACY = {"caption_demo": CAPTION_DEMO_BEFORE}


def _saved_answers(path: Path, point: dict, queries: list[dict]) -> dict[int, str]:
    """Query index -> raw answer, for every complete line of ``path`` written for this ``point`` (task, shots, trial,
    weights, generation budget) and this query (prompt, demonstrations, image). Anything else (a line cut short by a
    kill, another model's answers, a changed protocol) is left out, and so generated again."""
    saved: dict[int, str] = {}
    if not path.is_file():
        return saved
    for text in path.read_text().splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:  # a kill mid-write leaves the last line partial
            continue
        i = line.get("index") if isinstance(line, dict) else None
        if not isinstance(i, int) or not 0 <= i < len(queries) or "raw" not in line:
            continue
        q = queries[i]
        if all(line.get(k, LEGACY.get(k)) == v for k, v in point.items()) and all(
            line.get(k) == q[k] for k in ("prompt", "demos", "image")
        ):
            saved[i] = line["raw"]
    return saved


def _write_atomic(path: Path, text: str) -> None:
    """Write to a hidden sibling and rename: a kill leaves the previous file whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Evaluator(BenchmarkUnits):
    def __init__(self, vlm: VLM, world, cfg, out_dir: Path, seed: int, cache_dir: Path | None = None,
                 bank_options: dict | None = None):
        self.vlm, self.world, self.cfg, self.seed = vlm, world, cfg, seed
        self.out_dir = out_dir
        self.cache_dir = cache_dir
        # runtime.feature_cache_gb and runtime.feature_chunk (harness.data.features.bank_options)
        self.bank_options = bank_options or {}
        n = min(cfg.max_images, len(world.samples(cfg.split)))
        self.samples = world.samples(cfg.split)[:n]
        self.train_samples = world.samples("train")
        self.builder = SequenceBuilder(vlm.tokenizer, vlm.num_visual_tokens, max_len=10**9)
        self.stop_ids = {vlm.tokenizer.convert_tokens_to_ids(EOC), vlm.tokenizer.eos_token_id}
        # visual tokens of the images already shown, by (split, index), for a batch-invariant connector
        self._token_cache: dict[tuple[str, int], torch.Tensor] = {}
        self._token_cache_bytes = 0

    @cached_property
    def banks(self) -> dict:
        """The world's feature banks (eval split and train), built when a world task first needs them: an
        evaluation of only TSV benchmarks or text tasks never encodes the world, a 0-shot one never its train split
        (demonstrations only), the eval split only as far as ``eval.max_images`` reaches, and a split too large to
        store (runtime.feature_cache_gb) only the images scored and shown."""
        first = {self.cfg.split: len(self.samples)} if self.cfg.split != "train" else {}  # queries: its first images
        return {s: bank_for(self.vlm, self.world, s, self.cache_dir, first=first.get(s), **self.bank_options)
                for s in {self.cfg.split, "train"}}

    def generate_batches(self, prompts: list[Encoded], max_new: int, visual=None,
                         desc: str | None = None) -> Iterator[tuple[list[int], list[list[int]]]]:
        """Greedy answers, one batch of ``eval.batch_size`` similar-length prompts at a time: yields ``(rows,
        new_ids)``, ``rows`` indexing ``prompts``, ``new_ids`` each row's tokens up to (not including) the stop token.
        ``visual(batch) -> [n_img, M, d]`` gives a batch's visual tokens (default: the world's feature banks).
        ``desc``: the label of a progress bar over the batches (harness.progress), none without it."""
        order = np.argsort([len(p.ids) for p in prompts], kind="stable")  # similar lengths batch together
        bs = self.cfg.batch_size
        for s in progress(range(0, len(order), bs), desc or "", "batch", show=desc is not None):
            rows = order[s : s + bs].tolist()
            batch = [prompts[r] for r in rows]
            yield rows, greedy_generate(self.vlm, batch, (visual or self.prompt_visual)(batch), max_new, self.stop_ids)

    def generate_ids(self, prompts: list[Encoded], max_new: int, visual=None,
                     desc: str | None = None) -> list[list[int]]:
        """:meth:`generate_batches`, gathered back into prompt order."""
        out: list[list[int]] = [[] for _ in prompts]
        for rows, ids in self.generate_batches(prompts, max_new, visual, desc):
            for r, g in zip(rows, ids):
                out[r] = g
        return out

    def _generate(self, prompts, max_new: int, visual=None, desc: str | None = None) -> list[str]:
        return [self.vlm.tokenizer.decode(g, skip_special_tokens=True)
                for g in self.generate_ids(prompts, max_new, visual, desc)]

    @cached_property
    def image_chunk(self) -> int:
        """Images whose visual tokens are computed at once (runtime.feature_chunk; auto: 64 MiB of features): an
        8-shot batch of 64 prompts holds 576 images, and a real-size mining connector takes about 0.5 GB an image at
        384 px. Auto never splits a batch of the embedded default (over a thousand images), whose scores depend on
        batch composition in the last bits for some connectors (FeatureBank.auto_chunk)."""
        return FeatureBank.batch_chunk(self.vlm, int(self.bank_options.get("chunk") or 0))

    @torch.no_grad()
    def prompt_visual(self, batch: list[Encoded]) -> torch.Tensor | None:
        """Visual tokens for every image slot of ``batch``, in prompt order: demonstrations come from the train split,
        each prompt's last image (the query) from the eval split. One bank lookup per split and chunk of
        :attr:`image_chunk` slots, so high-resolution maps (mining) are read and mined a chunk at a time. A
        batch-invariant connector computes an image's tokens once per evaluation (up to ``TOKEN_CACHE_BYTES``)."""
        slots = [(self.cfg.split if j == len(p.images) - 1 else "train", img)
                 for p in batch for j, img in enumerate(p.images)]
        if not slots:
            return None
        if not getattr(self.vlm.connector, "batch_invariant", False):  # tokens depend on the batch: as it has them
            return torch.cat([self._slot_tokens(slots[s : s + self.image_chunk])
                              for s in range(0, len(slots), self.image_chunk)])
        # Each image once: a VQA image is asked several questions (93 on 12 images at 768 px, where mining's
        # connector is most of evaluation's time), and a query image comes back at every k.
        known = self._token_cache
        new = [s for s in dict.fromkeys(slots) if s not in known]
        fresh = {}
        for s in range(0, len(new), self.image_chunk):
            fresh.update(zip(new[s : s + self.image_chunk], self._slot_tokens(new[s : s + self.image_chunk])))
        out = torch.stack([fresh[s] if s in fresh else known[s] for s in slots])
        for slot, tokens in fresh.items():
            size = tokens.numel() * tokens.element_size()
            if self._token_cache_bytes + size > TOKEN_CACHE_BYTES:
                break  # full: later images are computed batch by batch, as they would be without the cache
            known[slot] = tokens.clone()  # not a view that would keep its whole chunk alive
            self._token_cache_bytes += size
        return out

    def _slot_tokens(self, slots: list[tuple[str, int]]) -> torch.Tensor:
        order, feats, hrs = [], [], []
        for split in sorted({s for s, _ in slots}):
            pos = [i for i, (s, _) in enumerate(slots) if s == split]
            v = self.banks[split].get([slots[i][1] for i in pos])
            order += pos
            feats.append(v.feats)
            hrs.append(v.hr)
        back = torch.argsort(torch.tensor(order))  # from split-grouped order back to prompt order
        hr = None if hrs[0] is None else [torch.cat([h[s] for h in hrs])[back] for s in range(len(hrs[0]))]
        return self.vlm.connector(torch.cat(feats)[back], hr)

    def max_new_tokens(self, task: str) -> int:
        """The generation budget of task ``task`` (a world task or a registered benchmark) under this eval config."""
        return TASKS.get(task).max_new_tokens(self.cfg)

    def task_prompts(self, task: str, k: int, trial: int) -> tuple[list[dict], list[Encoded]]:
        """The queries of one (task, k, trial), each with the train indices of its demonstrations, and their prompts
        (demonstrations drawn in query order from one seeded generator, so the first n queries do not depend on how
        many follow)."""
        t = world_task(task)
        queries = t.queries(self.samples, self.cfg)
        rng = np.random.default_rng([self.seed, k, trial, t.stream])
        prompts = []
        for q in queries:
            demo_idx = rng.choice(len(self.train_samples), size=k, replace=False) if k else []
            demos = [Chunk(int(i), t.demo(self.train_samples[int(i)], rng, self.cfg)) for i in demo_idx]
            q["demos"] = [int(i) for i in demo_idx]
            prompts.append(self.builder.prompt(demos, Chunk(q["image"], q["prompt"])))
        return queries, prompts

    @cached_property
    def fingerprint(self) -> str:
        """Identity of the weights the predictions come from (see :func:`weights_fingerprint`)."""
        return weights_fingerprint(self.vlm)

    def run_task(self, task: str, k: int, trial: int, pred_dir: Path) -> list[dict]:
        """Answer every query of (task, k, trial), reusing the answers ``pred_dir``'s file already holds for it."""
        t = world_task(task)
        queries, prompts = self.task_prompts(task, k, trial)
        max_new = t.max_new_tokens(self.cfg)
        point = {"task": task, "shots": k, "trial": trial, "model": self.fingerprint, "max_new_tokens": max_new}
        if shows_caption_demos(t.metric, k):  # how caption demonstrations read: another format's are not reused
            point["caption_demo"] = self.cfg.caption_demo
        path = pred_dir / f"{task}_{k}shot_t{trial}.jsonl"

        def answer(i: int, raw: str) -> None:
            queries[i] |= {"raw": raw, "prediction": t.postprocess(raw, queries[i])}

        def lines(idx) -> str:
            return "".join(json.dumps(point | {"index": i} | {f: queries[i][f] for f in PREDICTION_KEYS}) + "\n"
                           for i in idx)

        saved = _saved_answers(path, point, queries)
        for i, raw in saved.items():
            answer(i, raw)
        if saved:
            print(f"[eval] {task} {k}-shot trial {trial}: {len(saved)}/{len(queries)} answers reused from {path}",
                  flush=True)
        todo = [i for i in range(len(queries)) if i not in saved]
        _write_atomic(path, lines(sorted(saved)))  # drops a half-written last line before appending after it
        with open(path, "a") as f:
            desc = f"eval {task}@{k}" + (f" trial {trial}" if k else "")
            for rows, ids in self.generate_batches([prompts[i] for i in todo], max_new, desc=desc):
                for r, g in zip(rows, ids):
                    answer(todo[r], self.vlm.tokenizer.decode(g, skip_special_tokens=True))
                f.write(lines(todo[r] for r in rows))
                f.flush()  # in the OS's hands: a killed process loses at most the batch being generated
        _write_atomic(path, lines(range(len(queries))))  # complete: the whole file, in query order
        return queries

    # -- units ---------------------------------------------------------------------------------------------------
    @staticmethod
    def units_for(cfg) -> list[str]:
        """The evaluation units an eval config asks for, in the order they run (see the module docstring). Reads
        nothing: a benchmark's task name comes from its entry (harness.eval.benchmarks.parse_benchmark)."""
        from harness.eval.benchmarks import parse_benchmark

        shots = [int(k) for k in cfg.shots]
        units = [f"{task}@{k}" for task in cfg.tasks for k in shots]
        for entry in getattr(cfg, "benchmarks", None) or []:
            units += [f"bench:{parse_benchmark(entry).task}@{k}" for k in shots]
        units += [f"text:{t}" for t in getattr(cfg, "text_tasks", None) or []]
        return list(dict.fromkeys(units))

    def units(self) -> list[str]:
        return self.units_for(self.cfg)

    merge_metrics = staticmethod(merge_metrics)

    def run(self, skip: Iterable[str] = frozenset(), on_unit=None) -> list[dict]:
        """Every unit not in ``skip`` -> flat metric entries ``{task, shots, metric, subset, value, stderr, n, ...,
        unit, status}``, then the averages derived from them (over the units run; :func:`merge_metrics` derives
        them over a whole record). Keys in ``skip`` that are not units of this config are ignored.
        ``on_unit(unit, entries)`` is called as each unit finishes, so a caller can keep its scores before the next
        unit starts (harness.evaluate writes them into the record: a killed pass loses only the unit it was in)."""
        skip = set(skip)
        (self.out_dir / "predictions").mkdir(parents=True, exist_ok=True)
        entries: list[dict] = []
        for unit in self.units():
            if unit not in skip:
                done = self.run_unit(unit)
                entries += done
                if on_unit is not None:
                    on_unit(unit, done)
        return entries + derived_entries(entries)

    def run_unit(self, unit: str) -> list[dict]:
        """One unit's entries; an ``Exception`` makes them its NaN entries with ``status: "failed"`` and ``error``
        (a ``BaseException`` such as KeyboardInterrupt still ends the evaluation)."""
        try:
            out = self._unit_entries(unit)
        except Exception as err:  # noqa: BLE001 - the other units' scores are kept
            traceback.print_exc()
            text = str(err).strip()
            error = f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__
            print(f"[eval] {unit} failed: {error}", flush=True)
            return [e | {"unit": unit, "status": "failed", "error": error} for e in self._nan_entries(unit)]
        return [e | {"unit": unit, "status": e.get("status", "ok")} for e in out]

    def _parse_unit(self, unit: str) -> tuple[str, str, int | None]:
        """``caption@0`` -> ("world", "caption", 0); ``bench:x@4`` -> ("bench", <entry>, 4); ``text:t`` ->
        ("text", "t", None)."""
        if unit.startswith("text:"):
            return "text", unit[5:], None
        head, _, k = unit.rpartition("@")
        if head.startswith("bench:"):
            from harness.eval.benchmarks import parse_benchmark

            entries = {parse_benchmark(e).task: e for e in getattr(self.cfg, "benchmarks", None) or []}
            return "bench", entries[head[6:]], int(k)
        return "world", head, int(k)

    def _unit_entries(self, unit: str) -> list[dict]:
        group, name, k = self._parse_unit(unit)
        if group == "text":
            return self.run_text_task(name)
        if group == "bench":
            return self.run_benchmark(name, [k])
        task = world_task(name)
        trials = 1 if k == 0 else max(1, self.cfg.trials)
        per_trial = [self.run_task(name, k, t, self.out_dir / "predictions") for t in range(trials)]
        base = {"task": name, "shots": k, "split": self.cfg.split, "trials": len(per_trial)}
        return task.entries(per_trial, base, self.world)

    def _nan_entries(self, unit: str) -> list[dict]:
        """The headline entries a failed unit would have written, NaN: it shows as a gap, and averages over it
        are NaN, never a silently smaller average."""
        nan = float("nan")
        blank = {"subset": "all", "value": nan, "stderr": nan, "n": 0}
        try:
            group, name, k = self._parse_unit(unit)
        except (KeyError, ValueError):
            group, name, k = "unknown", unit, None
        if group == "text":
            from harness.eval.textcore import nan_metric, text_entry

            return [text_entry(name, int(self.cfg.text_num_fewshot), nan_metric(name), nan, nan, 0)]
        if group == "world":
            task = TASKS.get(name) if name in TASKS else None
            if isinstance(task, WorldTask):
                return task.nan_entries(k, self.cfg.split)
            return [{"task": name, "shots": k, "metric": "unknown", "split": self.cfg.split} | blank]
        task, metric = name, "unknown"
        if group == "bench":
            from harness.eval.benchmarks import BENCHMARKS, KIND_METRIC, parse_benchmark

            ref = parse_benchmark(name)
            task = ref.task
            metric = (BENCHMARKS.get(ref.key).metric if ref.key in BENCHMARKS else
                      KIND_METRIC[ref.kind] if ref.kind else self._bench_metric(name))
        return [{"task": task, "shots": k, "metric": metric, "file": None} | blank]

    def _bench_metric(self, entry: str) -> str:
        try:
            return self._resolved(entry).spec.metric
        except Exception:  # noqa: BLE001 - the file itself is what failed
            return "unknown"

    # -- TextCore (harness.eval.textcore) --------------------------------------------------------------------------
    def run_text_task(self, name: str) -> list[dict]:
        """One TextCore task's entries (its NaN ``skipped`` entry when its data is not available offline)."""
        from harness.eval.textcore import evaluate_text_task

        return evaluate_text_task(self.vlm, self.world, self.cfg, name, self.out_dir, self.seed, self.cache_dir)

    def run_textcore(self) -> list[dict]:
        """Every TextCore task and the TextCore average (none when ``eval.text_tasks`` is empty)."""
        from harness.eval.textcore import evaluate_textcore

        return evaluate_textcore(self.vlm, self.world, self.cfg, self.out_dir, self.seed, self.cache_dir)
