"""``python -m harness.bench eval``: batched KV-cache decoding against transformers' ``generate``, one prompt at a time.

What is measured: samples per second of greedy answer generation on the evaluation's own prompts, two ways on the
same model and the same prompts:

- ``batched``: the harness's path, :meth:`Evaluator.generate_ids` (prompts sorted by length, ``eval.batch_size``
  per batch, left padding, one KV cache per batch, :func:`harness.eval.generate.greedy_generate`);
- ``one_by_one``: the path the harness would take without it, each prompt alone through transformers'
  ``generate`` on the language model (greedy, its own KV cache), the visual tokens spliced into ``inputs_embeds``
  by ``VLM.embed``.

The model is built on the CPU as a sweep point builds it (``harness.models.build.build_vlm``: the cached pre-trained
backbones and a freshly initialised connector, no VLM training). Speed per token does not depend on training; answer lengths do, so
an untrained connector's answers may be longer or shorter than a trained point's.

Why the comparison is fair: both sides use one model, one
thread count (``--threads``, set before either runs), the prompts the evaluation runner builds (the first ``--n``
queries of each task at each k in ``--shots``, trial 0: ``Evaluator.task_prompts``), the same visual tokens (the
runner's feature-bank lookup plus connector, inside the timed region on both sides), the same budget
(``eval.max_new_tokens_*``) and the same stop rule (the runner's stop ids, ``<eoc>`` and ``<eos>``, handed to
``generate`` as its ``eos_token_id``). One untimed warm-up call per side loads the feature banks and the kernels
first. Timings are wall clock (the ratio) and this process's CPU time (``cpu_ratio``: with one thread, the time
actually spent computing, so less disturbed by other jobs on a shared machine); the identity check is exact.

Identity: greedy decoding is deterministic, so both sides must produce the same answers. Compared are the raw token
ids up to the first stop token (the stop token itself excluded on both sides) and the text after the runner's
post-processing; the result counts the mismatches and shows the first few. A mismatch means the batched path
(padding, positions, cache) disagrees with the reference, or, rarely, that two logits tie to within float rounding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and the models load only when this benchmark runs, not for every `harness.bench` command
    from harness.data.sequences import Encoded
    from harness.eval.runner import Evaluator

MAX_EXAMPLES = 5  # mismatching samples shown in the result


@dataclass
class Point:
    """The first n prompts of one (task, k) as the runner builds them (trial 0)."""

    task: str
    k: int
    queries: list[dict]
    prompts: list[Encoded]
    max_new: int


def eval_points(ev: Evaluator, n: int, shots: list[int]) -> list[Point]:
    points = []
    for task in ev.cfg.tasks:
        for k in shots:
            queries, prompts = ev.task_prompts(task, k, trial=0)
            points.append(Point(task, k, queries[:n], prompts[:n], ev.max_new_tokens(task)))
    return points


def until_stop(ids: list[int], stop_ids: set[int]) -> list[int]:
    """``ids`` cut before the first stop token."""
    return next((ids[:i] for i, t in enumerate(ids) if t in stop_ids), ids)


def one_by_one(ev: Evaluator, prompts: list[Encoded], max_new: int) -> list[list[int]]:
    """Each prompt alone through ``transformers`` ``generate`` -> its new token ids up to the stop token."""
    import torch

    vlm = ev.vlm
    dev = next(vlm.lm.parameters()).device
    stop = sorted(ev.stop_ids)
    out = []
    with torch.no_grad():
        for p in prompts:
            ids = torch.tensor([p.ids], device=dev)
            emb = vlm.embed(ids, ev.prompt_visual([p]))
            # With inputs_embeds and no input_ids, a decoder-only model's generate returns the new tokens only.
            gen = vlm.lm.generate(inputs_embeds=emb, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                                  do_sample=False, num_beams=1, eos_token_id=stop,
                                  pad_token_id=vlm.tokenizer.pad_token_id)
            out.append(until_stop(gen[0].tolist(), ev.stop_ids))
    return out


def _timed(fn, *args) -> tuple[list[list[int]], float, float]:
    """``fn(*args)``, its wall time and this process's CPU time (less sensitive to other jobs on the machine)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - t, time.process_time() - c


