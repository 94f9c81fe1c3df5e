"""``python -m harness.bench probe-vlm``: does the VLM learn one question type from dense supervision, and does it
read a connector that already computes the answer?

The third rung of the diagnosis of a per-type VQA score at the majority answer (``probe_encoder`` and
``probe_connector`` in this package are the first two: the frozen features, then the connector trained directly on the
attribute). Here the whole VLM,
the sweep's own encoder -> connector -> LM, trains on the world's questions of ONE type, ``batch_size`` of them per
step (the default mixture holds about 7 of each type per step), and is scored every ``eval_every`` steps. The
connector starts either

* ``fresh``: as the sweep starts it (freshly initialised), so the curve shows whether the connector learns the
  attribute *through* the LM's next-token loss; or
* ``mean`` / ``flat``: trained first by ``probe-connector`` with that readout on the same attribute (the head is
  dropped), so the curve shows whether the LM *reads* visual tokens that already carry the answer.

With ``connector_lr`` 0 the connector stays as it starts (a frozen reader test); with ``llm_lr`` 0 the LM does.
Training sequences are the sweep's VQA lines (``<bos> <image> x M Question: .. Answer: ..<eoc>``) with the loss on
every text token, as in the sweep's documents. AdamW at constant rates (no schedule: the curve shows the rates the
sweep starts its decay from), the sweep's weight decay and gradient clipping. Each step is the sweep's own,
:func:`harness.train.loop.train_step` (collate, forward, backward, clip, AdamW step); what this module adds around it
is the data (one question type) and the constant rates, which is why it does not run ``harness.train.loop.train``
itself: that loop samples the configured mixture and decays the rates.

How far the probe is from the sweep's data is set by three options, each one step closer: ``--images-per-doc k``
trains on documents of k image-question pairs (the sweep's themed documents), ``--all-types`` on every question type
at once (scoring still only the one asked for), ``--n-train n`` on the first n questions of each type (the themed
documents hold about a thousand per type). ``docs/embedded_default.md`` uses them to place the split-dot control.

Scoring is closed-set and teacher-forced: every answer seen in training for the type is scored by the summed
log-likelihood of its tokens (and ``<eoc>``) after the question, and the best one is the prediction. This separates
what the model knows from how it decodes (answers such as "top" and "top left" share their first token, so a
first-token argmax would not). ``single_object`` keeps only one-object scenes, where no referent has to be bound
("the red object"), as ``probe-connector`` does for colour, shape and position.

Shapes: images ``[B]`` -> visual tokens ``[B, M, d]``, repeated per candidate ``[B * K, M, d]`` -> answer
log-likelihoods ``[B, K]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import torch

from harness.data.sequences import IGNORE, SequenceBuilder, collate
from harness.data.sources import Chunk, Example
from harness.diagnostics.probe_connector import ATTRIBUTES as CONNECTOR_ATTRIBUTES
from harness.diagnostics.probe_connector import READOUTS, fit_connector_probe, probe_labels
from harness.diagnostics.probe_encoder import add_run_args, encode_labels, frozen_run
from harness.models.vlm import VLM, VisualInputs
from harness.train.loop import StepPlan, train_step
from harness.world.language import QUESTION_TYPES, qa_line, qa_prompt

STARTS: tuple[str, ...] = ("fresh", *READOUTS)
Item = tuple[int, str, str]  # (image index in its split, question, answer)


def question_items(samples: list[dict], question: str, single_object: bool = False) -> list[Item]:
    """Every question of type ``question`` in ``samples``, optionally only those about one-object scenes."""
    if question not in QUESTION_TYPES:
        raise ValueError(f"unknown question type '{question}'; available: {', '.join(QUESTION_TYPES)}")
    return [(i, q["question"], q["answer"]) for i, s in enumerate(samples)
            if not single_object or len(s["objects"]) == 1 for q in s["qa"] if q["type"] == question]


def _encode(builder: SequenceBuilder, items: list[Item], answer_only: bool):
    """The VQA lines of ``items``; ``answer_only`` masks the question, so the labels hold the answer and ``<eoc>``."""
    return [builder.encode(Example("probe-vlm", [Chunk(i, qa_line(q, a), len(qa_prompt(q)) if answer_only else 0)]))
            for i, q, a in items]


def _encode_docs(builder: SequenceBuilder, docs: list[list[Item]]):
    """Each list of items as one interleaved document (image, its QA line, next image, ...), loss on every text
    token, the layout of the sweep's themed documents (harness.world.language.make_docs)."""
    return [builder.encode(Example("probe-vlm", [Chunk(i, qa_line(q, a)) for i, q, a in doc])) for doc in docs]


