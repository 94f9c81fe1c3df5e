"""TextCore: text-only evaluation of the VLM's language model through EleutherAI's lm-evaluation-harness.

MM1 (§3.3, Figure 5) tracks how much text ability a VLM keeps with "TextCore", an average over common text tasks
(ARC, PIQA, LAMBADA, WinoGrande, HellaSwag, ...; docs/mm1_reference.md §1.4), run with an internal fork of lm-eval.
This module runs the same harness on the VLM's language model:

* :class:`TextCoreLM` is an ``lm_eval.api.model.LM`` over any Hugging Face causal LM and its tokenizer (the VLM's
  ``vlm.lm`` / ``vlm.tokenizer``): batched ``loglikelihood`` (with the ``is_greedy`` flag), ``loglikelihood_rolling``
  (disjoint windows, every token predicted once with as much context as fits), and greedy ``generate_until`` with
  stop strings. Every scored sequence starts with ``<bos>``, as in the LM's pre-training stream.
* The embedded default evaluates local lm-eval YAML tasks over the world's text (``harness/eval/tasks``): the
  world's text passages (a scene description followed by questions it answers) are split into one document per
  question and written as JSONL into the cache; the YAML templates are rendered next to the run with those paths.

  - ``world_textqa`` (generate_until, exact match): passage + question -> the answer, greedy, stopped at "Question:".
  - ``world_textmc`` (multiple choice, acc / acc_norm): the same prompt; choices are every answer the world's train
    split has for that question type (6 colours, 5 shapes, 9 positions, the counts, the 10 digits).
  - ``world_textppl`` (loglikelihood_rolling, word/byte perplexity, bits per byte): the raw passages of the split.
    Not in the TextCore average (lower is better).

* Standard lm-eval task names (arc_easy, arc_challenge, piqa, lambada_openai, hellaswag, winogrande, ...) are passed
  to lm-eval's own task index. Their data comes from the Hugging Face hub, and runs are offline
  (``HF_DATASETS_OFFLINE=1`` unless you set it): a task whose data is not in the local datasets cache is *skipped*,
  not fatal (:func:`unavailable_reason`: its entry is NaN with ``status: "skipped"`` and a one-line ``reason`` with
  the command that caches the data), and the other tasks still run. :func:`check_text_tasks` says so before a run
  (``harness.eval.preflight``), and rejects names lm-eval does not know.

Record entries: one per task and metric ``{task: <lm-eval task>, suite: "textcore", shots, metric, subset: "all",
value, stderr, n}`` (records written before the ``suite`` field have ``task: "textcore"``, ``subset: <lm-eval
task>``; harness.eval.aggregates.text_task_of reads both) and the TextCore average ``{task: "textcore", metric:
"textcore_average", subset: "all"}``: the unweighted mean
of each task's primary metric (:data:`PRIMARY_METRIC`, else ``acc``, else ``exact_match``;
:func:`harness.eval.aggregates.textcore_averages`). Standard errors are the standard error of the mean over
documents, computed from lm-eval's per-document scores (lm-eval's bootstrap, which spawns a process pool, is switched
off); the average's is ``sqrt(sum se_i^2) / m``. The Evaluator runs each task as its own unit
(:func:`evaluate_text_task`). A task that cannot run is one NaN entry (its primary metric) with ``status``:
``skipped`` (data not available offline, or lm-eval not installed: :data:`LM_EVAL_MISSING`) or ``failed`` (with
``error``), never 0; a NaN task makes the average NaN.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import re
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

try:  # light: lm_eval's package __init__ is lazy, lm_eval.api.model imports no datasets
    from lm_eval.api.model import LM as _LMBase
except ImportError:  # lm-eval is an optional extra; the Evaluator records a status instead
    _LMBase = object  # type: ignore[assignment,misc]

from harness.eval.aggregates import (  # PRIMARY_METRIC: re-exported
    PRIMARY_METRIC,
    TEXTCORE_TASK,
    textcore_average,
    textcore_averages,
)
from harness.eval.generate import cache_kwarg
from harness.eval.metrics import mean_result
from harness.world.language import QA_TEMPLATE, QUESTION_TEMPLATES

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
LOCAL_TASKS: tuple[str, ...] = ("world_textqa", "world_textmc", "world_textppl")
#: MM1's TextCore list as far as lm-eval has it by name (docs/mm1_reference.md §1.4); these need the hub.
STANDARD_TASKS: tuple[str, ...] = ("arc_easy", "arc_challenge", "piqa", "lambada_openai", "hellaswag", "winogrande")
LM_EVAL_MISSING = "lm-eval not installed: pip install -e '.[eval]'"
DATA_PLACEHOLDER = "__WORLD_TEXT_DIR__"
CACHE_PLACEHOLDER = "__HF_DATASETS_CACHE__"
FEWSHOT_POOL = 512  # train passages written as the few-shot pool (demonstrations come from the train split)
DATA_VERSION = 1  # bump when the JSONL layout changes


def lm_eval_available() -> bool:
    return importlib.util.find_spec("lm_eval") is not None


# ---------------------------------------------------------------------------------------------------------------
# The lm-eval model adapter
# ---------------------------------------------------------------------------------------------------------------


def rolling_windows(tokens: Sequence[int], prefix: int, max_len: int) -> list[tuple[list[int], list[int]]]:
    """Split ``[prefix] + tokens`` into ``(context, continuation)`` pairs that score every token exactly once.

    Windows predict at most ``max_len`` tokens each; each window's model input is ``(context + continuation)[:-1]``,
    at most ``max_len`` long, filled with as many preceding tokens as fit (lm-eval's ``get_rolling_token_windows``
    followed by ``make_disjoint_window``). ``tokens=[0..9], max_len=4`` gives inputs ``[P 0 1 2]``, ``[3 4 5 6]``
    (context ``[3]``) and ``[5 6 7 8]`` (context ``[5 6 7]``, scoring 8 and 9).
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    full = [prefix, *tokens]
    out = []
    a = 1
    while a < len(full):
        b = min(a + max_len, len(full))
        start = max(0, b - 1 - max_len)
        out.append((full[start:a], full[a:b]))
        a = b
    return out


