"""TextCore through lm-eval: the LM adapter against hand computations, and the world's local tasks end to end."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from harness.eval import textcore
from harness.eval.textcore import (
    LM_EVAL_MISSING,
    candidate_answers,
    entries_from_results,
    parse_passage,
    rolling_windows,
    world_text_docs,
)
from harness.world import World, WorldCfg

MICRO = WorldCfg(name="shapes_micro", n_train=80, n_val=10, n_test=10, n_docs=20, n_texts=60)
needs_lm_eval = pytest.mark.skipif(not textcore.lm_eval_available(), reason=LM_EVAL_MISSING)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World.build_or_load(MICRO, tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def tiny_lm(world, tmp_path_factory):
    """A random 1-layer Llama over the world's tokenizer: (model, tokenizer)."""
    from harness.models.llm.llama_tiny import LlamaTinyCfg, _llama
    from harness.models.llm.tokenizer import world_tokenizer

    torch.manual_seed(0)
    tok = world_tokenizer(world, 200, tmp_path_factory.mktemp("tok"))
    model = _llama(LlamaTinyCfg(hidden=32, layers=1, heads=2, intermediate=64, max_len=256), tok).eval()
    return model, tok


def read_jsonl(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def req(*args):
    """What the adapter reads from an lm-eval ``Instance``."""
    return SimpleNamespace(args=args)


def hand_loglik(model, ctx: list[int], cont: list[int]) -> tuple[float, bool]:
    """log p(cont | ctx) from one unpadded forward pass."""
    full = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = F.log_softmax(model(input_ids=full).logits[0, :-1].float(), dim=-1)
    pos = torch.arange(len(ctx) - 1, len(ctx) + len(cont) - 1)
    tgt = torch.tensor(cont)
    return float(logp[pos, tgt].sum()), bool((logp[pos].argmax(-1) == tgt).all())


# -- pure helpers (no lm-eval needed) --------------------------------------------------------------------------


def test_rolling_windows_score_each_token_once():
    w = rolling_windows(list(range(10)), prefix=-1, max_len=4)
    assert w == [([-1], [0, 1, 2, 3]), ([3], [4, 5, 6, 7]), ([5, 6, 7], [8, 9])]
    for ctx, cont in w:  # every model input fits
        assert len(ctx) + len(cont) - 1 <= 4
    assert [t for _, c in rolling_windows(list(range(23)), -1, 5) for t in c] == list(range(23))


def test_parse_world_passages(world):
    text = world.texts("test")[0]
    passage, qa = parse_passage(text)
    assert passage and "Question:" not in passage and qa
    assert text == " ".join([passage] + [f"Question: {q['question']} Answer: {q['answer']}" for q in qa])
    docs = world_text_docs(world.texts("test"), candidate_answers(world))
    assert len(docs) >= len(world.texts("test"))
    for d in docs:
        assert d["choices"][d["label"]] == d["answer"]
        assert d["type"] in world.question_types()


def test_entries_and_average_from_results():
    results = {
        "results": {
            "a": {"alias": "a", "acc,none": 0.5, "acc_stderr,none": "N/A", "acc_norm,none": 0.25},
            "b": {"exact_match,none": 1.0, "exact_match_stderr,none": 0.0},
        },
        "n-samples": {"a": {"original": 4, "effective": 4}, "b": {"original": 2, "effective": 2}},
        "samples": {
            "a": [{"filter": "none", "acc": v, "acc_norm": 0.0} for v in (1.0, 0.0, 1.0, 0.0)],
            "b": [{"filter": "none", "exact_match": 1.0}] * 2,
        },
    }
    entries = entries_from_results(results, ["a", "b"], shots=0)
    by = {(e["task"], e["metric"]): e for e in entries}  # a task's entries: task = the lm-eval task, subset all
    assert by[("a", "acc")]["value"] == 0.5 and by[("a", "acc")]["n"] == 4
    assert by[("a", "acc")]["suite"] == "textcore" and by[("a", "acc")]["subset"] == "all"
    assert by[("a", "acc")]["stderr"] == pytest.approx(math.sqrt(1 / 3) / 2)  # from the per-document scores
    assert math.isnan(by[("a", "acc_norm")]["stderr"])  # per-document mean (0) disagrees with 0.25: not used
    avg = by[("textcore", "textcore_average")]
    assert avg["subset"] == "all" and avg["value"] == pytest.approx(0.75) and avg["tasks"] == ["a", "b"]
    assert avg["stderr"] == pytest.approx(math.sqrt(1 / 12) / 2)
    # a task without results makes the average NaN, never a silently smaller average
    missing = entries_from_results(results, ["a", "zzz"], shots=0)
    assert math.isnan(missing[-1]["value"]) and any(e.get("status") for e in missing)


def test_missing_lm_eval_gives_nan_status(monkeypatch, tmp_path):
    monkeypatch.setattr(textcore, "lm_eval_available", lambda: False)
    cfg = SimpleNamespace(text_tasks=["world_textqa"], text_num_fewshot=0)
    (task, avg) = textcore.evaluate_textcore(None, None, cfg, tmp_path, 0)
    assert task["task"] == "world_textqa" and task["suite"] == "textcore" and task["subset"] == "all"
    assert math.isnan(task["value"])
    assert task["status"] == "skipped" and task["reason"] == "lm-eval not installed: pip install -e '.[eval]'"
    assert task["metric"] == "exact_match" and task["n"] == 0  # the metric the average reads
    assert avg["subset"] == "all" and math.isnan(avg["value"]) and avg["tasks"] == ["world_textqa"]


# -- the adapter --------------------------------------------------------------------------------------------------


@needs_lm_eval
def test_adapter_is_an_lm_eval_model(tiny_lm):
    from lm_eval.api.model import LM

    lm = textcore.TextCoreLM(*tiny_lm)
    assert isinstance(lm, LM) and lm.rank == 0 and lm.world_size == 1


@needs_lm_eval
def test_encode_pair_token_boundaries(tiny_lm):
    model, tok = tiny_lm
    lm = textcore.TextCoreLM(model, tok)
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    for ctx, cont in [
        ("Question: how many objects are there? Answer:", " 3"),
        ("a red circle on the ", "left"),  # trailing space moves into the continuation
        ("a red circ", "le."),  # a word split inside: the straddling token is scored
        ("", "a red circle."),
    ]:
        c, k = lm.encode_pair(ctx, cont)
        assert c[0] == tok.bos_token_id and k
        assert (c[1:] + k == enc(ctx + cont)) if ctx else (c == [tok.bos_token_id] and k == enc(cont))
        assert tok.decode(c[1:] + k) == ctx + cont
    c, k = lm.encode_pair("Answer: the", " red")
    assert tok.decode(k).strip() == "red"


@needs_lm_eval
def test_loglikelihood_equals_hand_computation(tiny_lm):
    model, tok = tiny_lm
    lm = textcore.TextCoreLM(model, tok, batch_size=2)  # rows of different lengths share a padded batch
    pairs = [
        ("there are 2 objects: a red circle", " and a blue square."),
        ("Question: what colour is", " the"),
        ("", "a picture with a small green cross."),
        ("the number 7 is written", " in the corner."),
    ]
    got = lm.loglikelihood([req(*p) for p in pairs])
    for p, (score, greedy) in zip(pairs, got):
        ctx, cont = lm.encode_pair(*p)
        want, want_greedy = hand_loglik(model, ctx, cont)
        assert score == pytest.approx(want, abs=1e-4) and greedy == want_greedy
        assert score < 0
    one = textcore.TextCoreLM(model, tok, batch_size=1).loglikelihood([req(*p) for p in pairs])
    assert [s for s, _ in got] == pytest.approx([s for s, _ in one], abs=1e-5)
    assert [g for _, g in got] == [g for _, g in one]


@needs_lm_eval
def test_greedy_flag(tiny_lm):
    model, tok = tiny_lm
    lm = textcore.TextCoreLM(model, tok)
    ctx = [tok.bos_token_id] + tok("a red circle", add_special_tokens=False)["input_ids"]
    seq = list(ctx)
    with torch.no_grad():
        for _ in range(3):  # the model's own greedy continuation
            seq.append(int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax()))
    cont = seq[len(ctx) :]
    (score, greedy), (_, not_greedy) = lm.loglikelihood_tokens([(ctx, cont), (ctx, cont[:-1] + [(cont[-1] + 1) % 50])])
    assert greedy and not not_greedy
    model.train()  # scoring switches dropout off and puts the caller's mode back
    lm.loglikelihood_tokens([(ctx, cont)])
    assert model.training
    model.eval()
    assert score == pytest.approx(hand_loglik(model, ctx, cont)[0], abs=1e-4)


