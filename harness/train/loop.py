"""The training loop: stages, each with its trainable parts, mixture and learning rates.

Per stage: freeze per ``stage.trainable`` -> AdamW with one param group per part (connector/encoder at ``lr``, LLM at
``llm_lr``) -> linear warm-up + cosine decay to 10% (MM1 §3.4's schedule shape) -> ``steps`` steps of
``batch_size`` examples sampled from the mixture. A non-finite loss stops the run with ``DivergenceError``: a result
from a diverged run is never recorded as ok.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from harness.data.mixture import Mixture
from harness.data.sequences import SequenceBuilder, collate
from harness.models.vlm import VLM
from harness.train.features import FeatureBank


class DivergenceError(RuntimeError):
    pass


def _schedule(warmup: int, total: int, floor: float = 0.1):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        t = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


def _param_groups(vlm: VLM, stage) -> list[dict]:
    groups = []
    fast = [p for m in (vlm.connector, vlm.encoder) for p in m.parameters() if p.requires_grad]
    slow = [p for p in vlm.lm.parameters() if p.requires_grad]
    if fast:
        groups.append({"params": fast, "lr": stage.lr, "name": "connector+encoder"})
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


def train(vlm: VLM, world, data_cfgs: dict, cfg, seed: int, device: torch.device, log_path: Path,
          bank: FeatureBank, log_every: int = 50) -> dict:
    """Run every stage of ``cfg.train`` on features from ``bank`` (``bank_for(vlm, world, "train", cache)``);
    returns the training summary stored in the record."""
    builder = SequenceBuilder(vlm.tokenizer, vlm.num_visual_tokens, data_cfgs["__run__"].max_len)
    rng = np.random.default_rng(seed)
    pad = vlm.tokenizer.pad_token_id
    totals = {"steps": 0, "sequences": 0, "images": 0, "tokens": 0, "loss_tokens": 0}
    stages_out, t0 = [], time.time()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        for stage in cfg.train.stages:
            data_cfg = data_cfgs[stage.data] if stage.data else data_cfgs["__run__"]
            mixture = Mixture(world, data_cfg.mixture)
            vlm.set_trainable(list(stage.trainable))
            vlm.train()
            opt = torch.optim.AdamW(_param_groups(vlm, stage), weight_decay=cfg.train.weight_decay, betas=(0.9, 0.95))
            sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(stage.warmup_steps, stage.steps))
            losses, queue, ts = [], [], time.time()
            pool = max(1, cfg.train.group_by_length)
            for step in range(stage.steps):
                if not queue:
                    queue = length_grouped([mixture.sample(rng) for _ in range(pool * cfg.train.batch_size)], builder,
                                           cfg.train.batch_size, rng)
                batch = collate(queue.pop(), pad)
                vis = bank.get(batch["images"])
                out = vlm(batch["input_ids"].to(device), batch["attention_mask"].to(device),
                          batch["labels"].to(device), vis)
                loss = out.loss
                if not torch.isfinite(loss):
                    raise DivergenceError(f"non-finite loss {float(loss)} at stage '{stage.name}' step {step}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.train.grad_clip:
                    torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]],
                                                   cfg.train.grad_clip)
                opt.step()
                sched.step()
                losses.append(loss.item())
                totals["steps"] += 1
                totals["sequences"] += len(batch["input_ids"])
                totals["images"] += len(batch["images"])
                totals["tokens"] += int(batch["attention_mask"].sum())
                totals["loss_tokens"] += int((batch["labels"][:, 1:] != -100).sum())
                if (step + 1) % log_every == 0 or step == stage.steps - 1:
                    realised = mixture.realised()
                    rec = {"stage": stage.name, "step": step + 1, "loss": float(np.mean(losses[-log_every:])),
                           "lr": sched.get_last_lr(), "realised_mixture": realised,
                           "s_per_step": (time.time() - ts) / (step + 1)}
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                    print(f"[train] {stage.name} step {step + 1}/{stage.steps} loss {rec['loss']:.3f} "
                          f"({rec['s_per_step'] * 1000:.0f} ms/step)", flush=True)
            curve = [float(np.mean(losses[i : i + log_every])) for i in range(0, len(losses), log_every)]
            stages_out.append({
                "name": stage.name, "steps": stage.steps, "trainable": list(stage.trainable),
                "data": data_cfg.name, "mixture_weights": mixture.weights, "realised_mixture": mixture.realised(),
                "first_loss": curve[0] if curve else float("nan"), "final_loss": curve[-1] if curve else float("nan"),
                "loss_curve": curve, "loss_curve_every": log_every, "wall_s": round(time.time() - ts, 2),
            })
    vlm.eval()
    return {"stages": stages_out, **totals, "images_encoded": bank.encoded, "features_from_cache": bank.from_cache,
            "wall_s": round(time.time() - t0, 2),
            "final_loss": stages_out[-1]["final_loss"] if stages_out else float("nan")}
