"""``python -m harness.bench train``: training throughput and model FLOPs utilisation (MFU) of a VLM configuration.

Builds one configuration through the same Hydra composition as ``sweep.py`` (so any override works), with random
weights where the preset says so, and times training steps of two stages on identical batches:

* ``connector``: encoder and LLM frozen, connector trained (MM1's pre-alignment / LLaVA stage 1);
* ``full``: connector and LLM trained (MM1's pre-training, LLaVA stage 2).

Each stage runs a base variant and then one speed switch at a time, every one a config setting a sweep can use:
``packing`` (runtime.packing), ``compile`` (runtime.compile), ``compile+packing``, ``act_ckpt``
(runtime.activation_checkpointing), ``online`` (runtime.feature_cache=false: the encoder runs in every step),
``eager`` (llm.attn_implementation=eager instead of SDPA, an ``hf`` LLM only) and ``fp32`` on a GPU (whose base is
bf16; a CPU's base is fp32, where bf16 autocast is slower). Per variant: ``--warmup`` untimed steps (compilation
happens there), then ``--steps`` timed ones: samples/s, real (non-pad) tokens/s, step time, padding fraction, peak
memory (CUDA's allocator; NaN on a CPU) and MFU = useful FLOPs per step (``harness.train.flops``) / step time / the
device's dense bf16 peak (NaN on a CPU unless ``--peak-tflops`` is given).

A timed step is the sweep's own, :func:`harness.train.loop.train_step` (rows collated or packed, forward, backward,
gradients clipped to norm 1, AdamW step), so the figures are what a sweep point's step costs, the finite-loss check
and the loss read-back included (on a GPU each waits for the device, as it does in a sweep). The variants' switches
are applied around it here, not through ``harness.train.loop.train``, because that loop samples fresh batches and runs
a whole stage, where a variant must time the same few batches with one switch changed.

The steps time training, not dataset encoding: with the encoder frozen (no stage here trains it), the features of the
images the ``--batches`` use, and only those, are encoded once before any variant (``preload`` in the JSON: images
and seconds). Each row's ``images_encoded`` counts the encoder's work during its steps: 0, except ``online``.

Presets (``--preset``; later overrides win):

* ``small``: random tiny open_clip tower, C-Abstractor, the tiny ``hf`` Llama, micro world: seconds a variant on a
  CPU, a check that the suite runs;
* ``real``: open_clip ViT-L/14 at 336 px (random weights; frozen), C-Abstractor with 144 tokens, Llama-3.2-1B's
  architecture (``hf_llama_1b``), batch 16: the issue's GPU configuration.
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

PRESETS = {
    "small": ["world=shapes_micro", "encoder=openclip_tiny", "connector=c_abstractor", "llm=hf", "visual_tokens=16",
              "resolution=64", "train.batch_size=16"],
    "real": ["world=shapes_micro", "encoder=openclip_vit_l14_336", "encoder.pretrained=null", "resolution=336",
             "connector=c_abstractor", "visual_tokens=144", "llm=hf_llama_1b", "data.max_len=2048",
             "train.batch_size=16"],
}
STAGES = {"connector": ["connector"], "full": ["connector", "llm"]}
# name -> the switches it turns on; base first
VARIANTS = {"base": {}, "packing": {"packing": True}, "compile": {"compile": True},
            "compile+packing": {"compile": True, "packing": True}, "act_ckpt": {"act_ckpt": True},
            "online": {"online": True}, "eager": {"eager": True}, "fp32": {"fp32": True}}


def _batches(vlm, corpus, cfg, n: int, seed: int = 0) -> list:
    from harness.data.mixture import Mixture
    from harness.data.sequences import SequenceBuilder
    from harness.train.loop import length_grouped

    builder = SequenceBuilder(vlm.tokenizer, vlm.num_visual_tokens, cfg.data.max_len)
    mix, rng = Mixture(corpus, dict(cfg.data.mixture)), np.random.default_rng(seed)
    out: list = []
    while len(out) < n:
        pool = [mix.sample(rng) for _ in range(max(1, cfg.train.group_by_length) * cfg.train.batch_size)]
        out += length_grouped(pool, builder, cfg.train.batch_size, rng)
    return out[:n]


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run_variant(vlm, banks: dict, batches: list, stage: str, switches: dict, device, args, flop_terms: dict,
                 peak: float) -> dict:
    import torch

    from harness.train import flops
    from harness.train.loop import StepPlan, checkpoint_activations, train_step

    vlm.set_trainable(STAGES[stage])
    vlm.train()
    lm = vlm.lm
    if switches.get("eager"):
        lm.set_attn_implementation("eager")
    if switches.get("act_ckpt"):
        checkpoint_activations(lm)
    if switches.get("compile"):
        vlm.lm = torch.compile(lm, dynamic=True)  # a wrapper, removed below: the other variants run eager
    bf16 = device.type == "cuda" and not switches.get("fp32")
    plan = StepPlan(pad=vlm.tokenizer.pad_token_id, pack_len=args.max_len if switches.get("packing") else 0,
                    bf16=bf16)
    bank = banks["online" if switches.get("online") else "cached"]
    params = [p for p in vlm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=device.type == "cuda")
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    times, padded, step_flops, samples, tokens = [], [], [], 0, 0
    encoded_before = bank.encoded
    try:
        for i in range(args.warmup + args.steps):
            rows = batches[i % len(batches)]
            _sync(device)
            t = time.perf_counter()
            _, pad = train_step(vlm, rows, bank, device, plan, opt, grad_clip=1.0)
            _sync(device)
            if i >= args.warmup:
                times.append(time.perf_counter() - t)
                padded.append(pad)
                samples += len(rows)
                tokens += sum(len(e.ids) for e in rows)
                step_flops.append(flops.step_flops(
                    seq_lens=[len(e.ids) for e in rows], images=sum(len(e.images) for e in rows),
                    llm_trains=stage == "full", encoder_mode="frozen" if switches.get("online") else "cached",
                    **flop_terms).total)
    finally:
        vlm.lm = lm
        if switches.get("act_ckpt"):
            (getattr(lm, "activation_checkpointing_disable", None) or lm.gradient_checkpointing_disable)()
        if switches.get("eager"):
            lm.set_attn_implementation(args.attn)
        opt.zero_grad(set_to_none=True)
    step_s = float(np.mean(times))
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    flops_step = float(np.mean(step_flops))
    return {
        "stage": stage, "step_s": step_s, "step_s_std": float(np.std(times)), "samples_per_s": samples / sum(times),
        "tokens_per_s": tokens / sum(times), "padding_fraction": float(np.mean(padded)), "peak_mem_gib": mem,
        "bf16": bf16, "flops_per_step": flops_step, "achieved_tflops": flops_step / step_s / 1e12,
        "mfu": flops_step / step_s / (peak * 1e12) if math.isfinite(peak) else float("nan"),
        # images the encoder ran on during the variant: 0 from the preloaded cache, the batches' images for online
        "images_encoded": bank.encoded - encoded_before,
    }


def bench_train(args) -> dict:
    import torch

    from harness.config.store import compose_sweep
    from harness.data.corpus import build_corpus, run_image_size
    from harness.data.features import FeatureBank
    from harness.data.locations import stage_data, used_data
    from harness.models.build import build_vlm
    from harness.records import library_versions
    from harness.runtime import pick_device, seed_everything, set_offline, set_threads
    from harness.train import flops

    set_offline()
    threads = set_threads(args.threads)
    overrides = [*PRESETS[args.preset], *args.overrides]
    cfg = compose_sweep(overrides)
    device = pick_device(args.device)
    seed_everything(0)
    t0 = time.time()
    world, vlm, _ = build_vlm(cfg, device)
    cache = Path(cfg.paths.cache_dir).expanduser()
    corpus = build_corpus(used_data(cfg, stage_data(cfg)), world, cache, cfg.paths.data_dir,
                          image_size=run_image_size(cfg))
    build_s = time.time() - t0
    args.max_len, args.attn = cfg.data.max_len, getattr(cfg.llm, "attn_implementation", "sdpa")
    # Freeze first: a bank encodes features only for a frozen encoder (a trained one needs fresh features with
    # gradients), so a preload before the freeze would encode with autograd, keep nothing, and leave the encoding to
    # the first step. No stage here trains the encoder.
    vlm.set_trainable(STAGES["connector"])
    batches = _batches(vlm, corpus, cfg, args.batches)
    # The banks hold only the images these batches use, renumbered: a bank caches its whole image array at once,
    # and a real encoder at 336 px takes seconds an image on a CPU.
    used = sorted({i for b in batches for e in b for i in e.images})
    new_id = {old: k for k, old in enumerate(used)}
    batches = [[replace(e, images=[new_id[i] for i in e.images]) for e in b] for b in batches]
    images = corpus.images("train")[used] if used else np.empty((0, 1, 1, 3), np.uint8)
    banks = {"cached": FeatureBank(vlm, images), "online": FeatureBank(vlm, images, online=True)}
    t_pre = time.time()
    banks["cached"].get(list(range(len(used))))  # encode once, before timing
    preload = {"images": len(used), "encoded": banks["cached"].encoded, "s": round(time.time() - t_pre, 1)}
    print(f"[bench] preloaded features of {len(used)} images in {preload['s']} s", flush=True)
    one = torch.from_numpy(np.ascontiguousarray(corpus.images("train")[:1]))
    flop_terms = {
        "llm_params": flops.llm_matmul_params(vlm.lm), "llm_layers": int(vlm.lm.config.num_hidden_layers),
        "llm_width": int(vlm.lm.config.hidden_size),
        "encoder_flops_per_image": flops.module_forward_flops(vlm.encode_images, one),
        "connector_flops_per_image": vlm.connector.flops_per_image(),
    }
    peak, peak_source = (args.peak_tflops, "--peak-tflops") if args.peak_tflops else flops.peak_tflops(device)
    wanted = args.variants.split(",") if args.variants else list(VARIANTS)
    unknown = sorted(set(wanted) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; available: {', '.join(VARIANTS)}")
    rows = []
    for stage in args.stages.split(","):
        if stage not in STAGES:
            raise SystemExit(f"unknown stage '{stage}'; available: {', '.join(STAGES)}")
        for name in wanted:
            if (name == "fp32" and device.type != "cuda") or (name == "eager" and cfg.llm.name != "hf"):
                continue  # fp32 is the CPU's base already; only the hf LLM exposes its attention implementation
            if name.startswith("compile") and args.no_compile:
                continue
            r = {"variant": name, **_run_variant(vlm, banks, batches, stage, VARIANTS[name], device, args,
                                                 flop_terms, peak)}
            rows.append(r)
            print(f"[bench] {stage:9s} {name:16s} {r['step_s'] * 1000:8.1f} ms/step  {r['samples_per_s']:7.1f} "
                  f"samples/s  {r['tokens_per_s']:9.0f} tok/s  pad {r['padding_fraction']:.3f}  "
                  f"{r['achieved_tflops']:.4g} TFLOP/s  MFU {r['mfu']:.3f}", flush=True)
    params = vlm.param_counts()
    return {"benchmark": "train", "preset": args.preset, "overrides": overrides, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": threads, "steps": args.steps, "warmup": args.warmup, "batch_size": cfg.train.batch_size,
            "peak_tflops": peak, "peak_source": peak_source, "params": params, "flop_terms": flop_terms,
            "build_s": round(build_s, 1), "preload": preload, "rows": rows, "versions": library_versions(),
            "process_max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def add_parser(sub) -> None:
    c = sub.add_parser("train", help="training throughput and MFU per speed switch (packing, compile, ...)")
    c.add_argument("--preset", choices=sorted(PRESETS), default="small")
    c.add_argument("--stages", default="connector,full")
    c.add_argument("--variants", default="", help=f"comma-separated subset of {', '.join(VARIANTS)} (default: all)")
    c.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    c.add_argument("--steps", type=int, default=10)
    c.add_argument("--warmup", type=int, default=3)
    c.add_argument("--batches", type=int, default=8, help="distinct batches, cycled")
    c.add_argument("--threads", type=int, default=0)
    c.add_argument("--device", default="auto")
    c.add_argument("--peak-tflops", type=float, default=0.0, help="the device's peak, for MFU where none is known")
    c.add_argument("--out", default="results/bench")
    c.add_argument("overrides", nargs="*", help="Hydra overrides after the preset's, e.g. visual_tokens=64")