def compare(ev: Evaluator, n: int, shots: list[int]) -> dict:
    """Both paths on the first ``n`` prompts per task and k -> per-point rows, totals and mismatches."""
    from harness.eval.runner import _postprocess

    points = eval_points(ev, n, shots)
    warm = max(points, key=lambda pt: pt.k)  # the most images per prompt: touches both feature banks
    ev.generate_ids(warm.prompts[:1], 2)
    one_by_one(ev, warm.prompts[:1], 2)
    decode = lambda ids: ev.vlm.tokenizer.decode(ids, skip_special_tokens=True)
    rows, examples = [], []
    mism_ids = mism_text = 0
    for pt in points:
        batched, t_b, c_b = _timed(ev.generate_ids, pt.prompts, pt.max_new)
        single, t_s, c_s = _timed(one_by_one, ev, pt.prompts, pt.max_new)
        bad_ids = bad_text = 0
        for i, (a, b) in enumerate(zip(batched, single)):
            ta, tb = _postprocess(decode(a), pt.task), _postprocess(decode(b), pt.task)
            bad_ids += a != b
            bad_text += ta != tb
            if (a != b or ta != tb) and len(examples) < MAX_EXAMPLES:
                examples.append({"task": pt.task, "shots": pt.k, "index": i, "prompt": pt.queries[i]["prompt"],
                                 "batched": ta, "one_by_one": tb, "batched_ids": a, "one_by_one_ids": b})
        mism_ids += bad_ids
        mism_text += bad_text
        rows.append({"task": pt.task, "shots": pt.k, "n": len(pt.prompts), "max_new_tokens": pt.max_new,
                     "mean_prompt_len": sum(len(p.ids) for p in pt.prompts) / max(1, len(pt.prompts)),
                     "mean_new_tokens": sum(map(len, batched)) / max(1, len(batched)),
                     "batched_s": t_b, "one_by_one_s": t_s, "batched_cpu_s": c_b, "one_by_one_cpu_s": c_s,
                     "batched_samples_per_s": len(pt.prompts) / t_b,
                     "one_by_one_samples_per_s": len(pt.prompts) / t_s, "speedup": t_s / t_b,
                     "mismatched_ids": bad_ids, "mismatched_text": bad_text})
        print(f"[bench] {pt.task:7s} {pt.k}-shot n={len(pt.prompts):3d}  batched {rows[-1]['batched_samples_per_s']:7.1f}"
              f"/s  one-by-one {rows[-1]['one_by_one_samples_per_s']:6.1f}/s  x{rows[-1]['speedup']:.1f}  "
              f"mismatches {bad_ids} ids / {bad_text} text", flush=True)
    total = sum(r["n"] for r in rows)
    t_b, t_s = sum(r["batched_s"] for r in rows), sum(r["one_by_one_s"] for r in rows)
    c_b, c_s = sum(r["batched_cpu_s"] for r in rows), sum(r["one_by_one_cpu_s"] for r in rows)
    return {"samples": total, "batched_samples_per_s": total / t_b, "one_by_one_samples_per_s": total / t_s,
            "ratio": t_s / t_b, "cpu_ratio": c_s / c_b, "mismatched_ids": mism_ids, "mismatched_text": mism_text,
            "mismatch_examples": examples, "rows": rows}


def bench_eval(args) -> dict:
    import torch
    from omegaconf import OmegaConf

    from harness.config.store import compose_sweep
    from harness.eval.runner import Evaluator
    from harness.models.build import build_vlm
    from harness.runtime import seed_everything, set_offline, set_threads

    set_offline()
    threads = set_threads(args.threads)
    shots = [int(k) for k in args.shots.split(",")]
    cfg = compose_sweep(args.overrides)
    seed_everything(cfg.seed)
    world, vlm, _ = build_vlm(cfg, torch.device("cpu"))
    # As after training: a frozen encoder, so both sides read the visual features from the feature bank
    vlm.requires_grad_(False).eval()
    # max_images = n: the first n test images hold the first n caption queries and at least n VQA ones
    ecfg = OmegaConf.merge(cfg.eval, {"max_images": args.n, "shots": shots,
                                      "batch_size": args.batch_size or cfg.eval.batch_size})
    cache = Path(cfg.paths.cache_dir).expanduser() if cfg.runtime.feature_cache else None
    ev = Evaluator(vlm, world, ecfg, Path(args.out), cfg.seed, cache)  # writes nothing: only Evaluator.run() does
    print(f"[bench] eval: n={args.n} per task and k, shots={shots}, batch {ecfg.batch_size}, {threads} thread(s)",
          flush=True)
    result = compare(ev, args.n, shots)
    print(f"[bench] batched {result['batched_samples_per_s']:.1f} samples/s, one by one "
          f"{result['one_by_one_samples_per_s']:.1f} samples/s: x{result['ratio']:.1f} (issue goal >= 5; CPU time "
          f"x{result['cpu_ratio']:.1f}); "
          f"{result['mismatched_ids']} mismatched token sequences, {result['mismatched_text']} mismatched answers "
          f"of {result['samples']}", flush=True)
    return {"benchmark": "eval", "threads": threads, "n": args.n, "shots": shots, "batch_size": ecfg.batch_size,
            "tasks": list(ecfg.tasks), "overrides": list(args.overrides), **result}


def add_parser(sub) -> None:
    c = sub.add_parser("eval", help="batched KV-cache greedy decoding vs. transformers generate, one prompt at a time")
    c.add_argument("--n", type=int, default=64, help="prompts per task and k (the first n of the test split)")
    c.add_argument("--shots", default="0,4", help="comma-separated k")
    c.add_argument("--batch-size", type=int, default=0, help="batched side's batch (default: eval.batch_size)")
    c.add_argument("--threads", type=int, default=1,
                   help="torch threads for both sides (default 1: what each point of a local parallel sweep gets; "
                        "on a busy 2-core machine, 2 threads mostly measure waiting for the other thread)")
    c.add_argument("--out", default="results/bench")
    c.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. connector=avg_pool")
