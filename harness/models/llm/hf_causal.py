"""``hf``: any transformers causal LM, pretrained from a hub id or a local folder, or random-initialised from a config.

MM1 (§3.1, §3.4) starts every ablation from a pretrained decoder-only LLM (1.2B for the ablations; 3B-30B for the
final models); LLaVA uses Vicuna, MiniGPT-4 Vicuna/Llama-2, Mini-Gemini Vicuna/Mixtral. One wrapper covers them all,
because the VLM only needs what every ``AutoModelForCausalLM`` provides (see ``harness.models.llm.base``).

Two ways to build:

* ``model: <hub id or folder>``: weights and tokenizer ``from_pretrained`` (``tokenizer`` names another one when the
  model folder has none). The run sets ``HF_HUB_OFFLINE=1``, so the weights must already be in the Hugging Face cache
  or on disk; a missing one is a one-line error saying so.
* ``model: null`` with ``config``: ``AutoConfig.for_model(model_type, **config)``, seeded random init. Without a hub
  tokenizer the world's BPE tokenizer is used (``world_vocab`` entries), so this variant runs offline: the tiny test
  variant (``sweeps/llm/hf.yaml``) and the ~1B benchmark model (``hf_llama_1b``) whose speed, not text, matters.
  ``config.vocab_size`` above the tokenizer's size keeps the larger embedding and head (their FLOPs are real).
  Keys left out of ``config`` take the architecture's transformers defaults (``LlamaConfig``: the 7B shape), so a
  shape is given in full: ``hf_qwen2_5_0_5b_random`` is Qwen2.5-0.5B's. The record says ``random`` (``cfg.init``).

The VLM's special tokens ``<image>`` and ``<eoc>`` (harness.models.llm.tokenizer) are added to a hub tokenizer when
missing, with a pad token when it has none, and the embedding matrix grows to match (new rows: the mean of the old
ones, the usual initialisation that keeps the first logits of a pretrained model sane).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.models.encoders.external import looks_like_path, missing_path, offline_failure, seeded, weights_meta
from harness.models.llm.base import LLMS, TOKENIZERS, LanguageModel, LLMCfg
from harness.models.llm.tokenizer import EOC, IMAGE, PAD, world_tokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class HFCausalCfg(LLMCfg):
    name: str = "hf"
    model: str | None = None  # hub id (Qwen/Qwen2.5-0.5B) or local folder; null = random init from ``config``
    tokenizer: str | None = None  # hub id or folder when not the model's own; null = the model's (or the world's)
    model_type: str = "llama"  # random init: the architecture (AutoConfig.for_model)
    config: dict[str, Any] = field(default_factory=dict)  # random init: its config keys (hidden_size, ...)
    world_vocab: int = 512  # random init without ``tokenizer``: BPE vocabulary trained on the world's text
    dtype: str = "float32"  # weights as loaded; training precision is train.precision
    attn_implementation: str = "sdpa"  # sdpa | eager | flash_attention_2 (when installed)
    init_seed: int = 0

    @property
    def init(self) -> str:
        """``random`` (built from ``config``) or ``pretrained:<hub id or folder>``; in ``meta["init"]`` and the run
        record, so a random-init LLM is never read as the pretrained model of the same shape."""
        return "random" if self.model is None else f"pretrained:{self.model}"


def _check(cfg: HFCausalCfg) -> None:
    if cfg.model is None and not cfg.config:
        raise ValueError("hf: set model (hub id or local folder) or config (random init, with model_type)")
    if cfg.model is not None and cfg.config:
        raise ValueError("hf: set model (pretrained) or config (random init), not both")
    if cfg.dtype not in DTYPES:
        raise ValueError(f"hf: dtype must be one of {list(DTYPES)}, got '{cfg.dtype}'")


def _source(name: str, what: str) -> str:
    if looks_like_path(name):
        path = Path(name).expanduser()
        if not path.is_dir():
            raise missing_path("hf", name, what)
        return str(path)
    return name


@TOKENIZERS.register("hf")
def hf_tokenizer(cfg: HFCausalCfg, world, cache_root):
    """The model's tokenizer with the VLM's special tokens (or the world's BPE tokenizer for a random init)."""
    _check(cfg)
    name = cfg.tokenizer or cfg.model
    if name is None:
        return world_tokenizer(world, cfg.world_vocab, Path(cache_root))
    from transformers import AutoTokenizer

    source = _source(name, "model folder" if name == cfg.model else "tokenizer folder")
    try:
        tok = AutoTokenizer.from_pretrained(source)
    except OSError as err:
        raise offline_failure("hf", name, err) from err
    missing = [t for t in (IMAGE, EOC) if t not in tok.get_vocab()]
    if missing:
        tok.add_tokens(missing, special_tokens=True)  # special: never split into sub-words
    if tok.pad_token is None:  # Llama and Qwen base tokenizers have none; batching needs one
        tok.add_special_tokens({"pad_token": PAD})
    if tok.bos_token_id is None:  # sequences start with <bos> (harness.data.sequences): Qwen has none
        tok.bos_token = tok.eos_token
    return tok


def _grow_embeddings(model, n_tokens: int) -> None:
    """Resize the (possibly tied) embeddings to ``n_tokens`` rows, new rows at the mean of the old ones."""
    emb = model.get_input_embeddings()
    old = emb.weight.shape[0]
    if n_tokens <= old:
        return
    mean = emb.weight.detach().mean(0)
    model.resize_token_embeddings(n_tokens, mean_resizing=False)
    with torch.no_grad():
        model.get_input_embeddings().weight[old:] = mean
        head = model.get_output_embeddings()
        if head is not None and head.weight is not model.get_input_embeddings().weight:
            head.weight[old:] = head.weight[:old].mean(0)


@LLMS.register("hf", cfg=HFCausalCfg)
def build_hf_causal(cfg: HFCausalCfg, world, cache_root) -> LanguageModel:
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = hf_tokenizer(cfg, world, cache_root)
    dtype = DTYPES[cfg.dtype]
    if cfg.model is None:
        conf = AutoConfig.for_model(cfg.model_type, **{"vocab_size": len(tok), **cfg.config})
        conf.vocab_size = max(conf.vocab_size, len(tok))
        conf.pad_token_id, conf.bos_token_id, conf.eos_token_id = tok.pad_token_id, tok.bos_token_id, tok.eos_token_id
        with seeded(cfg.init_seed):
            model = AutoModelForCausalLM.from_config(conf, attn_implementation=cfg.attn_implementation, dtype=dtype)
        weights: dict = {"random_init_seed": cfg.init_seed}
    else:
        source = _source(cfg.model, "model folder")
        try:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, attn_implementation=cfg.attn_implementation)
        except OSError as err:
            raise offline_failure("hf", cfg.model, err) from err
        weights = {"hub_or_path": cfg.model, "commit": getattr(model.config, "_commit_hash", None)}
        _grow_embeddings(model, len(tok))
        model.config.pad_token_id = tok.pad_token_id
    params = sum(p.numel() for p in model.parameters())
    meta = weights_meta(cfg, weights, ("transformers",)) | {"params": params, "cfg": asdict(cfg)}  # + "init"
    return LanguageModel(model=model, tokenizer=tok, meta=meta)
