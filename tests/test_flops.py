"""The MFU numerator (harness.train.flops) on hand-computed cases, and the training benchmark's JSON."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from harness.train.flops import llm_matmul_params, step_flops
from tests.conftest import ROOT

# 2 images through an encoder of 2,000 forward FLOPs each and a connector of 50; an LLM of 1,000 matmul
# parameters, 2 layers of width 8; two sequences of 10 and 20 real tokens.
CASE = {"seq_lens": [10, 20], "images": 2, "llm_params": 1000, "llm_layers": 2, "llm_width": 8,
        "encoder_flops_per_image": 2000, "connector_flops_per_image": 50}


def test_connector_stage_by_hand():
    f = step_flops(**CASE, llm_trains=False, encoder_mode="frozen")
    assert f.encoder == 2000 * 2  # one frozen forward per image
    assert f.connector == 3 * 50 * 2  # forward + input and weight gradients
    assert f.llm == 4 * 1000 * 30  # frozen LLM passing gradients down: forward 2N + input-gradient 2N per token
    assert f.attention == 3 * 2 * 2 * 8 * (10**2 + 20**2)  # causal 2 t^2 d per layer, x3 with its backward
    assert f.total == 4000 + 300 + 120_000 + 48_000


def test_full_stage_from_the_cache_by_hand():
    f = step_flops(**CASE, llm_trains=True, encoder_mode="cached")
    assert f.encoder == 0  # features read from the cache: no encoder FLOPs in the step
    assert f.llm == 6 * 1000 * 30
    assert f.total == 0 + 300 + 180_000 + 48_000
    # packing changes nothing: attention is per sequence, and padding is never in seq_lens
    assert step_flops(**{**CASE, "seq_lens": [20, 10]}, llm_trains=True, encoder_mode="cached").total == f.total


@pytest.mark.parametrize("tied", [True, False])
def test_llm_matmul_params_leave_out_the_embedding_lookup(tied):
    from transformers import LlamaConfig, LlamaForCausalLM

    conf = LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=tied)
    lm = LlamaForCausalLM(conf)
    layer = 4 * 16 * 16 + 3 * 16 * 32 + 2 * 16  # q, k, v, o; gate, up, down; two norms
    expected = layer + 16 + 100 * 16  # the final norm and the head (the tied matrix counted once, as the head)
    assert llm_matmul_params(lm) == expected


def test_no_peak_is_quoted_for_a_cpu():
    import torch

    from harness.train.flops import peak_tflops

    value, why = peak_tflops(torch.device("cpu"))
    assert math.isnan(value) and "pass --peak-tflops" in why


def test_train_bench_writes_json(sweep_env, tmp_path):
    cmd = [sys.executable, "-m", "harness.bench", "train", "--preset", "small", "--variants", "base,packing",
           "--stages", "connector", "--steps", "1", "--warmup", "1", "--batches", "2", "--threads", "1", "--out",
           str(tmp_path), "--peak-tflops", "1", "train.batch_size=4"]
    res = subprocess.run(cmd, env=sweep_env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (out,) = tmp_path.glob("train-*.json")
    result = json.loads(out.read_text())
    assert [r["variant"] for r in result["rows"]] == ["base", "packing"]
    for r in result["rows"]:
        assert r["flops_per_step"] > 0 and r["tokens_per_s"] > 0
        assert r["mfu"] == pytest.approx(r["achieved_tflops"] / 1.0)  # against the given 1 TFLOP/s peak
    base, packed = result["rows"]
    assert packed["padding_fraction"] <= base["padding_fraction"]
    # The preload ran with the encoder frozen, on the timed batches' images only: no step encoded anything.
    pre = result["preload"]
    assert 0 < pre["images"] == pre["encoded"] <= 2 * 4 * 8  # 2 batches of 4 examples, a few images each
    assert base["images_encoded"] == packed["images_encoded"] == 0