@torch.no_grad()
def answer_scores(vlm: VLM, builder: SequenceBuilder, get: Callable[[list[int]], VisualInputs], items: list[Item],
                  candidates: list[str], batch_size: int = 64) -> torch.Tensor:
    """``[len(items), K]`` summed log-likelihood of each candidate answer (its tokens and ``<eoc>``) after each
    item's question, teacher-forced. Visual tokens are computed once per image and repeated for the K candidates."""
    K, out, was_training = len(candidates), [], vlm.training
    vlm.eval()
    for s in range(0, len(items), batch_size):
        chunk = items[s : s + batch_size]
        visual = vlm.visual_tokens(get([i for i, _, _ in chunk])).repeat_interleave(K, dim=0)
        b = collate(_encode(builder, [(i, q, a) for i, q, _ in chunk for a in candidates], answer_only=True),
                    vlm.tokenizer.pad_token_id)
        logits = vlm.lm(inputs_embeds=vlm.embed(b["input_ids"], visual), attention_mask=b["attention_mask"],
                        use_cache=False).logits[:, :-1].float()
        labels = b["labels"][:, 1:]
        hit = labels != IGNORE
        logp = torch.log_softmax(logits, -1).gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        out.append((logp * hit).sum(-1).view(len(chunk), K))
    vlm.train(was_training)
    return torch.cat(out)


def evaluate(vlm: VLM, builder: SequenceBuilder, get: Callable[[list[int]], VisualInputs], items: list[Item],
             candidates: list[str]) -> dict:
    pred = answer_scores(vlm, builder, get, items, candidates).argmax(-1).tolist()
    guesses = [candidates[k] for k in pred]
    return {"accuracy": float(np.mean([g == a for g, (_, _, a) in zip(guesses, items, strict=True)])),
            "distinct_predictions": len(set(guesses))}


def start_connector(vlm: VLM, start: str, attribute: str, get_train, train_samples: list[dict], get_test,
                    test_samples: list[dict], steps: int, seed: int) -> dict | None:
    """Leave the connector fresh, or train it first, in place, by ``probe-connector`` with readout ``start`` (returns
    that fit's row; its head is dropped)."""
    if start not in STARTS:
        raise ValueError(f"unknown start '{start}'; available: {', '.join(STARTS)}")
    if start == "fresh":
        return None
    tr_idx, y_tr = probe_labels(train_samples, attribute)
    te_idx, y_te = probe_labels(test_samples, attribute)
    return fit_connector_probe(vlm.connector, get_train, tr_idx, y_tr, get_test(te_idx), y_te, start, steps, seed=seed)