class TextCoreLM(_LMBase):
    """``lm_eval.api.model.LM`` over a Hugging Face causal LM (``model(input_ids, attention_mask) -> logits``).

    ``max_length`` (default: the model's ``max_position_embeddings``) caps every forward pass; longer inputs keep
    their last tokens. ``batch_size`` is the number of sequences per forward pass. Results do not depend on it:
    loglikelihood batches are right-padded (positions start at 0 in every row) and generation batches are
    left-padded with positions taken from the attention mask, as in :mod:`harness.eval.generate`.
    """

    def __init__(
        self,
        model,
        tokenizer,
        batch_size: int = 32,
        max_length: int | None = None,
        max_gen_toks: int = 256,
        device: str | torch.device | None = None,
    ):
        if _LMBase is object:
            raise ImportError(LM_EVAL_MISSING)
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        self.max_length = int(max_length or getattr(model.config, "max_position_embeddings", 2048))
        self.max_gen_toks = int(max_gen_toks)
        self._device = torch.device(device) if device is not None else next(model.parameters()).device
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if prefix is None:
            raise ValueError("the tokenizer has neither a bos nor an eos token to start sequences with")
        self.prefix_id = int(prefix)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.prefix_id)
        self.stop_ids = {int(t) for t in (tokenizer.eos_token_id, _special_id(tokenizer, "<eoc>")) if t is not None}
        self._warned_sampling = False

    @classmethod
    def from_vlm(cls, vlm, **kwargs) -> TextCoreLM:
        """The VLM's language model and tokenizer (text only: no image slots)."""
        return cls(vlm.lm, vlm.tokenizer, **kwargs)

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "") or type(self.tokenizer).__name__).replace("/", "__")

    # -- tokenisation ----------------------------------------------------------------------------------------
    def tok_encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of ``<bos> + context`` and of ``continuation``, such that their concatenation is the
        tokenisation of the whole string (what the model would read).

        Trailing whitespace of the context moves to the continuation (lm-eval's convention: "Answer:" + " red").
        The whole string is tokenised once; its first tokens are the context's when the context tokenises to a
        prefix of it. Otherwise one token straddles the boundary, and it is split off by character offsets: tokens
        that end inside the context belong to it, the straddling token and the rest are scored as continuation.
        An empty context is ``<bos>`` alone.
        """
        n = len(context) - len(context.rstrip())
        if n:
            context, continuation = context[:-n], context[-n:] + continuation
        if not context:
            return [self.prefix_id], self.tok_encode(continuation)
        whole = self.tok_encode(context + continuation)
        ctx = self.tok_encode(context)
        if whole[: len(ctx)] == ctx:
            k = len(ctx)
        else:
            try:
                offsets = self.tokenizer(context + continuation, add_special_tokens=False, return_offsets_mapping=True)[
                    "offset_mapping"
                ]
                k = sum(1 for _, end in offsets if end <= len(context))
            except (NotImplementedError, KeyError, TypeError):  # slow tokenizer: lm-eval's rule
                k = len(ctx)
        return [self.prefix_id, *whole[:k]], whole[k:]

    # -- scoring ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def loglikelihood_tokens(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """``(context ids, continuation ids)`` -> (sum of log p(continuation | context), greedy?) per pair.

        The model reads ``(context + continuation)[:-1]`` (its last ``max_length`` tokens) and the continuation is
        scored at the last ``len(continuation)`` positions. ``greedy`` is True when every continuation token is the
        argmax at its position. An empty continuation scores (0.0, True).
        """
        inputs, conts = [], []
        for ctx, cont in pairs:
            if len(cont) > self.max_length:
                raise ValueError(f"continuation of {len(cont)} tokens exceeds max_length {self.max_length}")
            if not ctx:
                raise ValueError("empty context: start it with the prefix token")
            inputs.append((list(ctx) + list(cont))[:-1][-self.max_length :] if cont else [])
            conts.append(list(cont))
        results: list[tuple[float, bool]] = [(0.0, True)] * len(pairs)
        pending = sorted((i for i, c in enumerate(conts) if c), key=lambda i: -len(inputs[i]))  # longest first
        with _eval_mode(self.model):
            self._score_rows(pending, inputs, conts, results)
        return results

    def _score_rows(self, pending, inputs, conts, results) -> None:
        for s in range(0, len(pending), self.batch_size):
            rows = pending[s : s + self.batch_size]
            T = len(inputs[rows[0]])
            ids = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), T), dtype=torch.long)
            for r, i in enumerate(rows):
                ids[r, : len(inputs[i])] = torch.tensor(inputs[i])
                mask[r, : len(inputs[i])] = 1
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            for r, i in enumerate(rows):
                n, m = len(inputs[i]), len(conts[i])
                logp = F.log_softmax(logits[r, n - m : n].float(), dim=-1)
                target = torch.tensor(conts[i], device=logp.device)
                score = float(logp.gather(-1, target.unsqueeze(-1)).sum())
                results[i] = (score, bool((logp.argmax(-1) == target).all()))

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [self.encode_pair(*req.args) for req in requests]
        out = self.loglikelihood_tokens(pairs)
        for req, res in zip(requests, out):
            self.cache_hook.add_partial("loglikelihood", req.args, res)
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Full log-likelihood of each string given ``<bos>``, in disjoint windows of ``max_length`` tokens."""
        windows, owner = [], []
        for i, req in enumerate(requests):
            for w in rolling_windows(self.tok_encode(req.args[0]), self.prefix_id, self.max_length):
                windows.append(w)
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, (score, _) in zip(owner, self.loglikelihood_tokens(windows)):
            totals[i] += score
        for req, res in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, res)
        return totals

    # -- generation ------------------------------------------------------------------------------------------
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy continuation of each context, cut before the first stop string (``until``) and at ``<eos>`` /
        ``<eoc>``, at most ``max_gen_toks`` tokens. Sampling arguments are ignored (greedy decoding, MM1 §3.1)."""
        jobs = []
        for req in requests:
            context, kwargs = req.args
            kwargs = dict(kwargs or {})
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.pop("max_gen_toks", self.max_gen_toks))
            if (
                kwargs.get("do_sample") or float(kwargs.get("temperature", 0.0) or 0.0) > 0
            ) and not self._warned_sampling:
                warnings.warn("TextCoreLM decodes greedily; do_sample/temperature are ignored", stacklevel=2)
                self._warned_sampling = True
            ids = [self.prefix_id, *self.tok_encode(context)]
            ids = ids[-max(1, self.max_length - max_new) :]
            jobs.append((ids, until, max_new))
        out: list[str] = [""] * len(jobs)
        order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i][0]))
        for s in range(0, len(order), self.batch_size):
            rows = order[s : s + self.batch_size]
            with _eval_mode(self.model):
                texts = self._generate_batch([jobs[i] for i in rows])
            for i, text in zip(rows, texts):
                out[i] = text
        for req, text in zip(requests, out):
            self.cache_hook.add_partial("generate_until", req.args, text)
        return out

    @torch.no_grad()
    def _generate_batch(self, jobs: list[tuple[list[int], list[str], int]]) -> list[str]:
        B, T = len(jobs), max(len(j[0]) for j in jobs)
        ids = torch.full((B, T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.long)
        for r, (p, _, _) in enumerate(jobs):
            ids[r, T - len(p) :] = torch.tensor(p)
            mask[r, T - len(p) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        generated: list[list[int]] = [[] for _ in range(B)]
        texts = [""] * B
        done = [j[2] <= 0 for j in jobs]
        last = pos[:, -1]
        for _ in range(max(j[2] for j in jobs)):
            if all(done):
                break
            nxt = out.logits[:, -1].argmax(-1)
            for r in range(B):
                if done[r]:
                    continue
                t = int(nxt[r])
                if t in self.stop_ids:
                    done[r] = True
                    continue
                generated[r].append(t)
                text = self.tokenizer.decode(generated[r], skip_special_tokens=True)
                cut = _first_stop(text, jobs[r][1])
                texts[r] = text if cut is None else text[:cut]
                done[r] = cut is not None or len(generated[r]) >= jobs[r][2]
            if all(done):
                break
            alive = torch.tensor([not d for d in done], device=self.device)
            nxt = torch.where(alive, nxt, torch.full_like(nxt, self.pad_id))
            mask = torch.cat([mask, alive.long().unsqueeze(1)], dim=1)  # finished rows stop attending
            last = last + 1
            out = self.model(
                input_ids=nxt.unsqueeze(1),
                attention_mask=mask,
                position_ids=last.unsqueeze(1),
                use_cache=True,
                **cache_kwarg(type(self.model), _returned_cache(out)),
            )
        return texts


def _returned_cache(out):
    """The KV cache a forward pass returned: ``out.cache`` in recent transformers, ``out.past_key_values`` before."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