@needs_lm_eval
def test_loglikelihood_rolling(tiny_lm):
    model, tok = tiny_lm
    text = "there are 3 objects: a red circle, a blue square and a green cross. the number 4 is written in the corner."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    (full,) = textcore.TextCoreLM(model, tok, max_length=256).loglikelihood_rolling([req(text)])
    assert full == pytest.approx(hand_loglik(model, [tok.bos_token_id], ids)[0], abs=1e-4)
    small = textcore.TextCoreLM(model, tok, max_length=8)
    want = sum(hand_loglik(model, c, k)[0] for c, k in rolling_windows(ids, tok.bos_token_id, 8))
    assert small.loglikelihood_rolling([req(text)])[0] == pytest.approx(want, abs=1e-4)


@needs_lm_eval
def test_generate_until_stops_at_stop_strings(tiny_lm):
    model, tok = tiny_lm
    lm = textcore.TextCoreLM(model, tok, batch_size=4)
    contexts = ["Question: how many objects are there? Answer:", "a picture with", "the number"]
    free = lm.generate_until([req(c, {"until": [], "max_gen_toks": 12}) for c in contexts])
    assert all(free) and free == [lm.generate_until([req(c, {"max_gen_toks": 12})])[0] for c in contexts]
    text = free[0]
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    (cut,) = lm.generate_until([req(contexts[0], {"until": ["zzz", stop], "max_gen_toks": 12})])
    assert cut == text[: text.find(stop)] and stop not in cut
    (short,) = lm.generate_until([req(contexts[0], {"until": [], "max_gen_toks": 2})])
    assert len(tok(short, add_special_tokens=False)["input_ids"]) <= 3 and text.startswith(short)
    with torch.no_grad():
        ids = [tok.bos_token_id] + tok(contexts[0], add_special_tokens=False)["input_ids"]
        first = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
    lm.stop_ids.add(first)  # a stop token ends generation before anything is emitted
    assert lm.generate_until([req(contexts[0], {"until": [], "max_gen_toks": 12})]) == [""]