def train_one_type(vlm: VLM, builder: SequenceBuilder, get_train, train_items: list[Item], get_test,
                   test_items: list[Item], steps: int, eval_every: int, connector_lr: float, llm_lr: float,
                   batch_size: int = 32, weight_decay: float = 0.0, grad_clip: float = 0.0, seed: int = 0,
                   log: Callable[[str], None] = print, images_per_doc: int = 1,
                   candidates: list[str] | None = None) -> list[dict]:
    """Train on ``train_items`` only; one row per evaluation (step 0 first): accuracy, distinct predictions and the
    mean training loss since the previous row. A rate of 0 keeps that part frozen. With ``images_per_doc`` k > 1,
    each training sequence is a document of k such items, as in the sweep's interleaved data (``batch_size``
    documents per step, so k times the questions); scoring stays one image per question, as the sweep evaluates."""
    candidates = candidates or sorted({a for _, _, a in train_items})  # default: every answer seen in training
    rates = {name: lr for name, lr in (("connector", connector_lr), ("llm", llm_lr)) if lr > 0}
    vlm.set_trainable(list(rates))
    vlm.train()
    parts = {"connector": vlm.connector, "llm": vlm.lm}
    groups = [{"params": [p for p in parts[n].parameters() if p.requires_grad], "lr": lr, "name": n}
              for n, lr in rates.items()]
    opt = torch.optim.AdamW(groups, weight_decay=weight_decay, betas=(0.9, 0.95)) if groups else None
    rng = np.random.default_rng(seed)
    losses, t0 = [], time.time()

    def score(step: int) -> dict:
        row = {"step": step, **evaluate(vlm, builder, get_test, test_items, candidates),
               "train_loss": float(np.mean(losses)) if losses else float("nan"), "wall_s": time.time() - t0}
        losses.clear()
        log(f"[probe-vlm] step {step:5d} accuracy {row['accuracy']:.3f}  distinct answers "
            f"{row['distinct_predictions']}/{len(candidates)}  train loss {row['train_loss']:.3f}  {row['wall_s']:.0f} s")
        return row

    rows = [score(0)]
    if opt is None:
        log("[probe-vlm] both rates are 0: nothing trains, the step-0 score is the result")
        return rows
    plan, bank = StepPlan(pad=vlm.tokenizer.pad_token_id), SimpleNamespace(get=get_train)  # what train_step reads
    device = next(vlm.lm.parameters()).device
    for step in range(1, steps + 1):
        pick = [train_items[k] for k in rng.integers(len(train_items), size=batch_size * images_per_doc)]
        batch = (_encode(builder, pick, answer_only=False) if images_per_doc == 1 else
                 _encode_docs(builder, [pick[d::batch_size] for d in range(batch_size)]))  # fmt: skip
        loss, _ = train_step(vlm, batch, bank, device, plan, opt, grad_clip)
        losses.append(loss)
        if step % eval_every == 0 or step == steps:
            rows.append(score(step))
    return rows


def majority(train_items: list[Item], test_items: list[Item]) -> float:
    """Accuracy on the test items of the most common training answer (the probes' own baseline)."""
    return encode_labels([a for _, _, a in train_items], [a for _, _, a in test_items])[3]["majority_baseline"]


# -- command line: python -m harness.bench probe-vlm --question shape [options] [hydra overrides] --------------------
def add_parser(sub) -> None:
    c = sub.add_parser("probe-vlm", help="train the VLM on one question type; does it learn it, and does it read a "
                                         "connector trained on it first?")
    c.add_argument("--question", required=True, help=f"question type, one of {', '.join(QUESTION_TYPES)}")
    c.add_argument("--start", default="fresh", help=f"the connector at the start: {', '.join(STARTS)} (fresh, or "
                                                    "trained first by probe-connector with that readout)")
    c.add_argument("--single-object", action="store_true", help="only questions about one-object scenes")
    c.add_argument("--steps", type=int, default=1000)
    c.add_argument("--eval-every", type=int, default=200)
    c.add_argument("--batch-size", type=int, default=32)
    c.add_argument("--images-per-doc", type=int, default=1,
                   help="train on interleaved documents of this many image-question pairs (the sweep's layout); "
                        "scoring stays one image per question")
    c.add_argument("--connector-lr", type=float, default=None, help="default: the train config's first stage lr; "
                                                                    "0 freezes the connector")
    c.add_argument("--llm-lr", type=float, default=None, help="default: the first stage's llm_lr; 0 freezes the LM")
    c.add_argument("--probe-steps", type=int, default=1500, help="probe-connector steps for --start mean/flat")
    c.add_argument("--n-test", type=int, default=600, help="test questions scored (the first n)")
    c.add_argument("--all-types", action="store_true",
                   help="train on the questions of every type (scoring still only --question's): does the type hold "
                        "up when the LM learns the others beside it?")
    c.add_argument("--n-train", type=int, default=0, help="train on the first n questions of each type only (0: "
                                                          "all); the sweep's themed documents hold about 1000 per type")
    add_run_args(c, "connector=mining resolution=128")