@contextmanager
def _eval_mode(model):
    """Dropout off while scoring; the model's previous mode comes back afterwards."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def _first_stop(text: str, until: list[str]) -> int | None:
    hits = [text.find(s) for s in until if s and s in text]
    return min(hits) if hits else None


def _special_id(tokenizer, token: str) -> int | None:
    tid = tokenizer.convert_tokens_to_ids(token)
    return None if tid is None or tid == tokenizer.unk_token_id else int(tid)


# ---------------------------------------------------------------------------------------------------------------
# The world's text as lm-eval tasks
# ---------------------------------------------------------------------------------------------------------------

_Q, _A = QA_TEMPLATE.split("{question}")[0].strip(), QA_TEMPLATE.split("{question}")[1].split("{answer}")[0].strip()
_QA_RE = re.compile(rf"{re.escape(_Q)} (.+?) {re.escape(_A)} (.+?)(?= {re.escape(_Q)} |$)")
_TYPE_RES = {
    t: re.compile("^" + re.sub(r"\\\{\w+\\\}", ".+?", re.escape(tpl)) + "$") for t, tpl in QUESTION_TEMPLATES.items()
}


def question_type(question: str) -> str:
    for t, rx in _TYPE_RES.items():
        if rx.match(question):
            return t
    raise ValueError(f"question {question!r} matches none of the world's question templates")


def parse_passage(text: str) -> tuple[str, list[dict[str, str]]]:
    """A world text passage ``"<description> Question: q Answer: a Question: ..."`` -> (description, QA list)."""
    head, sep, _ = text.partition(f" {_Q} ")
    if not sep:
        return text, []
    qa = [{"question": q, "answer": a, "type": question_type(q)} for q, a in _QA_RE.findall(text[len(head) + 1 :])]
    return head, qa


def candidate_answers(world) -> dict[str, list[str]]:
    """Every answer the world's train split has per question type, sorted (digits numerically)."""
    out: dict[str, set[str]] = {}
    for s in world.samples("train"):
        for q in s["qa"]:
            out.setdefault(q["type"], set()).add(q["answer"])
    key = lambda a: (0, int(a), a) if a.isdigit() else (1, 0, a)
    return {t: sorted(v, key=key) for t, v in out.items()}


