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


def test_each_image_tokens_are_computed_once_with_the_same_answers(world, tiny_vlm, tmp_path):
    # A batch-invariant connector (avg_pool here) computes an image's visual tokens once per evaluation: VQA asks
    # several questions of each image, and 0-shot query images return at 2 shots. The answers must be the bits the
    # batch-by-batch path gives (what c_abstractor still takes, batch_invariant = False).
    cfg = EvalCfg(name="t", max_images=6, batch_size=4, max_new_tokens_caption=8, max_new_tokens_vqa=4, text_tasks=[])
    seen: list[int] = []
    hook = tiny_vlm.connector.register_forward_hook(lambda mod, args, out: seen.append(out.shape[0]))
    try:
        answers, computed = {}, {}
        for invariant in (True, False):
            tiny_vlm.connector.batch_invariant = invariant  # an instance attribute, removed below
            (tmp_path / str(invariant)).mkdir()
            ev = Evaluator(tiny_vlm, world, cfg, tmp_path / str(invariant), seed=0)
            seen.clear()
            answers[invariant] = [[q["raw"] for q in ev.run_task("vqa", k, 0, tmp_path / str(invariant))]
                                  for k in (0, 2)]
            computed[invariant] = sum(seen)
    finally:
        hook.remove()
        del tiny_vlm.connector.batch_invariant
    assert answers[True] == answers[False]
    n_questions = len(answers[True][0])
    assert n_questions > 6  # several questions per image, or the test shows nothing
    # batch by batch: every slot of every prompt (3 images a 2-shot prompt); once each: at most the 6 query images
    # and the 2-shot demonstrations drawn
    assert computed[False] == n_questions * (1 + 3)
    assert computed[True] <= 6 + 2 * n_questions and computed[True] < computed[False] / 2


def test_without_a_cache_folder_only_the_images_shown_are_encoded(world, tiny_vlm, tmp_path):
    # A point trained with runtime.feature_cache=false is evaluated with no cache folder. Its 2-shot demonstrations
    # once made the evaluator encode the whole train split in memory (8000 real-size images for 12 queries); now the
    # images a batch shows are encoded, rounded to float16 as a store holds them, so the answers are the stored ones.
    cfg = EvalCfg(name="t", max_images=2, batch_size=4, max_new_tokens_caption=8, text_tasks=[])
    raws, encoded = {}, {}
    for cached in (True, False):
        out = tmp_path / str(cached)
        out.mkdir()
        ev = Evaluator(tiny_vlm, world, cfg, out, seed=0, cache_dir=tmp_path / "cache" if cached else None)
        raws[cached] = [q["raw"] for q in ev.run_task("caption", 2, 0, out)]
        encoded[cached] = ev.banks["train"].encoded
    assert raws[True] == raws[False]
    assert encoded[True] == len(world.samples("train")) and 0 < encoded[False] <= 2 * 2  # 2 queries, 2 demos each


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
