"""The training loop: stages, each with its trainable parts, mixture and learning rates.

Per stage: freeze per ``stage.trainable`` -> AdamW with one param group per rate (connector, and the encoder unless it
has its own ``encoder_lr``, at ``lr``; LLM at ``llm_lr``) -> linear warm-up + cosine decay to 10% (MM1 §3.4's schedule
shape, ``harness.train.schedule.warmup_cosine``) -> ``steps`` steps of ``batch_size`` examples sampled from the
mixture, each one :func:`train_step`. A non-finite loss stops the run with ``DivergenceError``: a result from a
diverged run is never recorded as ok.

Checkpoints (``harness.train.checkpoint``) are written every ``runtime.checkpoint_every`` steps, after the last step,
and at the end of the step in which a stop signal arrived; ``train(..., resume=state)`` continues from one and gives
the same losses, batches and weights as a run that was never interrupted.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from harness.data.corpus import Corpus
from harness.data.features import FeatureBank
from harness.data.mixture import Mixture
from harness.data.sequences import IGNORE, Encoded, SequenceBuilder, collate, pack, padding_fraction
from harness.models.vlm import VLM
from harness.models.weights import load_weights, trained_modules, weights
from harness.progress import HEARTBEAT_S, note, progress
from harness.train import checkpoint, distributed
from harness.train.checkpoint import Checkpointer, StopSignals
from harness.train.schedule import warmup_cosine

TOTALS = ("steps", "sequences", "images", "tokens", "loss_tokens")


class DivergenceError(RuntimeError):
    """A non-finite loss; ``info`` holds the diagnostic stored in the record (stage, step, losses, lr, checkpoint)."""

    def __init__(self, message: str, info: dict):
        super().__init__(message)
        self.info = info


@dataclass
class Progress:
    """Where training stands, with its running bookkeeping; saved in every checkpoint."""

    stage: int = 0  # index into cfg.train.stages
    step: int = 0  # steps done in that stage
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOTALS, 0))
    losses: list[float] = field(default_factory=list)  # this stage's per-step losses
    stages: list[dict] = field(default_factory=list)  # summaries of the finished stages
    last_loss: float | None = None  # the newest finite loss, for the divergence diagnostic
    stage_wall_s: float = 0.0
    wall_s: float = 0.0
    log_bytes: int = 0  # length of the train log when the checkpoint was written
    window_counts: dict[str, int] = field(default_factory=dict)  # mixture draws as of the last log line
    padding: list[float] = field(default_factory=list)  # this stage's per-step padding fraction (this process)


def _param_groups(vlm: VLM, stage) -> list[dict]:
    def trained(*modules) -> list:
        return [p for m in modules for p in m.parameters() if p.requires_grad]

    groups = []
    slow = trained(vlm.lm)
    if stage.encoder_lr is None:  # one group, as before encoder_lr existed (names and order kept for old checkpoints)
        fast = trained(vlm.connector, vlm.encoder)
        if fast:
            groups.append({"params": fast, "lr": stage.lr, "name": "connector+encoder"})
    else:
        for params, lr, name in ((trained(vlm.connector), stage.lr, "connector"),
                                 (trained(vlm.encoder), stage.encoder_lr, "encoder")):
            if params:
                groups.append({"params": params, "lr": lr, "name": name})
    if slow:
        groups.append({"params": slow, "lr": stage.llm_lr, "name": "llm"})
    if not groups:
        raise ValueError(f"stage '{stage.name}' trains nothing (trainable={list(stage.trainable)})")
    return groups


def length_grouped(examples: list, builder: SequenceBuilder, batch_size: int, rng: np.random.Generator) -> list:
    """Encode a pool of examples, sort by length, cut into batches, shuffle batch order.

    Captions (~40 tokens) and interleaved documents (~130) padded into one batch waste half of every step; grouping
    a pool of several batches by length removes most padding (HF Trainer's ``group_by_length``). The mixture is
    unchanged over the pool; only which examples share a step changes.
    """
    enc = sorted((builder.encode(e) for e in examples), key=lambda e: len(e.ids))
    batches = [enc[i : i + batch_size] for i in range(0, len(enc), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def train(
    vlm: VLM,
    corpus: Corpus,
    data_cfgs: dict,
    cfg,
    seed: int,
    device: torch.device,
    log_path: Path,
    bank: FeatureBank,
    ckpt: Checkpointer,
    log_every: int = 50,
    resume: dict | None = None,
    dist_env: distributed.DistEnv | None = None,
    tracker=None,
) -> dict:
    """Run every stage of ``cfg.train`` on features from ``bank`` (``bank_for(vlm, corpus, "train", cache)``),
    checkpointing through ``ckpt``; returns the training summary stored in the record. ``resume``: a state from
    ``ckpt.load()`` to continue from. ``dist_env``: this process's rank in a multi-process job (see
    harness.train.distributed); only rank 0 writes the log and checkpoints. ``tracker``: rank 0's experiment trackers
    (harness.tracking), sent each train log line."""
    env = dist_env or distributed.DistEnv()
    builder = SequenceBuilder(vlm.tokenizer, vlm.num_visual_tokens, data_cfgs["__run__"].max_len)
    rng = np.random.default_rng(seed)
    max_len = data_cfgs["__run__"].max_len
    plan = StepPlan(pad=vlm.tokenizer.pad_token_id, accum=cfg.runtime.grad_accum,
                    pack_len=max_len if cfg.runtime.packing else 0, bf16=cfg.train.get("precision") == "bf16")
    if cfg.runtime.activation_checkpointing:
        checkpoint_activations(vlm.lm)
    if cfg.runtime.get("compile"):
        vlm.lm.compile(dynamic=True)  # in place: parameter names, checkpoints and FSDP units are unchanged
    stages = list(cfg.train.stages)
    prog = Progress(**resume["progress"]) if resume else Progress()
    if resume:
        load_weights(vlm, stages, prog.stage, resume["weights"])
        if log_path.is_file() and env.main:  # lines logged after the checkpoint are logged again below
            os.truncate(log_path, min(prog.log_bytes, log_path.stat().st_size))
    t0 = time.time() - prog.wall_s
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path if env.main else os.devnull
    with open(log_file, "a" if resume else "w") as log, StopSignals() as stop:
        while prog.stage < len(stages):
            stage = stages[prog.stage]
            data_cfg = data_cfgs[stage.data] if stage.data else data_cfgs["__run__"]
            mixture = Mixture(corpus, data_cfg.mixture)
            vlm.set_trainable(list(stage.trainable))
            vlm.trained_parts |= set(trained_modules(vlm, stages, prog.stage))  # resumed stages too
            vlm.train()
            model = distributed.wrap(vlm, env, device)  # vlm itself, DDP around it, or vlm sharded by FSDP2
            opt = torch.optim.AdamW(_param_groups(vlm, stage), weight_decay=cfg.train.weight_decay, betas=(0.9, 0.95))
            sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(stage.warmup_steps, stage.steps))
            queue: list[list[Encoded]] = []
            if resume:  # the checkpoint was written inside this stage
                distributed.load_optimizer_state(vlm, opt, resume["optimizer"])
                sched.load_state_dict(resume["scheduler"])
                mixture.counts.update(resume["mixture_counts"])
                queue = [[Encoded(**e) for e in b] for b in resume["queue"]]
                checkpoint.restore_rng(resume["rng"], rng)
                resume = None
            ts = time.time() - prog.stage_wall_s
            pool = max(1, cfg.train.group_by_length)
            bar = progress(stage.steps, f"train {stage.name}", "step", initial=prog.step, show=env.main)
            said = time.time()  # the last console line: a real-size step can take seconds, log_every=50 minutes
            while prog.step < stage.steps:
                if not queue:
                    queue = length_grouped(
                        [mixture.sample(rng) for _ in range(pool * cfg.train.batch_size)],
                        builder,
                        cfg.train.batch_size,
                        rng,
                    )
                rows = queue.pop()
                loss, padded = train_step(model, rows, bank, device, plan, opt, cfg.train.grad_clip, env)
                if not math.isfinite(loss):  # train_step made no update: the weights are those of the last good step
                    raise _divergence(loss, stage, prog, opt, ckpt)
                sched.step()
                prog.step += 1
                prog.last_loss = loss
                prog.losses.append(prog.last_loss)
                _count(prog.totals, rows)
                prog.padding.append(padded)
                bar.update()
                if prog.step % log_every == 0 or prog.step == stage.steps:
                    realised = mixture.realised()
                    # Draws since the previous log line: a drifting sampler shows here long before the cumulative
                    # ratio moves.
                    window = {n: mixture.counts[n] - prog.window_counts.get(n, 0) for n in mixture.names}
                    prog.window_counts = dict(mixture.counts)
                    rec = {
                        "stage": stage.name,
                        "step": prog.step,
                        "loss": float(np.mean(prog.losses[-log_every:])),
                        "lr": sched.get_last_lr(),
                        "realised_mixture": realised,
                        "realised_window": {n: c / (sum(window.values()) or 1) for n, c in window.items()},
                        "padding_fraction": float(np.mean(prog.padding[-log_every:])),
                        "s_per_step": (time.time() - ts) / prog.step,
                    }
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                    if tracker is not None:
                        tracker.log_train(rec, prog.totals, [g["name"] for g in opt.param_groups])
                    if env.main:  # every rank computes the line; one prints it (torchrun shares the console)
                        note(f"[train] {stage.name} step {prog.step}/{stage.steps} loss {rec['loss']:.3f} "
                             f"({rec['s_per_step'] * 1000:.0f} ms/step)")
                    said = time.time()
                elif env.main and time.time() - said > HEARTBEAT_S:  # console only; train_log.jsonl keeps its rhythm
                    note(f"[train] {stage.name} step {prog.step}/{stage.steps} last loss {loss:.3f} "
                         f"({(time.time() - ts) / prog.step * 1000:.0f} ms/step; next log line at step "
                         f"{min(stage.steps, (prog.step // log_every + 1) * log_every)})")
                    said = time.time()
                last = prog.stage == len(stages) - 1 and prog.step == stage.steps
                stopping = distributed.any_rank(stop.signum is not None, env)  # all ranks stop at the same step
                if stopping or ckpt.due(prog.totals["steps"], last):
                    prog.stage_wall_s, prog.wall_s, prog.log_bytes = time.time() - ts, time.time() - t0, log.tell()
                    if env.main or env.strategy == "fsdp":  # FSDP gathers the full weights: every rank takes part
                        snap = _snapshot(prog, vlm, stages, opt, sched, mixture, queue, rng)
                        if env.main:
                            ckpt.save(snap)
                if stopping:
                    stop.signum = stop.signum or signal.SIGTERM  # a rank that got no signal stops with its peers
                    raise stop.preempted(f"stage '{stage.name}' step {prog.step}/{stage.steps}", ckpt)
            bar.close()
            prog.stages.append(_stage_summary(stage, data_cfg.name, mixture, prog.losses, log_every, time.time() - ts)
                               | {"padding_fraction": float(np.mean(prog.padding)) if prog.padding else float("nan")})
            prog.stage, prog.step, prog.losses, prog.stage_wall_s = prog.stage + 1, 0, [], 0.0
            prog.padding = []
            prog.window_counts = {}  # the next stage samples its own mixture
    vlm.eval()
    return {
        "stages": prog.stages,
        **prog.totals,
        "images_encoded": bank.encoded,
        "features_from_cache": bank.from_cache,
        "features_encode_s": round(bank.encode_s, 2),  # inside wall_s: the first point on a cold feature cache pays it
        "wall_s": round(time.time() - t0, 2),
        "final_loss": prog.stages[-1]["final_loss"] if prog.stages else float("nan"),
    }


@dataclass
class StepPlan:
    """How a global batch becomes forward passes; none of it changes the loss (see RuntimeCfg/TrainCfg)."""

    pad: int
    accum: int = 1
    pack_len: int = 0  # > 0: runtime.packing, rows of up to this many tokens (data.max_len)
    bf16: bool = False  # train.precision=bf16: autocast the forward (backward follows it)

    def rows(self, part: list[Encoded]) -> dict:
        return pack(part, self.pad, self.pack_len) if self.pack_len else collate(part, self.pad)


def checkpoint_activations(lm) -> None:
    """Recompute each decoder layer in the backward pass. Non-reentrant: gradients reach the connector through a
    frozen LLM whose inputs carry no grad flag. transformers 5 renamed the switch; older releases have the old name."""
    kwargs = {"use_reentrant": False}
    if hasattr(lm, "activation_checkpointing_enable"):
        lm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def forward_batch(model, b: dict, bank: FeatureBank, device, plan: StepPlan, **loss_kw):
    # Packed rows carry their own positions and no attention mask: the LLM then masks block-diagonally.
    mask = None if "position_ids" in b else b["attention_mask"].to(device)
    pos = b["position_ids"].to(device) if "position_ids" in b else None
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=plan.bf16):
        return model(b["input_ids"].to(device), mask, b["labels"].to(device), bank.get(b["images"]),
                     position_ids=pos, **loss_kw)


def train_step(model, rows: list[Encoded], bank: FeatureBank, device, plan: StepPlan, opt, grad_clip: float = 0.0,
               env: distributed.DistEnv | None = None) -> tuple[float, float]:
    """One optimizer step on the global batch ``rows``: gradients cleared, forward and backward
    (:func:`_forward_backward`), then, for a finite loss only, the gradients of ``opt``'s parameters clipped to norm
    ``grad_clip`` (0: not clipped) and ``opt.step()``. -> (the batch's mean loss per loss token, its padding
    fraction). A non-finite loss leaves the weights untouched; what it means is the caller's to decide (``train``
    stops with ``DivergenceError``). The learning-rate schedule is the caller's too. The diagnostics'
    training loops (``harness.diagnostics``) take their steps through this function."""
    opt.zero_grad(set_to_none=True)
    loss, padded = _forward_backward(model, rows, bank, device, env or distributed.DistEnv(), plan)
    if math.isfinite(loss):
        if grad_clip:
            torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], grad_clip)
        opt.step()
    return loss, padded


def _forward_backward(model, rows: list[Encoded], bank: FeatureBank, device, env, plan: StepPlan):
    """Forward and backward of one global batch (gradients accumulate in ``.grad``) -> (its mean loss per loss
    token, the share of the token slots fed to the model that held padding).

    One process, one micro-batch: transformers' mean loss, as always. Otherwise each micro-batch contributes its loss
    sum over the global batch's loss-token count, times the world size that DDP's gradient averaging divides by, so
    the gradient equals the one-process gradient whatever the process count and accumulation (see distributed.py).

    A micro-batch without images still reaches the connector (VLM.forward splices in a blank image at no position),
    so its loss has a grad path whenever anything trains. A loss without one touches no trainable parameter: its
    backward would raise and has nothing to compute, so it is skipped. Which parameters train is the same on every
    rank and the blank image makes the graph independent of whether a micro-batch holds images, so every rank makes
    the same choice and the collectives of DDP and FSDP stay in step.
    """
    if not env.active and plan.accum == 1:
        batch = plan.rows(rows)
        out = forward_batch(model, batch, bank, device, plan)
        if torch.isfinite(out.loss) and out.loss.requires_grad:
            out.loss.backward()
        return out.loss.item(), padding_fraction(batch)
    n_items = sum(1 for e in rows for lab in e.labels[1:] if lab != IGNORE)
    micro = distributed.share(rows, env, plan.accum)
    total, slots, real = 0.0, 0, 0
    for j, part in enumerate(micro):
        b = plan.rows(part)
        slots, real = slots + b["attention_mask"].numel(), real + int(b["attention_mask"].sum())
        with distributed.no_sync(model, last=j == len(micro) - 1):
            out = forward_batch(model, b, bank, device, plan, num_items_in_batch=n_items)
            if out.loss.requires_grad:
                (out.loss * env.world_size).backward()
        total += out.loss.item()
    return distributed.all_sum(total, env), 1.0 - real / max(1, slots)  # padding of this process's micro-batches


def _snapshot(prog: Progress, vlm: VLM, stages: list, opt, sched, mixture: Mixture, queue: list, rng) -> dict:
    """Everything the rest of training depends on, for ``Checkpointer.save`` (see harness.train.checkpoint)."""
    return {
        "global_step": prog.totals["steps"],
        "progress": asdict(prog),
        "weights": weights(vlm, stages, prog.stage),
        "optimizer": distributed.optimizer_state(vlm, opt),
        "scheduler": sched.state_dict(),
        "mixture_counts": dict(mixture.counts),
        "rng": checkpoint.rng_state(rng),
        "queue": [[asdict(e) for e in batch] for batch in queue],
    }


def _stage_summary(stage, data: str, mixture: Mixture, losses: list[float], log_every: int, wall_s: float) -> dict:
    curve = [float(np.mean(losses[i : i + log_every])) for i in range(0, len(losses), log_every)]
    return {
        "name": stage.name,
        "steps": stage.steps,
        "trainable": list(stage.trainable),
        "data": data,
        "mixture_weights": mixture.weights,
        "realised_mixture": mixture.realised(),
        "first_loss": curve[0] if curve else float("nan"),
        "final_loss": curve[-1] if curve else float("nan"),
        "loss_curve": curve,
        "loss_curve_every": log_every,
        "wall_s": round(wall_s, 2),
    }


def _count(totals: dict[str, int], rows: list[Encoded]) -> None:
    """Counted on the sequences, not the padded or packed tensors: the same figures whichever way they were fed."""
    totals["steps"] += 1
    totals["sequences"] += len(rows)
    totals["images"] += sum(len(e.images) for e in rows)
    totals["tokens"] += sum(len(e.ids) for e in rows)
    totals["loss_tokens"] += sum(1 for e in rows for lab in e.labels[1:] if lab != IGNORE)


def _divergence(loss: float, stage, prog: Progress, opt, ckpt: Checkpointer) -> DivergenceError:
    """The error for a non-finite loss: where it happened, the last finite loss, the learning rates in force and
    the checkpoint to inspect or resume from (kept in the run folder)."""
    lr = {g["name"]: g["lr"] for g in opt.param_groups}
    info = {
        "stage": stage.name,
        "stage_index": prog.stage,
        "step": prog.step + 1,
        "stage_steps": stage.steps,
        "global_step": prog.totals["steps"] + 1,
        "loss": loss,
        "last_finite_loss": prog.last_loss,
        "lr": lr,
        "checkpoint": str(ckpt.path) if ckpt.saved_step is not None else None,
        "checkpoint_step": ckpt.saved_step,
    }
    last = "none" if prog.last_loss is None else f"{prog.last_loss:.4g}"
    return DivergenceError(
        f"non-finite loss {loss} at stage '{stage.name}' step {prog.step + 1}/{stage.steps} "
        f"(global step {info['global_step']}); last finite loss {last}; lr "
        f"{', '.join(f'{k} {v:.3g}' for k, v in lr.items())}; {ckpt.describe()}",
        info,
    )
