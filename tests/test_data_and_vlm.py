"""Sequences, mixtures, visual-token splicing and batch-size-invariant generation on a tiny random VLM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data.mixture import Mixture, normalise_weights
from harness.data.sequences import IGNORE, SequenceBuilder, collate
from harness.data.sources import Chunk, Example
from harness.world import World, WorldCfg

MICRO_WORLD = WorldCfg(name="shapes_micro", n_train=400, n_val=50, n_test=60, n_docs=150, n_texts=200)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World.build_or_load(MICRO_WORLD, tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def tiny_vlm(world, tmp_path_factory):
    from harness.models.connectors import build_connector
    from harness.models.connectors.avg_pool import AvgPoolCfg as Cfg
    from harness.models.encoders.clip_tiny import ClipTinyCfg, ClipTinyEncoder, make_clip
    from harness.models.llm.base import LanguageModel
    from harness.models.llm.llama_tiny import LlamaTinyCfg, _llama
    from harness.models.llm.tokenizer import world_tokenizer
    from harness.models.vlm import VLM

    torch.manual_seed(0)
    tok = world_tokenizer(world, 256, tmp_path_factory.mktemp("tok"))
    lcfg = LlamaTinyCfg(hidden=32, layers=1, heads=2, intermediate=64)
    llm = LanguageModel(_llama(lcfg, tok), tok)
    ecfg = ClipTinyCfg(width=32, layers=1, head_width=16)
    enc = ClipTinyEncoder(make_clip(ecfg, len(tok), tok.pad_token_id, tok.eos_token_id).visual, ecfg, 64)
    conn = build_connector(Cfg(name="avg_pool", num_tokens=4), enc.spec, llm.d_model)
    return VLM(enc, conn, llm).eval()


def test_labels_cover_text_only(world, tiny_vlm):
    b = SequenceBuilder(tiny_vlm.tokenizer, 4, max_len=512)
    enc = b.encode(Example("interleaved", [Chunk(0, "a red circle."), Chunk(1, "Question: how many objects are there? Answer: 2")]))
    ids, labels = np.array(enc.ids), np.array(enc.labels)
    img = ids == tiny_vlm.image_token_id
    assert img.sum() == 8 and enc.images == [0, 1]
    assert (labels[img] == IGNORE).all() and labels[0] == IGNORE
    assert (labels[~img][1:] == ids[~img][1:]).all()  # every text token (and <eoc>) is a target


def test_conversation_turns_train_on_the_answers_only(world, tiny_vlm):
    """LLaVA-style turns: the model sees the same tokens as in a document, but only the answers (and <eoc>) are
    targets; the question of each turn is context."""
    from harness.data.sources import ConversationSource

    src = ConversationSource(world)  # the world's curated LLaVA-style set
    record = src.records[0]
    conv = src.get(0, np.random.default_rng(0))
    b = SequenceBuilder(tiny_vlm.tokenizer, 4, max_len=512)
    enc = b.encode(conv)
    as_doc = b.encode(Example("interleaved", [Chunk(c.image, c.text) for c in conv.chunks]))
    assert enc.ids == as_doc.ids  # same input; only the targets differ
    targets = [t for t, lab in zip(enc.ids, enc.labels, strict=True) if lab != IGNORE]
    answers = [a for _, a in record["turns"]]
    expected = [t for a in answers for t in [*b.text_ids(" " + a), b.eoc_id]]
    assert targets == expected, (tiny_vlm.tokenizer.decode(targets), answers)

def test_truncation_drops_whole_chunks(tiny_vlm):
    b = SequenceBuilder(tiny_vlm.tokenizer, 16, max_len=40)
    enc = b.encode(Example("interleaved", [Chunk(i, "a small blue square.") for i in range(5)]))
    assert len(enc.ids) <= 40
    assert sum(t == tiny_vlm.image_token_id for t in enc.ids) == 16 * len(enc.images)


def test_mixture_normalises_and_realises_ratios(world):
    assert normalise_weights({"caption": 9, "interleaved": 9, "text": 2}) == {"caption": 0.45, "interleaved": 0.45, "text": 0.1}
    mix = Mixture(world, {"caption": 0.45, "interleaved": 0.45, "text": 0.10})
    rng = np.random.default_rng(0)
    for _ in range(4000):
        mix.sample(rng)
    got = mix.realised()
    assert abs(got["caption"] - 0.45) < 0.03 and abs(got["text"] - 0.10) < 0.02


@pytest.mark.parametrize("bad,match", [({"captions": 1.0}, "Did you mean: caption"), ({"caption": -1}, ">= 0"),
                                       ({"caption": 0.0}, "no positive weight")])
def test_bad_mixtures(bad, match):
    with pytest.raises(Exception, match=match):
        normalise_weights(bad)


def test_splice_order_and_count(world, tiny_vlm):
    b = SequenceBuilder(tiny_vlm.tokenizer, 4, max_len=512)
    batch = collate([b.encode(Example("caption", [Chunk(i, "a red circle.")])) for i in (0, 1)], tiny_vlm.tokenizer.pad_token_id)
    visual = torch.arange(2 * 4, dtype=torch.float32).view(2, 4, 1).expand(2, 4, tiny_vlm.lm.config.hidden_size)
    emb = tiny_vlm.embed(batch["input_ids"], visual)
    slots = batch["input_ids"] == tiny_vlm.image_token_id
    assert torch.equal(emb[slots][:, 0], torch.arange(8, dtype=torch.float32))  # row-major, in reading order
    with pytest.raises(ValueError, match="image slots"):
        tiny_vlm.embed(batch["input_ids"], visual[:1])


def test_generation_is_batch_size_invariant(world, tiny_vlm):
    from harness.eval.generate import greedy_generate
    from harness.models.llm.tokenizer import EOC

    b = SequenceBuilder(tiny_vlm.tokenizer, 4, max_len=10**9)
    samples = world.samples("test")
    prompts = [b.prompt([Chunk(j, "a red circle.") for j in range(i % 3)], Chunk(i, s["qa"][0]["question"]))
               for i, s in enumerate(samples[:6])]
    images = torch.from_numpy(np.ascontiguousarray(world.images("test")))
    stop = {tiny_vlm.tokenizer.convert_tokens_to_ids(EOC)}

    def visual_for(ps):
        with torch.no_grad():
            return tiny_vlm.connector(tiny_vlm.encoder.encode(images[[i for p in ps for i in p.images]]))

    one = [greedy_generate(tiny_vlm, [p], visual_for([p]), 5, stop)[0] for p in prompts]
    many = greedy_generate(tiny_vlm, prompts, visual_for(prompts), 5, stop)
    assert one == many
    assert all(len(g) > 0 for g in many)


def test_generation_never_answers_with_ids_the_tokenizer_lacks(world, tiny_vlm, monkeypatch):
    """A model with more output rows than its tokenizer has ids (a random Qwen under the world's tokenizer) whose
    extra rows win the argmax answers with the tokenizer's best id, not with text nothing decodes."""
    from harness.eval.generate import greedy_generate
    from harness.models.llm.tokenizer import EOC

    b = SequenceBuilder(tiny_vlm.tokenizer, 4, max_len=10**9)
    prompts = [b.prompt([], Chunk(i, s["qa"][0]["question"])) for i, s in enumerate(world.samples("test")[:3])]
    images = torch.from_numpy(np.ascontiguousarray(world.images("test")[:3]))
    with torch.no_grad():
        visual = tiny_vlm.connector(tiny_vlm.encoder.encode(images))
    stop = {tiny_vlm.tokenizer.convert_tokens_to_ids(EOC)}
    plain = greedy_generate(tiny_vlm, prompts, visual, 5, stop)
    forward = tiny_vlm.lm.forward

    def padded(*args, **kwargs):  # 8 rows beyond the tokenizer, each far above every real logit
        out = forward(*args, **kwargs)
        out.logits = torch.cat([out.logits, torch.full((*out.logits.shape[:-1], 8), 1e4)], dim=-1)
        return out

    monkeypatch.setattr(tiny_vlm.lm, "forward", padded)
    assert greedy_generate(tiny_vlm, prompts, visual, 5, stop) == plain


def test_train_log_reports_each_window_of_draws(shared_cache, tmp_path, monkeypatch, capsys):
    """The log's per-window ratios are the draws since the previous line: they sum to 1 and the cumulative ratio
    is their draw-weighted mean (equal windows here: one pool of batches per line)."""
    import json

    from harness.launch import run_point
    from harness.train import loop
    from tests.test_bad_configs import compose_micro

    over = ["train.stages.0.steps=8", "runtime.log_every=4", "train.group_by_length=4", "runtime.device=cpu",
            "eval.max_images=8", "eval.text_tasks=[]"]
    monkeypatch.setattr(loop, "HEARTBEAT_S", -1.0)  # every step between log lines says where it is
    rec = run_point(compose_micro(over, tmp_path, shared_cache))
    assert rec.status == "ok"
    (log,) = tmp_path.glob("runs/*/train_log.jsonl")
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(rows) == 2  # the console's heartbeat lines are not log rows
    said = capsys.readouterr().out
    assert said.count("[train] pretrain step") == 8
    assert "step 3/8 last loss" in said and "next log line at step 4" in said
    for r in rows:
        assert sum(r["realised_window"].values()) == pytest.approx(1.0)
    names = rows[-1]["realised_mixture"]
    mean = {n: (rows[0]["realised_window"][n] + rows[1]["realised_window"][n]) / 2 for n in names}
    assert mean == pytest.approx(rows[-1]["realised_mixture"])