def world_text_docs(texts: Sequence[str], candidates: dict[str, list[str]]) -> list[dict[str, Any]]:
    """One document per question of each passage: passage (the description), question, answer, type, the
    candidate answers of that type (``choices``) and the index of the right one (``label``), and the full text."""
    docs = []
    for pid, text in enumerate(texts):
        passage, qa = parse_passage(text)
        for j, q in enumerate(qa):
            choices = list(candidates.get(q["type"], []))
            if q["answer"] not in choices:
                choices.append(q["answer"])
            docs.append(
                {
                    "id": f"{pid}-{j}",
                    "passage": passage,
                    "question": q["question"],
                    "answer": q["answer"],
                    "type": q["type"],
                    "choices": choices,
                    "label": choices.index(q["answer"]),
                    "text": text,
                }
            )
    return docs


def write_world_text(world, split: str, cache_dir: Path) -> Path:
    """JSONL of :func:`world_text_docs` for ``split`` (test documents) and the train split's first
    :data:`FEWSHOT_POOL` passages (few-shot pool), content-addressed under ``cache_dir/textcore``."""
    from harness.artifacts import build_once, content_hash

    key = {"world": world.hash, "split": split, "pool": FEWSHOT_POOL, "v": DATA_VERSION}
    final = Path(cache_dir) / "textcore" / f"world_text-{content_hash(key)}"

    def build(tmp: Path) -> dict:
        cands = candidate_answers(world)
        counts = {}
        for name, texts in (("test", world.texts(split)), ("train", world.texts("train")[:FEWSHOT_POOL])):
            docs = world_text_docs(texts, cands)
            with open(tmp / f"{name}.jsonl", "w") as f:
                f.writelines(json.dumps(d) + "\n" for d in docs)
            counts[name] = len(docs)
        with open(tmp / "passages.jsonl", "w") as f:
            f.writelines(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(world.texts(split)))
        return {"key": key, "docs": counts, "candidates": cands}

    return build_once(final, build, log=lambda m: None)


