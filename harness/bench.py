"""Benchmarks (never timed unit tests): ``python -m harness.bench {connectors,cache,...} [options]``.

``connectors``: for every registered connector (or ``--only a,b``), build the embedded default VLM with that
connector (cached backbones), run ``--warmup`` then ``--steps`` training steps on identical batches, and report
ms/step, connector parameters and forward FLOPs per image, the visual tokens emitted and the mean sequence length.
Results go to ``results/bench/connectors-<host>-<time>.json`` with the machine, versions and config.

``cache``: a connector sweep with and without the frozen-feature cache (``harness.train.cache_bench``).
``budget``: per-stage wall times of a finished sweep, read from its records (``harness.analysis.budget``).
``decode``: images per second per core decoded from webdataset shards (``harness.data.decode_bench``).
``eval``: batched KV-cache generation vs. transformers ``generate`` one prompt at a time (``harness.eval.speed_bench``).
``train``: samples/s, tokens/s, memory and MFU of a configuration per speed switch (``harness.train.speed_bench``).
``probe``: linear and MLP probes of what the frozen encoder's tokens carry, per attribute (``harness.eval.probes``).
``probe-connector``: the run's connector trained with a linear head on each attribute, no LM
(``harness.eval.connector_probes``).
``probe-vlm``: the VLM trained on one question type, from a fresh connector or one that ``probe-connector`` trained
first (``harness.eval.vlm_probes``).
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np


def bench_connectors(args) -> dict:
    import torch

    from harness.config.store import compose_sweep
    from harness.data.mixture import Mixture
    from harness.data.sequences import SequenceBuilder, collate
    from harness.launch import build
    from harness.models.connectors import CONNECTORS
    from harness.records import library_versions
    from harness.runtime import set_offline, set_threads
    from harness.train.features import bank_for
    from harness.train.loop import length_grouped

    set_offline()
    threads = set_threads(args.threads)
    names = args.only.split(",") if args.only else CONNECTORS.names()
    rows = []
    for name in names:
        cfg = compose_sweep([f"connector={name}", *args.overrides])
        world, vlm, _ = build(cfg, torch.device("cpu"))
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
        times, lens = [], []
        for i, enc in enumerate(batches[: args.warmup + args.steps]):
            b = collate(enc, vlm.tokenizer.pad_token_id)
            t = time.perf_counter()
            out = vlm(b["input_ids"], b["attention_mask"], b["labels"], bank.get(b["images"]))
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            if i >= args.warmup:
                times.append(time.perf_counter() - t)
                lens.append(b["input_ids"].shape[1])
        rows.append({"connector": name, "ms_per_step": 1000 * float(np.mean(times)),
                     "ms_per_step_std": 1000 * float(np.std(times)), "visual_tokens_emitted": vlm.num_visual_tokens,
                     "connector_params": vlm.connector.num_params(),
                     "connector_flops_per_image": vlm.connector.flops_per_image(),
                     "mean_padded_len": float(np.mean(lens)), "batch_size": cfg.train.batch_size})
        print(f"[bench] {name:13s} {rows[-1]['ms_per_step']:7.1f} ms/step  M={vlm.num_visual_tokens:3d}  "
              f"params={rows[-1]['connector_params']:,}  flops/img={rows[-1]['connector_flops_per_image']:,}", flush=True)
    return {"benchmark": "connectors", "threads": threads, "steps": args.steps, "warmup": args.warmup,
            "overrides": args.overrides, "rows": rows, "machine": {"host": socket.gethostname(),
            "processor": platform.processor(), "cpus": __import__("os").cpu_count()}, "versions": library_versions(),
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="which", required=True)
    c = sub.add_parser("connectors", help="training step time of every connector on the embedded default")
    c.add_argument("--steps", type=int, default=20)
    c.add_argument("--warmup", type=int, default=3)
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--only", default="", help="comma-separated connector names (default: all registered)")
    c.add_argument("--out", default="results/bench")
    c.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. visual_tokens=64")
    from harness.analysis import budget
    from harness.data import decode_bench
    from harness.eval import connector_probes, probes, speed_bench, vlm_probes
    from harness.train import cache_bench
    from harness.train import speed_bench as train_bench

    cache_bench.add_parser(sub)
    budget.add_parser(sub)
    decode_bench.add_parser(sub)
    speed_bench.add_parser(sub)
    probes.add_parser(sub)
    connector_probes.add_parser(sub)
    vlm_probes.add_parser(sub)
    train_bench.add_parser(sub)
    # one entry per benchmark: its name -> the function that runs it and returns the JSON result
    runners = {"connectors": bench_connectors, "cache": cache_bench.bench_cache, "budget": budget.bench_budget,
               "decode": decode_bench.bench_decode, "eval": speed_bench.bench_eval, "train": train_bench.bench_train,
               "probe": probes.bench_probe, "probe-connector": connector_probes.bench_connector_probe,
               "probe-vlm": vlm_probes.bench_vlm_probe}
    args = ap.parse_args(argv)
    result = runners[args.which](args)
    result.setdefault("machine", {"host": socket.gethostname(), "processor": platform.processor(),
                                  "cpus": __import__("os").cpu_count()})
    result.setdefault("when", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if "versions" not in result:
        from harness.records import library_versions

        result["versions"] = library_versions()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.which}-{socket.gethostname()}-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"[bench] written to {path}")


if __name__ == "__main__":
    main()
