"""``python -m harness.plan [-m] <overrides...>``: what a sweep will cost before it runs (issue 22, item 6).

For each point the sweep would run, one row: its choices, parameters (total, and trainable per stage), accelerator
memory per GPU and FLOPs per step and per run, and the whole sweep's GPU-hours at a stated MFU and peak. Points whose
memory estimate exceeds ``--gpu-mem-gib`` are flagged. Planning builds every model on the ``meta`` device (shapes, no
storage), never pre-trains or loads weights, and writes nothing to the cache, so it takes seconds for any model size.

How each figure is obtained (an estimate of the worst step: every sequence at ``data.max_len``, no padding):

* Parameters: the components' own modules built on ``meta`` (for the embedded tiny backbones, the architecture
  their pre-training starts from). The LM's vocabulary is the tokenizer's size: exact when the world's tokenizer is
  already in the cache, else the configured ``vocab_size`` (an upper bound; the row's ``notes`` say so).
* Weights: every parameter at its dtype (``llm.dtype``; the rest fp32). ``train.precision=bf16`` autocasts the
  forward and keeps fp32 master weights, and the backward keeps a bf16 copy of the LM's matrices (``autocast``
  saves the cast weight of each matmul), counted as ``autocast_copies``.
* Gradients: one per trained parameter, at its dtype. Adam: two moments per trained parameter, at its dtype.
* Optimizer step: ``AdamW``'s multi-tensor step allocates one more trained-parameter-sized buffer (the denominator),
  after the backward has freed the activations; the peak takes the larger of the two.
* Activations: the tensors autograd saves for the backward, counted on ``meta`` from one micro-batch
  (``train.batch_size / (runtime.grad_accum x --world-size)`` sequences of ``data.max_len`` tokens, one image each)
  through the connector and the LM (loss included), plus the largest saved tensor again for the gradient the
  backward allocates next to it. Halved under bf16 (the fp32 loss and logits are not, a small overstatement).
  ``runtime.activation_checkpointing=true`` keeps only each decoder layer's input, plus one layer's saved tensors
  while it is recomputed.
* Encoder forward: a trained encoder saves all of its own activations; one encoding online
  (``runtime.feature_cache=false``) holds about one block's working set for the micro-batch's images. A frozen
  encoder reading the feature cache costs nothing per step, but the first step of a point whose features are not
  cached yet encodes the whole split in chunks of ``runtime.feature_chunk`` images: ``feature_bank_encode``, a peak
  of its own beside the
  weights (before any gradient or Adam state exists). ``train_step`` is the peak of the steps; ``total`` the larger.
* ``--overhead-gib``: the CUDA context and allocator slack, added to each point.
* FLOPs: ``harness.train.flops.step_flops`` with the encoder and connector forward FLOPs counted on the meta
  modules by ``torch.utils.flop_counter``; per run, summed over the stages' steps.

Under ``runtime.strategy=fsdp`` the LM's and the connector's weights, gradients and Adam states are divided by
``--world-size`` (FSDP2 shards them); DDP keeps a full copy on every GPU, plus its gradient buckets (one more copy
of the trained parameters' gradients).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from harness.train.flops import llm_matmul_params, module_forward_flops, step_flops

GIB = 2**30
H100_BF16_TFLOPS = 989.0  # dense bf16 datasheet peak (harness.train.flops.PEAK_BF16_TFLOPS)
META = torch.device("meta")
CHOICE_KEYS = ("encoder", "hr_encoder", "connector", "llm", "data", "train", "world", "experiment")


# -- which points --------------------------------------------------------------------------------------------------
def compose(overrides: list[str]) -> DictConfig:
    """The sweep config of one point with its ``hydra`` node (for the choices and an experiment's sweep params)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from harness.config.store import SWEEPS, register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(SWEEPS), version_base="1.3"):
        return hydra_compose(config_name="sweep", overrides=list(overrides), return_hydra_config=True)


def expand(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists of the sweep's points, as Hydra's basic sweeper makes them: the config's own
    ``hydra.sweeper.params`` (experiments) first, the command line's overrides after, comma lists as a grid."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    base = compose(fixed)
    multirun = multirun or str(OmegaConf.select(base, "hydra.mode")) == "RunMode.MULTIRUN"  # experiment configs
    if not multirun:
        sweeps = [o for o in parsed if o.is_sweep_override()]
        if sweeps:
            raise SystemExit(f"plan: '{sweeps[0].input_line}' is a sweep; add -m to plan every point of it")
        return [list(overrides)]
    params = OmegaConf.select(base, "hydra.sweeper.params") or {}
    from_config = [f"{k}={v}" for k, v in params.items()]
    parsed = parser.parse_overrides(from_config + list(overrides))
    (batch,) = BasicSweeper.split_arguments(parsed, None)
    return batch


def choices(cfg: DictConfig) -> dict[str, str]:
    picked = OmegaConf.select(cfg, "hydra.runtime.choices") or {}
    return {k: str(picked[k]) for k in CHOICE_KEYS if picked.get(k) not in (None, "null")}


# -- the models, on meta -------------------------------------------------------------------------------------------
class _VocabOnly:
    """What ``llama_tiny._llama`` reads from a tokenizer: its size and the special ids (values irrelevant here)."""

    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


def tokenizer_size(cfg: DictConfig, configured: int) -> tuple[int, str]:
    """The world tokenizer's size if it is already in the cache (exact), else ``configured`` (an upper bound: BPE
    stops early when the world's text has fewer merges)."""
    from harness.artifacts import is_complete
    from harness.models.llm.tokenizer import load_tokenizer, tokenizer_dir
    from harness.world.build import world_hash

    cache = Path(cfg.paths.cache_dir).expanduser()
    path = tokenizer_dir(world_hash(OmegaConf.to_object(cfg.world)), configured, cache)
    if is_complete(path):
        return len(load_tokenizer(path)), ""
    return configured, f"vocabulary {configured} is an upper bound (world tokenizer not cached yet)"


def build_llm(cfg: DictConfig) -> tuple[torch.nn.Module, str]:
    """The LM as ``build_llm`` would make it, on meta: ``(model, note)``."""
    llm = OmegaConf.to_object(cfg.llm)
    if llm.name == "llama_tiny":
        from harness.models.llm.llama_tiny import _llama

        n, note = tokenizer_size(cfg, llm.vocab_size)
        with META:
            return _llama(llm, _VocabOnly(n)), note
    if llm.name == "hf":
        from transformers import AutoConfig, AutoModelForCausalLM

        from harness.models.llm.hf_causal import DTYPES, _check

        _check(llm)
        if llm.model is None:
            n, note = (tokenizer_size(cfg, llm.world_vocab) if llm.tokenizer is None
                       else (0, "vocabulary from config.vocab_size (hub tokenizer not read)"))
            conf = AutoConfig.for_model(llm.model_type, **{"vocab_size": n, **llm.config})
            conf.vocab_size = max(conf.vocab_size, n)
        else:
            try:
                conf = AutoConfig.from_pretrained(llm.model)
            except OSError as err:
                raise RuntimeError(f"hf: no config for '{llm.model}' in the local Hugging Face cache ({err}); "
                                   "fetch it once, or plan with model: null and its config") from err
            note = "vocabulary from the model's config (the VLM's <image>/<eoc> rows not added)"
        with META:
            model = AutoModelForCausalLM.from_config(conf, attn_implementation=llm.attn_implementation,
                                                     dtype=DTYPES[llm.dtype])
        return model, note
    raise ValueError(f"plan: no meta builder for llm '{llm.name}'; known: llama_tiny, hf")


def build_encoder(enc_cfg: DictConfig, resolution: int):
    """The encoder as ``build_encoder`` would make it, on meta, without pre-training or loading weights."""
    enc = OmegaConf.to_object(enc_cfg)
    if enc.name in ("clip_tiny", "aim_tiny"):
        from harness.models.encoders.tiny_vit import TinyViTEncoder

        with META:
            if enc.name == "clip_tiny":
                from harness.models.encoders.clip_tiny import make_clip

                visual = make_clip(enc, enc.vocab_size, 0, 2).visual
            else:
                from harness.models.encoders.aim_tiny import AimModel

                visual = AimModel(enc).visual
            return TinyViTEncoder(visual, enc, resolution)
    if enc.name == "conv_tiny":
        from harness.models.encoders.conv_tiny import ConvClip, ConvTinyEncoder

        with META:
            return ConvTinyEncoder(ConvClip(enc, enc.vocab_size, 0, 2).visual, enc, resolution)
    if enc.name == "openclip":
        import open_clip
        from open_clip.transformer import VisionTransformer

        from harness.models.encoders.openclip import OpenClipViTEncoder
        from harness.models.encoders.timm_models import wrap_timm

        model = open_clip.create_model(enc.model, pretrained=None, device=META, **dict(enc.model_cfg))
        visual = model.visual
        if isinstance(visual, VisionTransformer):
            return OpenClipViTEncoder(visual, enc, resolution)
        pp = visual.preprocess_cfg
        return wrap_timm(visual.trunk, enc, resolution, tuple(pp["mean"]), tuple(pp["std"]), enc.model)
    if enc.name == "timm":
        from harness.models.encoders.timm_models import build_timm

        with META:
            return build_timm(replace(enc, pretrained=False, weights_file=None), resolution, None, None, None)
    if enc.name == "hf":
        from harness.models.encoders.hf_vision import build_hf

        if enc.model is not None:
            from transformers import AutoConfig

            try:
                conf = AutoConfig.from_pretrained(enc.model)
            except OSError as err:
                raise RuntimeError(f"hf encoder: no config for '{enc.model}' in the local Hugging Face cache "
                                   f"({err})") from err
            vision = getattr(conf, "vision_config", conf).to_dict()
            enc = replace(enc, model=None, config={k: v for k, v in vision.items() if not k.startswith("_")})
        with META:
            return build_hf(enc, resolution, None, None, None)
    raise ValueError(f"plan: no meta builder for encoder '{enc.name}'; known: clip_tiny, aim_tiny, conv_tiny, "
                     "openclip, timm, hf")


@dataclass
class Skeleton:
    """A point's modules on meta, as ``harness.models.build.build_vlm`` would assemble them."""

    encoder: torch.nn.Module
    hr_encoder: torch.nn.Module | None
    connector: torch.nn.Module
    lm: torch.nn.Module
    notes: list[str] = field(default_factory=list)


def skeleton(cfg: DictConfig) -> Skeleton:
    from harness.models.connectors import CONNECTORS, build_connector

    conn_cfg = OmegaConf.to_object(cfg.connector)
    lm, note = build_llm(cfg)
    encoder = build_encoder(cfg.encoder, cfg.resolution)
    hr = build_encoder(cfg.hr_encoder, cfg.hr_resolution) if CONNECTORS.get(conn_cfg.name).needs_hr else None
    with META:
        connector = build_connector(conn_cfg, encoder.spec, int(lm.config.hidden_size), hr.map_spec if hr else None)
    return Skeleton(encoder, hr, connector, lm, [note] if note else [])


def _numel(params) -> int:
    return sum(p.numel() for p in params)


def _nbytes(params) -> int:
    return sum(p.numel() * p.element_size() for p in params)


def trained_params(sk: Skeleton, trainable: list[str]) -> dict[str, list]:
    """Per part, the parameters a stage with this ``trainable`` list updates (``VLM.set_trainable``)."""
    out: dict[str, list] = {}
    if "encoder" in trainable:
        out["encoder"] = list(sk.encoder.parameters())
    if "connector" in trainable:
        out["connector"] = list(sk.connector.trainable_parameters())
    if "llm" in trainable:
        out["llm"] = list(sk.lm.parameters())
    return out


def param_counts(sk: Skeleton, trainable: list[str]) -> dict[str, int]:
    """The same dictionary ``VLM.param_counts`` gives after ``set_trainable(trainable)``."""
    out = {"encoder": _numel(sk.encoder.parameters()),
           "hr_encoder": _numel(sk.hr_encoder.parameters()) if sk.hr_encoder is not None else 0,
           "connector": _numel(sk.connector.parameters()), "llm": _numel(sk.lm.parameters())}
    out["total"] = sum(out.values())
    out["trainable"] = sum(_numel(ps) for ps in trained_params(sk, trainable).values())
    return out


# -- activations, by counting what autograd saves on meta ----------------------------------------------------------
class _Saved:
    """``saved_tensors_hooks`` that sum the storage bytes autograd keeps for the backward (parameters excluded: they
    are counted as weights; a storage saved twice counts once)."""

    def __init__(self, exclude: set[int]):
        self.exclude, self.sizes = exclude, {}

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s._cdata not in self.exclude:
            self.sizes[s._cdata] = s.nbytes()
        return t

    @property
    def total(self) -> int:
        return sum(self.sizes.values())

    @property
    def largest(self) -> int:
        return max(self.sizes.values(), default=0)


class _FusedAttention(torch.autograd.Function):
    """Stands in for ``scaled_dot_product_attention`` while tracing: on meta, PyTorch picks the math kernel, which
    saves the ``[B, heads, T, T]`` probabilities; the kernels a GPU (flash, memory-efficient) or a CPU (flash) run
    save only q, k, v, the output and a ``[B, heads, T]`` log-sum-exp, and that is what this saves."""

    @staticmethod
    def forward(ctx, q, k, v):
        out = q.new_empty(*q.shape[:-1], v.shape[-1])
        lse = q.new_empty(q.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, _, _ = ctx.saved_tensors
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _fused_sdpa(q, k, v, *args, **kwargs):
    return _FusedAttention.apply(q, k, v)


@contextlib.contextmanager
def _meta_tracing():
    """transformers inspects position ids for packed rows with ``.item()``; a meta tensor has no values. Rows here are
    never packed, so that check is skipped while tracing. Attention runs as a fused kernel would (``_FusedAttention``)."""
    import torch.nn.functional as F
    import transformers.masking_utils as mu

    orig_packed, orig_sdpa = mu.find_packed_sequence_indices, F.scaled_dot_product_attention
    mu.find_packed_sequence_indices = lambda *a, **k: None
    F.scaled_dot_product_attention = _fused_sdpa
    try:
        yield
    finally:
        mu.find_packed_sequence_indices, F.scaled_dot_product_attention = orig_packed, orig_sdpa


def _param_storages(*modules) -> set[int]:
    return {p.untyped_storage()._cdata for m in modules if m is not None for p in m.parameters()}


def step_activations(sk: Skeleton, trainable: list[str], seqs: int, seq_len: int) -> dict[str, int]:
    """Bytes autograd saves for one micro-batch of ``seqs`` sequences of ``seq_len`` tokens with one image each:
    ``{"vlm": connector + LM + loss, "largest": the largest saved tensor, "encoder": see module docstring}``."""
    parts = trained_params(sk, trainable)
    for module in (sk.encoder, sk.hr_encoder, sk.connector, sk.lm):
        if module is not None:
            module.requires_grad_(False)
    for ps in parts.values():
        for p in ps:
            p.requires_grad_(True)
    spec = sk.encoder.spec
    pixels = torch.zeros(seqs, 3, sk.encoder.resolution, sk.encoder.resolution, device=META)
    saved = _Saved(_param_storages(sk.encoder, sk.hr_encoder, sk.connector, sk.lm))
    enc = 0
    with _meta_tracing(), torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
        if "encoder" in trainable:
            feats = sk.encoder(pixels)
            enc = saved.total
        else:
            feats = torch.zeros(seqs, spec.num_patches, spec.dim, device=META)
        hr = None
        if sk.hr_encoder is not None:
            res = sk.hr_encoder.resolution
            with torch.no_grad():
                hr = sk.hr_encoder.forward_maps(torch.zeros(seqs, 3, res, res, device=META))
        visual = sk.connector(feats, hr)  # [seqs, M, d]
        m = visual.shape[1]
        if m > seq_len:
            raise ValueError(f"plan: {m} visual tokens do not fit data.max_len={seq_len}")
        text_ids = torch.zeros(seqs, seq_len - m, dtype=torch.long, device=META)
        text = sk.lm.get_input_embeddings()(text_ids)
        emb = torch.cat([visual.to(text.dtype), text], dim=1)
        labels = torch.zeros(seqs, seq_len, dtype=torch.long, device=META)
        layers = _decoder_layers(sk.lm)
        spans: list[int] = []  # bytes saved inside each decoder layer
        hooks = [layer.register_forward_pre_hook(lambda *_: spans.append(-saved.total)) for layer in layers]
        hooks += [layer.register_forward_hook(lambda *_: spans.__setitem__(-1, spans[-1] + saved.total))
                  for layer in layers]
        try:
            sk.lm(inputs_embeds=emb, attention_mask=None, labels=labels, use_cache=False)
        finally:
            for h in hooks:
                h.remove()
    # runtime.activation_checkpointing keeps each layer's input and recomputes one layer at a time in the backward
    checkpointed = saved.total - enc - sum(spans) + len(spans) * emb.numel() * emb.element_size() + max(spans, default=0)
    return {"vlm": saved.total - enc, "vlm_checkpointed": checkpointed, "largest": saved.largest, "encoder": enc}


def _decoder_layers(lm) -> list[torch.nn.Module]:
    """The LM's decoder layers: the module list as long as ``config.num_hidden_layers``."""
    n = int(lm.config.num_hidden_layers)
    for module in lm.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return list(module)
    raise ValueError(f"plan: no list of {n} decoder layers in {type(lm).__name__}")


def bank_chunk(sk: Skeleton, cfg: DictConfig) -> int:
    """``runtime.feature_chunk``, with 0 (auto) worked out as the feature bank does from the features' size."""
    from harness.data.features import FeatureBank

    chunk = int(cfg.runtime.get("feature_chunk", 0))
    return chunk or FeatureBank.auto_chunk(SimpleNamespace(encoder=sk.encoder, hr_encoder=sk.hr_encoder))


def frozen_encoder_working_set(encoder, images: int) -> int:
    """Bytes a no-grad forward of ``images`` images holds at once: about one block's share of what a grad-mode
    forward saves, plus the pixels and the output features."""
    res = encoder.resolution
    pixels = torch.zeros(images, 3, res, res, device=META, requires_grad=True)
    saved = _Saved(_param_storages(encoder))
    with _meta_tracing(), torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
        out = encoder(pixels)
    return saved.total // max(1, _blocks(encoder)) + pixels.numel() * 4 + out.numel() * 4


def _blocks(encoder) -> int:
    for name in ("visual.transformer.resblocks", "model.blocks", "model.vision_model.encoder.layers", "tower.stages"):
        obj = encoder
        for attr in name.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if obj is not None:
            return len(obj)
    return 1


# -- one point -----------------------------------------------------------------------------------------------------
@dataclass
class Options:
    mfu: float = 0.35
    peak_tflops: float = H100_BF16_TFLOPS
    gpu_mem_gib: float = 80.0
    world_size: int = 1
    overhead_gib: float = 1.0
    images_per_seq: int = 1


def stage_memory(sk: Skeleton, cfg: DictConfig, stage, opts: Options) -> dict[str, float]:
    """Bytes per GPU during one stage's steps (see the module docstring)."""
    trainable = list(stage.trainable)
    bf16 = cfg.train.get("precision", "fp32") == "bf16"
    fsdp = cfg.runtime.strategy == "fsdp"
    shard = opts.world_size if fsdp else 1
    sharded = {"llm", "connector"}
    modules = {"encoder": sk.encoder, "hr_encoder": sk.hr_encoder, "connector": sk.connector, "llm": sk.lm}
    weights = sum(_nbytes(m.parameters()) / (shard if k in sharded else 1) for k, m in modules.items() if m is not None)
    trained = trained_params(sk, trainable)
    grads = sum(_nbytes(ps) / (shard if k in sharded else 1) for k, ps in trained.items())
    adam = 2 * grads
    micro = cfg.train.batch_size / (cfg.runtime.grad_accum * opts.world_size)
    seqs = max(1, math.ceil(micro))
    act = step_activations(sk, trainable, seqs, int(cfg.data.max_len))
    scale = (0.5 if bf16 else 1.0) * micro / seqs
    activations = (act["vlm_checkpointed" if cfg.runtime.activation_checkpointing else "vlm"] + act["largest"]) * scale
    encoder, bank = 0.0, 0.0
    if "encoder" in trainable:
        encoder = act["encoder"] * scale
    elif cfg.runtime.feature_cache:  # the first step encodes the split in chunks (features.FeatureBank), once
        chunk = bank_chunk(sk, cfg)  # images per encoder forward (harness.data.features.FeatureBank)
        bank = frozen_encoder_working_set(sk.encoder, chunk) + (
            frozen_encoder_working_set(sk.hr_encoder, chunk) if sk.hr_encoder is not None else 0)
    else:  # encoded afresh every step, without gradients
        encoder = frozen_encoder_working_set(sk.encoder, seqs * opts.images_per_seq) * micro / seqs
    autocast = 0.5 * _nbytes(p for p in sk.lm.parameters() if p.dim() == 2) / (shard if fsdp else 1) if bf16 else 0.0
    step_transient = grads  # AdamW's foreach denominator, allocated when the activations are gone
    # DDP (several processes, not FSDP) all-reduces through flat buckets that copy every gradient
    buckets = grads if opts.world_size > 1 and not fsdp else 0.0
    overhead = opts.overhead_gib * GIB
    train_step = weights + grads + buckets + adam + max(activations + encoder + autocast, step_transient) + overhead
    return {"weights": weights, "gradients": grads, "adam": adam, "activations": activations,
            "encoder_forward": encoder, "autocast_copies": autocast, "optimizer_step": step_transient,
            "ddp_buckets": buckets,
            "overhead": overhead, "train_step": train_step, "feature_bank_encode": bank,
            "total": max(train_step, weights + bank + overhead)}


def stage_flops(sk: Skeleton, cfg: DictConfig, stage, enc_flops: float, conn_flops: float, opts: Options) -> float:
    trainable = list(stage.trainable)
    lm_conf = sk.lm.config
    if "encoder" in trainable:
        mode = "trained"
    else:
        mode = "cached" if cfg.runtime.feature_cache else "frozen"
    batch = int(cfg.train.batch_size)
    return step_flops(
        seq_lens=[int(cfg.data.max_len)] * batch, images=batch * opts.images_per_seq,
        llm_params=llm_matmul_params(sk.lm), llm_layers=int(lm_conf.num_hidden_layers),
        llm_width=int(lm_conf.hidden_size), llm_trains="llm" in trainable, encoder_flops_per_image=enc_flops,
        encoder_mode=mode, connector_flops_per_image=conn_flops, connector_trains="connector" in trainable,
    ).total


def plan_point(cfg: DictConfig, opts: Options) -> dict[str, Any]:
    """One row of the plan (plain numbers; bytes and FLOPs)."""
    sk = skeleton(cfg)
    res = sk.encoder.resolution
    enc_flops = module_forward_flops(sk.encoder, torch.zeros(1, 3, res, res, device=META))
    conn_flops = sk.connector.flops_per_image()
    stages = []
    for stage in cfg.train.stages:
        mem = stage_memory(sk, cfg, stage, opts)
        step = stage_flops(sk, cfg, stage, enc_flops, conn_flops, opts)
        stages.append({"name": stage.name, "trainable": list(stage.trainable), "steps": int(stage.steps),
                       "params": param_counts(sk, list(stage.trainable)), "memory_bytes": mem,
                       "flops_per_step": step, "flops": step * int(stage.steps)})
    peak = max(stages, key=lambda s: s["memory_bytes"]["total"])
    run_flops = sum(s["flops"] for s in stages)
    gpu_hours = run_flops / (opts.mfu * opts.peak_tflops * 1e12) / 3600
    return {"choices": choices(cfg), "params": stages[0]["params"], "stages": stages,
            "memory_bytes": peak["memory_bytes"], "memory_stage": peak["name"],
            "fits": peak["memory_bytes"]["total"] <= opts.gpu_mem_gib * GIB,
            "flops_per_step": stages[0]["flops_per_step"], "flops": run_flops, "gpu_hours": gpu_hours,
            "micro_batch": cfg.train.batch_size / (cfg.runtime.grad_accum * opts.world_size),
            "seq_len": int(cfg.data.max_len), "encoder_flops_per_image": enc_flops,
            "connector_flops_per_image": conn_flops, "notes": sk.notes}


def plan(overrides: list[str], multirun: bool, opts: Options) -> list[dict[str, Any]]:
    rows = []
    for point in expand(overrides, multirun):
        cfg = compose(point)
        try:
            row = plan_point(cfg, opts)
        except (RuntimeError, ValueError, OSError) as err:  # one unplannable point must not hide the others
            row = {"choices": choices(cfg), "error": f"{type(err).__name__}: {' '.join(str(err).split())}", "fits": None,
                   "gpu_hours": float("nan")}
        row["overrides"] = point
        rows.append(row)
    return rows


# -- printing ------------------------------------------------------------------------------------------------------
def _human(n: float) -> str:
    for unit, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.3g}"


def table(rows: list[dict[str, Any]], opts: Options) -> str:
    varying = [k for k in CHOICE_KEYS if len({r["choices"].get(k) for r in rows}) > 1] or ["connector"]
    per_point = [dict(o.split("=", 1) for o in r["overrides"] if "=" in o) for r in rows]
    swept = [k for k in dict.fromkeys(k for p in per_point for k in p)
             if k not in varying and len({p.get(k) for p in per_point}) > 1]
    head = ["#", *varying, *swept, "params", "trainable", "weights", "grads", "adam", "acts", "enc fwd",
            "GiB/GPU", "fits", "FLOP/step", "FLOP/run", "GPU-h"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in enumerate(rows):
        cells = [str(i), *[r["choices"].get(k, "") for k in varying], *[per_point[i].get(k, "") for k in swept]]
        if "error" in r:
            cells += ["NaN"] * (len(head) - len(cells) - 1) + [r["error"]]
            out.append("| " + " | ".join(cells) + " |")
            continue
        m, p = r["memory_bytes"], r["params"]
        trainable = " / ".join(_human(s["params"]["trainable"]) for s in r["stages"])
        cells += [_human(p["total"]), trainable, *[f"{m[k] / GIB:.2f}" for k in
                  ("weights", "gradients", "adam", "activations", "encoder_forward", "total")],
                  "yes" if r["fits"] else f"NO (> {opts.gpu_mem_gib:g})", _human(r["flops_per_step"]),
                  _human(r["flops"]), f"{r['gpu_hours']:.3g}"]
        out.append("| " + " | ".join(cells) + " |")
    total = sum(r["gpu_hours"] for r in rows if "error" not in r)
    bad = [str(i) for i, r in enumerate(rows) if r.get("fits") is False]
    failed = [str(i) for i, r in enumerate(rows) if "error" in r]
    out.append("")
    fixed = [o for o in rows[0]["overrides"] if o.split("=", 1)[0] not in (*swept, *varying)] if rows else []
    if fixed:
        out.append(f"every point: {' '.join(fixed)}")
    out.append(f"{len(rows)} point(s); sweep total {total:.3g} GPU-hours at MFU {opts.mfu:g} x {opts.peak_tflops:g} "
               f"TFLOP/s (every sequence at data.max_len, so an upper bound); memory per GPU at world size "
               f"{opts.world_size}, incl. {opts.overhead_gib:g} GiB overhead.")
    if bad:
        out.append(f"Will NOT fit {opts.gpu_mem_gib:g} GiB: point(s) {', '.join(bad)} (raise runtime.grad_accum, "
                   "set runtime.activation_checkpointing=true, runtime.strategy=fsdp, or train.precision=bf16).")
    if failed:
        out.append(f"Not planned: point(s) {', '.join(failed)} (see the error column); their GPU-hours are missing.")
    notes = sorted({n for r in rows for n in r.get("notes", [])})
    out += [f"note: {n}" for n in notes]
    return "\n".join(out)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, Options]:
    ap = argparse.ArgumentParser(prog="python -m harness.plan", description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--multirun", action="store_true", help="expand comma-separated values into a grid")
    ap.add_argument("--mfu", type=float, default=0.35, help="model FLOPs utilisation assumed (default 0.35)")
    ap.add_argument("--peak-tflops", type=float, default=H100_BF16_TFLOPS, help="per-GPU peak (default H100 bf16 989)")
    ap.add_argument("--gpu-mem-gib", type=float, default=80.0, help="flag points above this memory per GPU")
    ap.add_argument("--world-size", type=int, default=1, help="GPUs per point (DDP, or FSDP shards)")
    ap.add_argument("--overhead-gib", type=float, default=1.0, help="CUDA context and allocator slack per GPU")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, as given to sweep.py")
    args = ap.parse_args(argv)
    for name, ok, accepted in (("--mfu", 0 < args.mfu <= 1, "in (0, 1]"), ("--peak-tflops", args.peak_tflops > 0, "> 0"),
                               ("--gpu-mem-gib", args.gpu_mem_gib > 0, "> 0"), ("--world-size", args.world_size >= 1,
                               ">= 1"), ("--overhead-gib", args.overhead_gib >= 0, ">= 0")):
        if not ok:
            ap.error(f"{name}={getattr(args, name[2:].replace('-', '_'))} is out of range; accepted: {accepted}")
    return args, Options(args.mfu, args.peak_tflops, args.gpu_mem_gib, args.world_size, args.overhead_gib)


def main(argv: list[str] | None = None) -> int:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    args, opts = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        rows = plan(args.overrides, args.multirun, opts)
    except (HydraException, OmegaConfBaseException) as err:  # a misspelt option or key: Hydra's own message
        raise SystemExit(f"plan: cannot compose the sweep: {' '.join(str(err).split())}") from err
    print(table(rows, opts))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"options": opts.__dict__, "rows": rows}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