def render_tasks(data_dir: Path, out_dir: Path, hf_cache: Path | None = None) -> Path:
    """Copy the YAML templates of :data:`TASKS_DIR` into ``out_dir`` with the data folder (and the datasets cache)
    filled in; ``out_dir`` is then an lm-eval ``include_path``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_cache = hf_cache or (Path(data_dir).parent / "hf_datasets")
    for tpl in sorted(TASKS_DIR.glob("*.yaml")):
        text = tpl.read_text().replace(DATA_PLACEHOLDER, str(Path(data_dir).resolve()))
        (out_dir / tpl.name).write_text(text.replace(CACHE_PLACEHOLDER, str(Path(hf_cache).resolve())))
    return out_dir


# ---------------------------------------------------------------------------------------------------------------
# Running lm-eval and turning its output into record entries
# ---------------------------------------------------------------------------------------------------------------


def _set_offline() -> None:
    """Local tasks only: stop ``datasets`` / the hub client from any network call. Must run before ``datasets``
    is imported (its config reads the variables once); values the user set are kept."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _task_manager(include_path: str | None, include_defaults: bool):
    """lm-eval's task index. Its own tasks' index (~15k YAML files, seconds to build) is built once per process; an
    index over rendered local tasks is rebuilt each time, as their YAMLs may have been rendered anew."""
    from lm_eval.tasks import TaskManager

    if include_path is None and include_defaults:
        return _default_task_manager()
    return TaskManager(include_path=include_path, include_defaults=include_defaults)


