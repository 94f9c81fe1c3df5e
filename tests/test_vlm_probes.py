"""VLM probes (harness.diagnostics.probe_vlm): the closed-set score is the answer's likelihood, training on one
question type learns it, a zero rate freezes its part, and the command writes its JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from harness.data.sequences import SequenceBuilder, collate
from harness.data.sources import Chunk, Example
from harness.diagnostics import probe_vlm
from harness.diagnostics.probe_vlm import STARTS, answer_scores, majority, question_items
from harness.models.vlm import VisualInputs
from harness.world import World, WorldCfg
from harness.world.language import qa_line, qa_prompt
from tests.conftest import MICRO, ROOT

WORLD = WorldCfg(name="shapes_micro", n_train=400, n_val=50, n_test=200, n_docs=20, n_texts=50)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World.build_or_load(WORLD, tmp_path_factory.mktemp("world"))


def tiny_vlm(world, tmp_dir, seed: int = 0):
    """A random-init VLM small enough to train in seconds: 1-block ViT, avg_pool to 4 tokens, 1-layer LM."""
    from harness.models.connectors import build_connector
    from harness.models.connectors.avg_pool import AvgPoolCfg
    from harness.models.encoders.clip_tiny import ClipTinyCfg, ClipTinyEncoder, make_clip
    from harness.models.llm.base import LanguageModel
    from harness.models.llm.llama_tiny import LlamaTinyCfg, _llama
    from harness.models.llm.tokenizer import world_tokenizer
    from harness.models.vlm import VLM

    torch.manual_seed(seed)
    tok = world_tokenizer(world, 256, tmp_dir)
    llm = LanguageModel(_llama(LlamaTinyCfg(hidden=32, layers=1, heads=2, intermediate=64), tok), tok)
    ecfg = ClipTinyCfg(width=32, layers=1, head_width=16)
    enc = ClipTinyEncoder(make_clip(ecfg, len(tok), tok.pad_token_id, tok.eos_token_id).visual, ecfg, 32)
    conn = build_connector(AvgPoolCfg(name="avg_pool", num_tokens=4), enc.spec, llm.d_model)
    return VLM(enc, conn, llm)


def feature_getter(vlm, world, split):
    """Image indices -> the frozen encoder's tokens, computed once (what the feature cache does for the command)."""
    with torch.no_grad():
        feats = vlm.encoder.encode(torch.from_numpy(np.array(world.images(split))))
    return lambda idx: VisualInputs(feats[idx])


def test_question_items_filter_by_type_and_object_count(world):
    samples = world.samples("train")
    items = question_items(samples, "shape")
    assert items and all(q.startswith("what shape") for _, q, _ in items)
    single = question_items(samples, "shape", single_object=True)
    assert 0 < len(single) < len(items) and all(len(samples[i]["objects"]) == 1 for i, _, _ in single)
    with pytest.raises(ValueError, match="available: colour, shape, count, position, glyph"):
        question_items(samples, "size")
    with pytest.raises(ValueError, match="available: " + ", ".join(STARTS)):
        probe_vlm.start_connector(None, "best", "shape", None, samples, None, samples, 1, 0)


def test_answer_scores_are_each_answers_log_likelihood(world, tmp_path):
    """The batched, candidate-repeated score equals -(summed token loss) of each full line scored on its own."""
    vlm = tiny_vlm(world, tmp_path).eval()
    get = feature_getter(vlm, world, "test")
    builder = SequenceBuilder(vlm.tokenizer, vlm.num_visual_tokens, 256)
    items = question_items(world.samples("test"), "position")[:3]
    candidates = ["top left", "center", "bottom right"]
    scores = answer_scores(vlm, builder, get, items, candidates, batch_size=2)
    assert scores.shape == (3, 3)
    for r, (i, q, _) in enumerate(items):
        for k, a in enumerate(candidates):
            b = collate([builder.encode(Example("x", [Chunk(i, qa_line(q, a), len(qa_prompt(q)))]))],
                        vlm.tokenizer.pad_token_id)
            n = int((b["labels"] != -100).sum())
            with torch.no_grad():
                loss = vlm(b["input_ids"], b["attention_mask"], b["labels"], get(b["images"])).loss
            assert scores[r, k].item() == pytest.approx(-loss.item() * n, rel=1e-4, abs=1e-4)


