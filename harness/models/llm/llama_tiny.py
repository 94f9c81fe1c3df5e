"""``llama_tiny``: a Llama-architecture causal LM pre-trained by the harness on the world's text.

MM1 starts from a text-pre-trained LLM (§3.1, 1.2B decoder-only). Offline, the embedded default builds a
``transformers.LlamaForCausalLM`` from a config (random init), trains a BPE tokenizer on the world's text and
pre-trains the LM on that text (captions, scene passages with questions, document text) for a fixed budget. The
result is cached content-addressed by (world, tokenizer, config), so every sweep point reuses one pre-trained LM.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from harness.artifacts import build_once, content_hash, read_meta, tokenizer_fingerprint
from harness.models.llm.base import LLMS, TOKENIZERS, LanguageModel, LLMCfg
from harness.models.llm.tokenizer import world_tokenizer
from harness.progress import note, progress
from harness.train.schedule import pretrain_warmup_cosine


@dataclass
class LlamaTinyCfg(LLMCfg):
    name: str = "llama_tiny"
    vocab_size: int = 512
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    intermediate: int = 320
    max_len: int = 1024
    # text pre-training on the world's corpus
    pretrain_steps: int = 400
    pretrain_batch: int = 32
    pretrain_seq_len: int = 128
    pretrain_lr: float = 3e-3
    pretrain_seed: int = 0


def _llama(cfg: LlamaTinyCfg, tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    conf = LlamaConfig(
        vocab_size=len(tok), hidden_size=cfg.hidden, intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads,
        max_position_embeddings=cfg.max_len, tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    return LlamaForCausalLM(conf)


def _token_stream(world, tok) -> np.ndarray:
    """All pre-training text as one id stream, documents separated by <bos> ... <eos>."""
    ids: list[int] = []
    for text in world.all_text("train"):
        ids.append(tok.bos_token_id)
        ids.extend(tok(text, add_special_tokens=False)["input_ids"])
        ids.append(tok.eos_token_id)
    return np.asarray(ids, dtype=np.int64)


def pretrain_lm(cfg: LlamaTinyCfg, world, tok, out: Path) -> dict:
    torch.manual_seed(cfg.pretrain_seed)
    rng = np.random.default_rng(cfg.pretrain_seed)
    model = _llama(cfg, tok)
    stream = _token_stream(world, tok)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.pretrain_lr, weight_decay=0.01, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, pretrain_warmup_cosine(cfg.pretrain_steps))
    L, B = cfg.pretrain_seq_len, cfg.pretrain_batch
    losses, t0 = [], time.time()
    model.train()
    for step in progress(range(cfg.pretrain_steps), f"{cfg.name} pre-training", "step"):
        starts = rng.integers(0, len(stream) - L - 1, size=B)
        batch = torch.from_numpy(np.stack([stream[s : s + L] for s in starts]))
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 100 == 0 or step == cfg.pretrain_steps - 1:
            note(f"[llama_tiny] step {step:4d}/{cfg.pretrain_steps} loss {loss:.3f} ({time.time() - t0:.0f}s)")
    model.save_pretrained(str(out / "model"))
    tok.save_pretrained(str(out / "model"))
    curve = [float(np.mean(losses[i : i + 50])) for i in range(0, len(losses), 50)]
    (out / "loss.json").write_text(json.dumps({"every": 50, "mean_loss": curve}))
    return {
        "cfg": asdict(cfg), "tokens_in_corpus": len(stream), "final_loss": curve[-1], "first_loss": curve[0],
        "params": sum(p.numel() for p in model.parameters()), "tokens_seen": cfg.pretrain_steps * B * L,
        "train_wall_s": round(time.time() - t0, 1),
    }


@TOKENIZERS.register("llama_tiny")
def llama_tiny_tokenizer(cfg: LlamaTinyCfg, world, cache_root):
    return world_tokenizer(world, cfg.vocab_size, Path(cache_root))


@LLMS.register("llama_tiny", cfg=LlamaTinyCfg)
def build_llama_tiny(cfg: LlamaTinyCfg, world, cache_root) -> LanguageModel:
    from transformers import LlamaForCausalLM

    tok = llama_tiny_tokenizer(cfg, world, cache_root)
    key = {"cfg": asdict(cfg), "world": world.hash, "tokenizer": tokenizer_fingerprint(tok), "v": 1}
    path = Path(cache_root) / "llm" / f"{cfg.name}-{content_hash(key)}"
    with torch.random.fork_rng(devices=[]):  # pre-training seeds itself; the caller's RNG stays as it was
        build_once(path, lambda tmp: pretrain_lm(cfg, world, tok, tmp))
    model = LlamaForCausalLM.from_pretrained(str(path / "model"))
    meta = read_meta(path) | {"artifact": str(path)}
    return LanguageModel(model=model, tokenizer=tok, meta=meta)