@lru_cache(maxsize=1)
def _default_task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager()


def load_task_dict(tasks: Sequence[str], include_path: Path | None) -> tuple[Any, list]:
    """lm-eval's task dict for ``tasks`` (this loads their datasets) and its leaf tasks."""
    tasks = list(tasks)
    only_local = all(t in LOCAL_TASKS for t in tasks)
    if only_local:
        _set_offline()
    tm = _task_manager(str(include_path) if include_path else None, not only_local)
    if hasattr(tm, "load"):  # lm-eval >= 0.4.10: flat {"tasks", "groups", "group_map"}
        task_dict = tm.load(tasks)
        return task_dict, list(task_dict["tasks"].values())
    from lm_eval.tasks import get_task_dict  # older: a nested {name or group: task or dict}

    task_dict = get_task_dict(tasks, tm)
    return task_dict, _leaf_tasks(task_dict)


def run_lm_eval(
    lm,
    tasks: Sequence[str],
    include_path: Path | None,
    limit: int | None = None,
    num_fewshot: int | None = None,
    seed: int = 0,
    loaded: tuple[Any, list] | None = None,
) -> dict:
    """``lm_eval.evaluator.evaluate`` on ``tasks`` (local names from ``include_path``, or lm-eval's own).

    Returns lm-eval's results dict (``results``, ``n-samples``, ``samples``, ...). Leaf tasks get ``num_fewshot``
    and the few-shot sampler seed as ``simple_evaluate`` sets them (a task whose config fixes 0 shots keeps 0);
    ``simple_evaluate`` itself is not used because it also collects environment info through subprocesses.
    Stderr bootstrapping is off (see the module docstring). ``loaded``: :func:`load_task_dict`'s result for
    ``tasks``, when the caller loaded them already.
    """
    from lm_eval.evaluator import evaluate

    task_dict, leaves = loaded or load_task_dict(tasks, include_path)
    for task in leaves:
        if num_fewshot is not None and task.get_config("num_fewshot") != 0:
            task.set_config(key="num_fewshot", value=int(num_fewshot))
        elif task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=seed)
    log = logging.getLogger("lm_eval")
    level = log.level
    log.setLevel(logging.WARNING)  # lm-eval logs every request type at INFO
    try:
        return evaluate(lm=lm, task_dict=task_dict, limit=limit, bootstrap_iters=0, log_samples=True)
    finally:
        log.setLevel(level)


def _leaf_tasks(task_dict: dict) -> list:
    out = []
    for v in task_dict.values():
        out += _leaf_tasks(v) if isinstance(v, dict) else [v]
    return out


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def nan_metric(name: str) -> str:
    """The metric a task's NaN entry carries: the one the TextCore average would read (perplexity for
    ``world_textppl``, which is not averaged)."""
    return "word_perplexity" if name == "world_textppl" else PRIMARY_METRIC.get(name, "acc")


def nan_entries(name: str, shots: int, status: str, why: str) -> list[dict]:
    """Task ``name`` as one NaN entry with ``status`` (skipped: ``reason``; failed: ``error``)."""
    nan = math.nan
    return [text_entry(name, shots, nan_metric(name), nan, nan, 0)
            | {"status": status, ("reason" if status == "skipped" else "error"): why}]


def text_entry(name: str, shots: int, metric: str, value: float, stderr: float, n: int) -> dict:
    """One record entry of lm-eval task ``name`` (see the module docstring)."""
    return {"task": name, "suite": TEXTCORE_TASK, "shots": shots, "metric": metric, "subset": "all", "value": value,
            "stderr": stderr, "n": n}