def marked_features(world, split: str, dim: int):
    """Features that carry the only object's colour in plain sight (channel k of every token, k the colour's index):
    a stand-in for a connector that already computes the answer, so what is tested is the LM learning to read it
    from images aligned with their questions."""
    from harness.world import COLOURS

    samples, colours = world.samples(split), sorted(COLOURS)
    feats = torch.randn(len(samples), 16, dim, generator=torch.Generator().manual_seed(0)) * 0.1
    for i, s in enumerate(samples):
        feats[i, :, colours.index(s["objects"][0]["colour"])] += 3.0
    return lambda idx: VisualInputs(feats[idx])


def test_training_on_one_type_learns_it_and_a_zero_rate_freezes_the_connector(world, tmp_path):
    """With the answer in the visual tokens, 200 steps of colour questions lift the score far above the majority
    answer (a misaligned image would leave it there); the connector, at rate 0, stays bit-identical."""
    vlm = tiny_vlm(world, tmp_path)
    builder = SequenceBuilder(vlm.tokenizer, vlm.num_visual_tokens, 256)
    train = question_items(world.samples("train"), "colour", single_object=True)
    test = question_items(world.samples("test"), "colour", single_object=True)
    before = [p.detach().clone() for p in vlm.connector.parameters()]
    lm_before = [p.detach().clone() for p in vlm.lm.parameters()]
    rows = probe_vlm.train_one_type(vlm, builder, marked_features(world, "train", 32), train,
                                    marked_features(world, "test", 32), test, steps=200, eval_every=100,
                                    connector_lr=0.0, llm_lr=3e-3, log=lambda _: None)
    assert [r["step"] for r in rows] == [0, 100, 200]
    assert np.isnan(rows[0]["train_loss"]) and rows[-1]["train_loss"] < rows[1]["train_loss"]
    assert rows[-1]["accuracy"] > majority(train, test) + 0.3, rows
    assert all(torch.equal(a, b) for a, b in zip(before, vlm.connector.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(lm_before, vlm.lm.parameters(), strict=True))
    nothing = probe_vlm.train_one_type(vlm, builder, marked_features(world, "train", 32), train,
                                       marked_features(world, "test", 32), test, steps=50, eval_every=10,
                                       connector_lr=0.0, llm_lr=0.0, log=lambda _: None)
    assert [r["step"] for r in nothing] == [0] and nothing[0]["accuracy"] == rows[-1]["accuracy"]


def test_documents_interleave_k_images_and_their_questions_with_loss_on_every_line(world, tmp_path):
    """``images_per_doc`` k: each training sequence is k (image, QA line) pairs in order, as the sweep's themed
    documents are; every QA line is a target, questions included."""
    vlm = tiny_vlm(world, tmp_path)
    builder = SequenceBuilder(vlm.tokenizer, vlm.num_visual_tokens, 256)
    items = question_items(world.samples("train"), "count")[:6]
    (doc,) = probe_vlm._encode_docs(builder, [items[:3]])
    assert doc.images == [i for i, _, _ in items[:3]]
    single = probe_vlm._encode(builder, items[:1], answer_only=False)[0]
    assert len(single.images) == 1 and len(doc.ids) > 2 * len(single.ids)
    text = vlm.tokenizer.decode([t for t, y in zip(doc.ids, doc.labels, strict=True) if y != -100])
    assert all(qa_line(q, a).split(" Answer")[0].split(": ")[1] in text for _, q, a in items[:3])
    rows = probe_vlm.train_one_type(vlm, builder, marked_features(world, "train", 32), items,
                                    marked_features(world, "test", 32), items, steps=2, eval_every=1,
                                    connector_lr=1e-3, llm_lr=1e-3, batch_size=2, images_per_doc=3,
                                    log=lambda _: None)
    assert [r["step"] for r in rows] == [0, 1, 2] and all(np.isfinite(r["train_loss"]) for r in rows[1:])


def test_probe_vlm_command_writes_json(sweep_env, tmp_path):
    over = [o for o in MICRO if not o.startswith("runtime.")]
    res = subprocess.run([sys.executable, "-m", "harness.bench", "probe-vlm", "--question", "colour", "--start", "mean",
                          "--single-object", "--steps", "2", "--eval-every", "1", "--probe-steps", "2", "--n-test", "8",
                          "--connector-lr", "0", "--threads", "1", "--out", str(tmp_path), *over, "connector=avg_pool"],
                         env=sweep_env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    (out,) = tmp_path.glob("probe-vlm-*.json")
    result = json.loads(out.read_text())
    assert result["question"] == "colour" and result["start"] == "mean" and result["connector_lr"] == 0
    assert result["start_probe"]["readout"] == "mean" and result["n_test"] == 8
    assert [r["step"] for r in result["rows"]] == [0, 1, 2]
    assert all(0 <= r["accuracy"] <= 1 for r in result["rows"]) and 0 < result["majority_baseline"] < 1


def test_probe_vlm_trains_on_every_type_in_documents_and_scores_one(sweep_env, tmp_path):
    """--all-types --images-per-doc 2 --n-train: the training set is every type's questions (more than the scored
    type has), laid out two per document; scoring is among the scored type's own answers."""
    over = [o for o in MICRO if not o.startswith("runtime.")]
    res = subprocess.run([sys.executable, "-m", "harness.bench", "probe-vlm", "--question", "count", "--all-types",
                          "--images-per-doc", "2", "--n-train", "40", "--steps", "2", "--eval-every", "2",
                          "--n-test", "8", "--threads", "1", "--out", str(tmp_path), *over, "connector=avg_pool"],
                         env=sweep_env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    (out,) = tmp_path.glob("probe-vlm-*.json")
    result = json.loads(out.read_text())
    assert result["all_types"] and result["images_per_doc"] == 2 and result["n_train"] > 40
    counts = {str(n) for n in range(1, 9)}
    assert 1 < result["answers"] <= len(counts)  # the count answers only, not every type's
    assert [r["step"] for r in result["rows"]] == [0, 2]


def test_probe_runs_seed_the_fresh_connector_with_the_run_seed(shared_cache, monkeypatch):
    # The probe commands start from a fresh connector; its initialisation must follow the seed (as in run_point), or
    # "seeds 0, 1, 2" of a probe would differ only in batch order.
    from harness.diagnostics.probe_encoder import frozen_run

    monkeypatch.setenv("MM_ABLATE_CACHE", str(shared_cache))
    over = [o for o in MICRO if not o.startswith("runtime.")] + ["connector=attn_pool"]
    threads = torch.get_num_threads()
    try:
        runs = {name: frozen_run(o, 1, s) for name, (o, s) in
                {"default": (over, None), "zero": (over, 0), "one": (over, 1), "hydra_one": ([*over, "seed=1"], None)}.items()}
    finally:
        torch.set_num_threads(threads)
    seeds = {name: run[0].seed for name, run in runs.items()}
    assert seeds == {"default": 0, "zero": 0, "one": 1, "hydra_one": 1}
    weights = {name: list(run[2].connector.parameters()) for name, run in runs.items()}
    same = lambda a, b: all(torch.equal(x, y) for x, y in zip(weights[a], weights[b], strict=True))
    assert same("default", "zero") and same("one", "hydra_one") and not same("zero", "one")


def test_a_start_probe_connector_cannot_label_fails_before_the_build(tmp_path):
    res = subprocess.run([sys.executable, "-m", "harness.bench", "probe-vlm", "--question", "pattern", "--start", "mean",
                          "--out", str(tmp_path), "connector=avg_pool"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode != 0 and "probe-connector cannot label" in res.stderr and "--start fresh" in res.stderr
    assert "[world]" not in res.stdout  # nothing was built