def bench_vlm_probe(args) -> dict:
    from harness.data.features import bank_for

    if args.start not in STARTS:  # before the (slow) build
        raise SystemExit(f"unknown --start '{args.start}'; available: {', '.join(STARTS)}")
    if args.question not in QUESTION_TYPES:
        raise SystemExit(f"unknown --question '{args.question}'; available: {', '.join(QUESTION_TYPES)}")
    if args.start != "fresh" and args.question not in CONNECTOR_ATTRIBUTES:
        raise SystemExit(f"--start {args.start} trains the connector on '{args.question}' first, which probe-connector "
                         f"cannot label; it can for: {', '.join(CONNECTOR_ATTRIBUTES)} (or use --start fresh)")
    if args.images_per_doc < 1 or args.n_train < 0:
        raise SystemExit(f"--images-per-doc must be >= 1 and --n-train >= 0, got {args.images_per_doc} and "
                         f"{args.n_train}")
    cfg, world, vlm, cache, threads = frozen_run(args.overrides, args.threads, args.seed)
    torch.manual_seed(cfg.seed)
    train_s, test_s = world.samples("train"), world.samples("test")
    def first_n(items: list[Item]) -> list[Item]:
        return items[: args.n_train] if args.n_train > 0 else items

    train_items = first_n(question_items(train_s, args.question, args.single_object))
    test_items = question_items(test_s, args.question, args.single_object)[: args.n_test]
    if not train_items or not test_items:
        raise SystemExit(f"no '{args.question}' questions in the {'train' if not train_items else 'test'} split of "
                         f"world '{cfg.world.name}'" + (" with one object" if args.single_object else ""))
    candidates = sorted({a for _, _, a in train_items})  # scored among the type's own answers
    base = majority(train_items, test_items)
    if args.all_types:
        train_items = [it for t in world.question_types() for it in first_n(question_items(train_s, t,
                                                                                           args.single_object))]
    stage = cfg.train.stages[0]
    connector_lr = stage.lr if args.connector_lr is None else args.connector_lr
    llm_lr = stage.llm_lr if args.llm_lr is None else args.llm_lr
    train_bank, test_bank = bank_for(vlm, world, "train", cache), bank_for(vlm, world, "test", cache)
    print(f"[probe-vlm] {args.question} questions ({len(train_items)} train, {len(test_items)} test"
          f"{', one-object scenes' if args.single_object else ''}); {cfg.connector.name} on {cfg.encoder.name} at "
          f"{cfg.resolution} px, connector {args.start} at lr {connector_lr:g}, LM lr {llm_lr:g}", flush=True)
    started = start_connector(vlm, args.start, args.question, train_bank.get, train_s, test_bank.get, test_s,
                              args.probe_steps, cfg.seed)
    if started:
        print(f"[probe-vlm] connector trained first by probe-connector ({args.start}): accuracy "
              f"{started['accuracy']:.3f} (majority {started['majority_baseline']:.3f})", flush=True)
    builder = SequenceBuilder(vlm.tokenizer, vlm.num_visual_tokens, cfg.data.max_len)
    print(f"[probe-vlm] majority answer baseline {base:.3f}", flush=True)
    rows = train_one_type(vlm, builder, train_bank.get, train_items, test_bank.get, test_items, args.steps,
                          args.eval_every, connector_lr, llm_lr, args.batch_size, cfg.train.weight_decay,
                          cfg.train.grad_clip, cfg.seed, log=lambda line: print(line, flush=True),
                          images_per_doc=args.images_per_doc, candidates=candidates)
    return {"benchmark": "probe-vlm", "threads": threads, "overrides": list(args.overrides),
            "question": args.question, "all_types": args.all_types, "single_object": args.single_object,
            "start": args.start,
            "start_probe": started, "connector": cfg.connector.name, "encoder": cfg.encoder.name,
            "resolution": cfg.resolution, "visual_tokens": vlm.num_visual_tokens, "connector_lr": connector_lr,
            "llm_lr": llm_lr, "batch_size": args.batch_size, "images_per_doc": args.images_per_doc,
            "n_train_per_type": args.n_train or None,
            "steps": args.steps, "seed": cfg.seed,
            "n_train": len(train_items), "n_test": len(test_items), "answers": len(candidates),
            "majority_baseline": base, "rows": rows}