def task_entries(results: dict, name: str, shots: int) -> list[dict]:
    """lm-eval's results for task ``name`` -> record entries, one per metric (see the module docstring)."""
    res = results.get("results", {}).get(name) or results.get("groups", {}).get(name)
    if res is None:
        return nan_entries(name, shots, "failed", "lm-eval returned no result for this task")
    samples = results.get("samples", {})
    n = int(results.get("n-samples", {}).get(name, {}).get("effective", 0))
    entries = []
    for key, value in res.items():
        if "," not in key or "_stderr," in key:
            continue
        metric, filt = key.split(",", 1)
        label = metric if filt == "none" else f"{metric}:{filt}"
        se = _num(res.get(f"{metric}_stderr,{filt}"))
        per_doc = [
            float(s[metric])
            for s in samples.get(name, [])
            if s.get("filter") == filt and isinstance(s.get(metric), (int, float))
        ]
        if per_doc and len(per_doc) == n and math.isclose(math.fsum(per_doc) / n, _num(value), abs_tol=1e-9):
            se = mean_result(per_doc).stderr  # a mean over documents: its standard error
        entries.append(text_entry(name, shots, label, _num(value), se, n))
    return entries


def entries_from_results(results: dict, tasks: Sequence[str], shots: int) -> list[dict]:
    """lm-eval's results -> record entries (per task x metric, plus the TextCore average); see module docstring."""
    entries = [e for name in tasks for e in task_entries(results, name, shots)]
    return entries + (textcore_averages(entries) or [textcore_average([], shots)])


def write_samples(results: dict, tasks: Sequence[str], pred_dir: Path, shots: int) -> None:
    """lm-eval's per-document log -> ``predictions/textcore_<task>_<k>shot.jsonl`` (prompt, target, responses)."""
    pred_dir.mkdir(parents=True, exist_ok=True)
    for name in tasks:
        rows = results.get("samples", {}).get(name, [])
        with open(pred_dir / f"textcore_{name}_{shots}shot.jsonl", "w") as f:
            for s in rows:
                keep = {k: s.get(k) for k in ("doc_id", "target", "filter", "filtered_resps")}
                args = s.get("arguments") or []
                keep["prompt"] = args[0][0] if args and args[0] else None  # the first request's context
                keep |= {k: v for k, v in s.items() if isinstance(v, (int, float, bool)) and k != "doc_id"}
                f.write(json.dumps(keep, default=str) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# Which tasks can run: known names, data available offline
# ---------------------------------------------------------------------------------------------------------------


def _task_cfg(tm, name: str) -> dict:
    entry = (getattr(tm, "task_index", None) or {}).get(name)
    cfg = getattr(entry, "cfg", None) if entry is not None and not isinstance(entry, dict) else (entry or {}).get("cfg")
    return cfg if isinstance(cfg, dict) else {}


def unavailable_reason(name: str, loaded: dict | None = None) -> str | None:
    """None when lm-eval task ``name`` can run here (a local task, or one whose data loads from the local datasets
    cache), else one line saying why not and how to cache its data. Loads the task offline (``HF_DATASETS_OFFLINE``
    and ``HF_HUB_OFFLINE`` default to 1, as in a run); with ``loaded``, the loaded task dict is stored there under
    ``name`` so the evaluation does not load it twice."""
    if name in LOCAL_TASKS:
        return None
    if not lm_eval_available() or _LMBase is object:
        return LM_EVAL_MISSING
    _set_offline()
    tm = _task_manager(None, True)
    try:
        got = load_task_dict([name], None)
    except Exception as err:  # noqa: BLE001 - any load failure (offline hub, missing cache, bad config) skips it
        cfg = _task_cfg(tm, name)
        fix = ""
        if cfg.get("dataset_path"):
            args = ", ".join(repr(a) for a in (cfg["dataset_path"], cfg.get("dataset_name")) if a)
            kw = "".join(f", {k}={v!r}" for k, v in (cfg.get("dataset_kwargs") or {}).items())
            fix = (f"; cache its data once with network: HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 python -c "
                   f"\"import datasets; datasets.load_dataset({args}{kw})\", then score it with python -m "
                   f"harness.evaluate <run> --retry-skipped")
        return f"its data cannot be loaded here ({_first_line(err)}){fix}"
    if loaded is not None:
        loaded[name] = got
    return None


def check_text_tasks(tasks: Sequence[str]) -> tuple[list[str], list[str]]:
    """(problems, notes) for ``eval.text_tasks``, one line each: a name neither local nor in lm-eval's index is a
    problem (with did-you-mean); a task whose data is not available offline, or every task when lm-eval is not
    installed, is a note: it will be recorded as skipped."""
    tasks = list(tasks)
    if not tasks:
        return [], []
    if not lm_eval_available() or _LMBase is object:
        return [], [f"eval.text_tasks: {', '.join(tasks)} will be skipped (NaN): {LM_EVAL_MISSING}"]
    problems, notes = [], []
    standard = [t for t in tasks if t not in LOCAL_TASKS]
    if standard:
        import difflib

        _set_offline()
        known = set(_task_manager(None, True).all_tasks)
        for name in standard:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known | set(LOCAL_TASKS)), n=3, cutoff=0.6)
                hint = f" Did you mean: {', '.join(close)}?" if close else ""
                problems.append(f"eval.text_tasks: unknown lm-eval task '{name}'.{hint} Give a local task "
                                f"({', '.join(LOCAL_TASKS)}) or a name from `lm-eval ls tasks`")
            elif (why := unavailable_reason(name)) is not None:
                notes.append(f"eval.text_tasks: {name} will be skipped (NaN, status skipped): {why}")
    return problems, notes