# -- the world's local tasks through lm-eval ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def world_tasks(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("textcore")
    data = textcore.write_world_text(world, "test", out / "cache")
    return data, textcore.render_tasks(data, out / "tasks")


@needs_lm_eval
def test_world_tasks_through_lm_eval(tiny_lm, world_tasks):
    data, include = world_tasks
    lm = textcore.TextCoreLM(*tiny_lm, batch_size=16)
    tasks = ["world_textqa", "world_textmc", "world_textppl"]
    results = textcore.run_lm_eval(lm, tasks, include, limit=6, num_fewshot=0)
    entries = entries_from_results(results, tasks, shots=0)
    by = {(e["task"], e["metric"]): e for e in entries}
    assert {
        ("world_textqa", "exact_match"),
        ("world_textmc", "acc"),
        ("world_textmc", "acc_norm"),
        ("world_textppl", "word_perplexity"),
        ("textcore", "textcore_average"),
    } <= set(by)
    for e in entries:
        assert (e.get("suite") == "textcore" or e["task"] == "textcore") and e["subset"] == "all" and e["shots"] == 0
    assert by[("world_textmc", "acc")]["n"] == 6 and 0 <= by[("world_textmc", "acc")]["value"] <= 1
    assert by[("world_textppl", "word_perplexity")]["value"] > 1
    avg = by[("textcore", "textcore_average")]
    assert avg["tasks"] == ["world_textqa", "world_textmc"]  # perplexity is not averaged
    assert avg["value"] == pytest.approx(
        (by[("world_textqa", "exact_match")]["value"] + by[("world_textmc", "acc")]["value"]) / 2
    )
    # multiple choice by hand: the argmax over the choices' log-likelihoods
    docs = read_jsonl(data / "test.jsonl")[:6]
    correct = []
    for d in docs:
        ctx = f"{d['passage']} Question: {d['question']} Answer:"
        scores = [s for s, _ in lm.loglikelihood([req(ctx, " " + c) for c in d["choices"]])]
        correct.append(float(max(range(len(scores)), key=scores.__getitem__) == d["label"]))
    assert by[("world_textmc", "acc")]["value"] == pytest.approx(sum(correct) / len(correct))


@needs_lm_eval
def test_world_textqa_exact_match_with_an_oracle(tiny_lm, world_tasks):
    """An LM that answers right (with spaces around, the model's usual output) scores 1: the task's metric
    settings, not the model, are under test."""
    data, include = world_tasks
    answers = {
        f"{d['passage']} Question: {d['question']} Answer:": d["answer"] for d in read_jsonl(data / "test.jsonl")
    }

    class Oracle(textcore.TextCoreLM):
        def generate_until(self, requests, disable_tqdm=False):
            return [" " + answers[r.args[0]] + " " for r in requests]

    results = textcore.run_lm_eval(Oracle(*tiny_lm), ["world_textqa"], include, limit=5, num_fewshot=0)
    (em, avg) = entries_from_results(results, ["world_textqa"], shots=0)
    assert em["metric"] == "exact_match" and em["value"] == 1.0 and avg["value"] == 1.0
