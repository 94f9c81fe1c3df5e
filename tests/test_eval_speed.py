"""The eval speed benchmark's identity check: batched KV-cache decoding (left padding, rows leaving the batch as they
stop) gives exactly what transformers' ``generate`` gives one prompt at a time. Correctness only; nothing is timed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from harness.config.schema import EvalCfg
from harness.diagnostics.speed_eval import compare, eval_points
from harness.eval.runner import Evaluator
from harness.world import World, WorldCfg
from tests.conftest import MICRO, ROOT

MICRO_WORLD = WorldCfg(name="shapes_micro", n_train=80, n_val=10, n_test=12, n_docs=20, n_texts=60)


def build_tiny_vlm(world, tok_dir):
    """A random VLM whose answers depend on the prompt and image. At the default init (std 0.02) a random LM writes
    one token over and over, whatever the input, and never a stop token: every decoder would agree, padding and
    position bugs included. Weights drawn with std 0.3 give varied answers of varied lengths, some ending early."""
    from harness.models.connectors import build_connector
    from harness.models.connectors.avg_pool import AvgPoolCfg
    from harness.models.encoders.clip_tiny import ClipTinyCfg, ClipTinyEncoder, make_clip
    from harness.models.llm.base import LanguageModel
    from harness.models.llm.llama_tiny import LlamaTinyCfg, _llama
    from harness.models.llm.tokenizer import world_tokenizer
    from harness.models.vlm import VLM

    torch.manual_seed(0)
    tok = world_tokenizer(world, 200, tok_dir)
    llm = LanguageModel(_llama(LlamaTinyCfg(hidden=64, layers=2, heads=4, intermediate=128), tok), tok)
    for p in llm.model.parameters():
        if p.dim() == 2:  # embeddings and projections; the norms keep their unit scale
            torch.nn.init.normal_(p, std=0.3)
    ecfg = ClipTinyCfg(width=32, layers=1, head_width=16)
    enc = ClipTinyEncoder(make_clip(ecfg, len(tok), tok.pad_token_id, tok.eos_token_id).visual, ecfg, 32)
    conn = build_connector(AvgPoolCfg(name="avg_pool", num_tokens=4), enc.spec, llm.d_model)
    return VLM(enc, conn, llm).eval().requires_grad_(False)  # frozen, as after training


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World.build_or_load(MICRO_WORLD, tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def tiny_vlm(world, tmp_path_factory):
    return build_tiny_vlm(world, tmp_path_factory.mktemp("tok"))


def test_batched_decoding_equals_generate_one_prompt_at_a_time(world, tiny_vlm, tmp_path):
    # batch 4 over 6 prompts per point: two batches, one of them padded to its longest prompt
    cfg = EvalCfg(name="t", max_images=6, batch_size=4, max_new_tokens_caption=8, max_new_tokens_vqa=4, text_tasks=[])
    ev = Evaluator(tiny_vlm, world, cfg, tmp_path, seed=0)
    lengths = [len(ids) for pt in eval_points(ev, 6, [0, 2]) for ids in ev.generate_ids(pt.prompts, pt.max_new)]
    # the stop rule is exercised: some answers end at <eoc>/<eos> before the budget, some run to it
    assert min(lengths) < 4 and max(lengths) == 8, lengths
    result = compare(ev, n=6, shots=[0, 2])
    assert result["samples"] == 24 and [(r["task"], r["shots"], r["n"]) for r in result["rows"]] == [
        ("caption", 0, 6), ("caption", 2, 6), ("vqa", 0, 6), ("vqa", 2, 6)]
    assert result["mismatched_ids"] == 0 and result["mismatched_text"] == 0, result["mismatch_examples"]


def test_eval_bench_command_writes_json(sweep_env, tmp_path):
    over = [o for o in MICRO if not o.startswith("runtime.")]
    res = subprocess.run([sys.executable, "-m", "harness.bench", "eval", "--n", "2", "--shots", "0,1", "--out",
                          str(tmp_path), *over], env=sweep_env, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (out,) = tmp_path.glob("eval-*.json")
    result = json.loads(out.read_text())
    assert result["benchmark"] == "eval" and result["shots"] == [0, 1] and result["samples"] == 8
    assert result["mismatched_ids"] == 0 and result["mismatched_text"] == 0, result["mismatch_examples"]
    assert result["batched_samples_per_s"] > 0 and result["one_by_one_samples_per_s"] > 0