# ---------------------------------------------------------------------------------------------------------------
# The Evaluator's TextCore units
# ---------------------------------------------------------------------------------------------------------------


def evaluate_text_task(vlm, world, cfg, name: str, out_dir: Path, seed: int, cache_dir: Path | None = None,
                       include: Path | None = None) -> list[dict]:
    """One TextCore unit: task ``name``'s entries (no average), or its skipped entry when it cannot run here.
    ``include``: the rendered local task folder, when a previous unit rendered it."""
    shots = int(cfg.text_num_fewshot)
    if not lm_eval_available() or _LMBase is object:
        return nan_entries(name, shots, "skipped", LM_EVAL_MISSING)
    loaded: dict = {}
    if (why := unavailable_reason(name, loaded)) is not None:
        print(f"[eval] text:{name} skipped: {why}", flush=True)
        return nan_entries(name, shots, "skipped", why)
    if name in LOCAL_TASKS and include is None:
        include = local_tasks_dir(world, cfg, out_dir, cache_dir)
    lm = TextCoreLM.from_vlm(vlm, batch_size=cfg.text_batch_size)
    limit = cfg.text_limit if cfg.text_limit and cfg.text_limit > 0 else None
    results = run_lm_eval(lm, [name], include, limit=limit, num_fewshot=shots, seed=seed, loaded=loaded.get(name))
    write_samples(results, [name], out_dir / "predictions", shots)
    return task_entries(results, name, shots)


def local_tasks_dir(world, cfg, out_dir: Path, cache_dir: Path | None = None) -> Path:
    """The world's text written (cached) and the local task YAMLs rendered for it: lm-eval's include path."""
    data = write_world_text(world, cfg.split, Path(cache_dir) if cache_dir is not None else out_dir / "cache")
    return render_tasks(data, out_dir / "textcore_tasks")


def evaluate_textcore(vlm, world, cfg, out_dir: Path, seed: int, cache_dir: Path | None = None) -> list[dict]:
    """Every task of ``cfg.text_tasks`` (:func:`evaluate_text_task`, each failure its own NaN entry) and the
    TextCore average."""
    tasks = list(cfg.text_tasks)
    if not tasks:
        return []
    entries, include = [], None
    for name in tasks:
        try:
            if name in LOCAL_TASKS and include is None and lm_eval_available():
                include = local_tasks_dir(world, cfg, out_dir, cache_dir)
            entries += evaluate_text_task(vlm, world, cfg, name, out_dir, seed, cache_dir, include)
        except Exception as err:  # noqa: BLE001 - one task's failure leaves the others' scores
            entries += nan_entries(name, int(cfg.text_num_fewshot), "failed", _first_line(err))
    return entries + textcore_averages(entries)
