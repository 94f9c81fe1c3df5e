"""``python -m harness.bench connectors``: the training step time of every connector on the embedded default.

For every registered connector (or ``--only a,b``): build the embedded default VLM with that connector (cached
backbones), run ``--warmup`` then ``--steps`` training steps of its first stage's trainable parts on identical batches
(the frozen encoder's features from the cache), and report ms/step, connector parameters and forward FLOPs per
image, the visual tokens emitted and the mean padded sequence length. Results go to
``results/bench/connectors-<host>-<time>.json`` with the machine, versions and config.

Each step is the sweep's own, :func:`harness.train.loop.train_step` (AdamW at a constant 1e-4, no clipping), so the
timed region is what a sweep point's step costs: collating the rows, the forward and backward, the loss read-back and
the optimizer step. Until this module reused it, its own loop collated outside the timer. Collating one batch of the
default (32 sequences of about 90 tokens) took about 3 ms on the busy 2-core reference machine: 1-2% of its 136-346
ms steps, and far inside their step-to-step spread (standard deviations of 77-230 ms in
``results/bench/connectors-vm-20261122-083202.json``), so figures from before and after stay comparable.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def bench_connectors(args) -> dict:
    import torch

    from harness.config.store import compose_sweep
    from harness.data.features import bank_for
    from harness.data.mixture import Mixture
    from harness.data.sequences import SequenceBuilder
    from harness.models.build import build_vlm
    from harness.models.connectors import CONNECTORS
    from harness.runtime import set_offline, set_threads
    from harness.train.loop import StepPlan, length_grouped, train_step

    set_offline()
    threads = set_threads(args.threads)
    names = args.only.split(",") if args.only else CONNECTORS.names()
    device = torch.device("cpu")
    rows = []
    for name in names:
        cfg = compose_sweep([f"connector={name}", *args.overrides])
        world, vlm, _ = build_vlm(cfg, device)
        vlm.set_trainable(list(cfg.train.stages[0].trainable))
        vlm.train()
        bank = bank_for(vlm, world, "train", Path(cfg.paths.cache_dir).expanduser())
        builder = SequenceBuilder(vlm.tokenizer, vlm.num_visual_tokens, cfg.data.max_len)
        mix, rng = Mixture(world, dict(cfg.data.mixture)), np.random.default_rng(0)
        batches = []
        while len(batches) < args.warmup + args.steps:
            batches += length_grouped([mix.sample(rng) for _ in range(4 * cfg.train.batch_size)], builder,
                                      cfg.train.batch_size, rng)
        opt = torch.optim.AdamW([p for p in vlm.parameters() if p.requires_grad], lr=1e-4)
        plan = StepPlan(pad=vlm.tokenizer.pad_token_id)
        times, lens = [], []
        for i, enc in enumerate(batches[: args.warmup + args.steps]):
            t = time.perf_counter()
            train_step(vlm, enc, bank, device, plan, opt)
            if i >= args.warmup:
                times.append(time.perf_counter() - t)
                lens.append(max(len(e.ids) for e in enc))  # the padded length: collate pads to the longest
        rows.append({"connector": name, "ms_per_step": 1000 * float(np.mean(times)),
                     "ms_per_step_std": 1000 * float(np.std(times)), "visual_tokens_emitted": vlm.num_visual_tokens,
                     "connector_params": vlm.connector.num_params(),
                     "connector_flops_per_image": vlm.connector.flops_per_image(),
                     "mean_padded_len": float(np.mean(lens)), "batch_size": cfg.train.batch_size})
        print(f"[bench] {name:13s} {rows[-1]['ms_per_step']:7.1f} ms/step  M={vlm.num_visual_tokens:3d}  "
              f"params={rows[-1]['connector_params']:,}  flops/img={rows[-1]['connector_flops_per_image']:,}", flush=True)
    return {"benchmark": "connectors", "threads": threads, "steps": args.steps, "warmup": args.warmup,
            "overrides": args.overrides, "rows": rows}


def add_parser(sub) -> None:
    c = sub.add_parser("connectors", help="training step time of every connector on the embedded default")
    c.add_argument("--steps", type=int, default=20)
    c.add_argument("--warmup", type=int, default=3)
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--only", default="", help="comma-separated connector names (default: all registered)")
    c.add_argument("--out", default="results/bench")
    c.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. visual_tokens=64")
