"""Batches without images (text-only data) train under every freeze policy, with gradient accumulation and across
processes: the VLM runs its connector on a blank image spliced in at no position (harness.models.vlm), so the loss
is unchanged, the connector's gradient is exactly zero, and every rank computes the same graph."""

from __future__ import annotations

import socket
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from harness.data.features import FeatureBank
from harness.data.mixture import Mixture
from harness.data.sequences import SequenceBuilder
from harness.train.distributed import DistEnv
from harness.train.loop import StepPlan, _forward_backward, _param_groups, forward_batch
from tests.test_data_and_vlm import world  # noqa: F401  (module-scoped fixture)

CPU = torch.device("cpu")
POLICIES = [["connector"], ["connector", "llm"], ["llm"], ["encoder", "connector", "llm"]]


def make_vlm(world, tok_dir, trainable: list[str]):  # noqa: F811
    """A tiny random VLM (identical weights on every call), in training mode with ``trainable`` unfrozen."""
    from harness.models.connectors import build_connector
    from harness.models.connectors.avg_pool import AvgPoolCfg
    from harness.models.encoders.clip_tiny import ClipTinyCfg, ClipTinyEncoder, make_clip
    from harness.models.llm.base import LanguageModel
    from harness.models.llm.llama_tiny import LlamaTinyCfg, _llama
    from harness.models.llm.tokenizer import world_tokenizer
    from harness.models.vlm import VLM

    tok = world_tokenizer(world, 256, tok_dir)
    torch.manual_seed(0)
    llm = LanguageModel(_llama(LlamaTinyCfg(hidden=32, layers=1, heads=2, intermediate=64), tok), tok)
    ecfg = ClipTinyCfg(width=32, layers=1, head_width=16)
    enc = ClipTinyEncoder(make_clip(ecfg, len(tok), tok.pad_token_id, tok.eos_token_id).visual, ecfg, 64)
    conn = build_connector(AvgPoolCfg(name="avg_pool", num_tokens=4), enc.spec, llm.d_model)
    vlm = VLM(enc, conn, llm)
    vlm.set_trainable(trainable)
    return vlm.train()


def rows_of(world, vlm, source: str, n: int, seed: int = 0) -> list:  # noqa: F811
    builder = SequenceBuilder(vlm.tokenizer, vlm.num_visual_tokens, max_len=160)
    mix, rng = Mixture(world, {source: 1}), np.random.default_rng(seed)
    return [builder.encode(mix.sample(rng)) for _ in range(n)]


def grads(vlm, part: str) -> list:
    module = {"connector": vlm.connector, "encoder": vlm.encoder, "llm": vlm.lm}[part]
    return [p.grad for p in module.parameters() if p.requires_grad]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tok")


@pytest.mark.parametrize("trainable", POLICIES, ids=["+".join(p) for p in POLICIES])
def test_image_free_batch_trains_and_keeps_its_loss(world, tok_dir, trainable):  # noqa: F811
    vlm = make_vlm(world, tok_dir, trainable)
    bank = FeatureBank(vlm, world.images("train"))
    plan = StepPlan(pad=vlm.tokenizer.pad_token_id)
    _forward_backward(vlm, rows_of(world, vlm, "caption", 2), bank, CPU, DistEnv(), plan)
    with_images = {n for n, p in vlm.named_parameters() if p.grad is not None}
    vlm.zero_grad(set_to_none=True)
    text = rows_of(world, vlm, "text", 2)
    assert not any(e.images for e in text)
    calls = []
    vlm.connector.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    loss, _ = _forward_backward(vlm, text, bank, CPU, DistEnv(), plan)
    # FSDP gathers the connector's shards in every forward, so a training forward always runs it: on one blank image
    assert calls == [1]
    # DDP needs the same parameters to get gradients whether or not a rank's share holds an image
    assert {n for n, p in vlm.named_parameters() if p.grad is not None} == with_images
    for part in ("connector", "encoder"):  # the text's true gradient for them: zero
        assert all(g is None or not g.any() for g in grads(vlm, part)), part
    if "llm" in trainable:  # the text still trains the LLM
        assert any(g is not None and g.any() for g in grads(vlm, "llm"))
    vlm.eval()
    with torch.no_grad():
        plain = forward_batch(vlm, plan.rows(text), bank, CPU, plan).loss.item()
    assert loss == plain  # the blank image's tokens land nowhere: the loss is that of the text alone


def test_grad_accumulation_over_image_free_micro_batches_matches_one_pass(world, tok_dir):  # noqa: F811
    """Connector-only, micro-batches of one example: the first has an image, the other three are text."""
    out = {}
    for accum in (1, 4):
        vlm = make_vlm(world, tok_dir, ["connector"])
        rows = rows_of(world, vlm, "caption", 1) + rows_of(world, vlm, "text", 3)
        plan = StepPlan(pad=vlm.tokenizer.pad_token_id, accum=accum)
        loss, _ = _forward_backward(vlm, rows, FeatureBank(vlm, world.images("train")), CPU, DistEnv(), plan)
        out[accum] = loss, torch.cat([g.flatten() for g in grads(vlm, "connector")])
    assert out[4][0] == pytest.approx(out[1][0], rel=1e-5)
    assert out[1][1].abs().sum() > 0
    torch.testing.assert_close(out[4][1], out[1][1], rtol=1e-4, atol=1e-7)


def test_image_free_step_leaves_the_connector_unchanged_and_a_mixed_one_moves_it(world, tok_dir):  # noqa: F811
    """Connector-only training with the loop's optimizer (AdamW, no weight decay): a first step on text alone has a
    zero gradient, so Adam moves nothing; a batch with an image then updates the connector."""
    vlm = make_vlm(world, tok_dir, ["connector"])
    bank = FeatureBank(vlm, world.images("train"))
    stage = SimpleNamespace(name="s", trainable=["connector"], lr=1e-2, llm_lr=1e-3, encoder_lr=None)
    opt = torch.optim.AdamW(_param_groups(vlm, stage), weight_decay=0.0, betas=(0.9, 0.95))
    plan = StepPlan(pad=vlm.tokenizer.pad_token_id)
    start = {k: v.clone() for k, v in vlm.connector.state_dict().items()}

    _forward_backward(vlm, rows_of(world, vlm, "text", 2), bank, CPU, DistEnv(), plan)
    opt.step()
    for k, v in vlm.connector.state_dict().items():
        torch.testing.assert_close(v, start[k], rtol=0, atol=0)

    opt.zero_grad(set_to_none=True)
    _forward_backward(vlm, rows_of(world, vlm, "caption", 1) + rows_of(world, vlm, "text", 1), bank, CPU,
                      DistEnv(), plan)
    opt.step()
    assert any(not torch.equal(v, start[k]) for k, v in vlm.connector.state_dict().items())


# -- two gloo processes: rank 0's share holds an image, rank 1's holds none (and the other way round) --------------
CASES = [("ddp", ["connector"]), ("ddp", ["connector", "llm"]), ("ddp", ["encoder", "connector", "llm"]),
         ("fsdp", ["connector"]), ("fsdp", ["llm"]), ("fsdp", ["connector", "llm"])]


def _full(t):
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _rank(rank: int, port: int, world_dir, tok_dir) -> None:
    """One process of the 2-process job: per strategy and freeze policy, two steps whose losses and gradients must
    equal one process's on the same global batch. A rank out of step fails a collective (gloo timeout) or a
    comparison; either ends the job with this rank's traceback."""
    import torch.distributed as dist

    from harness.train.distributed import wrap
    from harness.world import World

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    try:
        world = World(world_dir)
        for strategy, trainable in CASES:
            env = DistEnv(rank=rank, world_size=2, strategy=strategy)
            ref, vlm = make_vlm(world, tok_dir, trainable), make_vlm(world, tok_dir, trainable)
            model = wrap(vlm, env, CPU)
            plan = StepPlan(pad=vlm.tokenizer.pad_token_id)
            ref_bank, bank = FeatureBank(ref, world.images("train")), FeatureBank(vlm, world.images("train"))
            cap, text = rows_of(world, vlm, "caption", 1), rows_of(world, vlm, "text", 1)
            for rows in (cap + text, text + cap):  # share(): rank 0 takes row 0, rank 1 row 1
                ref.zero_grad(set_to_none=True)
                vlm.zero_grad(set_to_none=True)
                want, _ = _forward_backward(ref, rows, ref_bank, CPU, DistEnv(), plan)
                got, _ = _forward_backward(model, rows, bank, CPU, env, plan)
                assert got == pytest.approx(want, rel=1e-5), (strategy, trainable, got, want)
                for (name, p), q in zip(vlm.named_parameters(), ref.parameters(), strict=True):
                    if p.requires_grad:
                        assert (p.grad is None) == (q.grad is None), (strategy, trainable, name)
                        if q.grad is not None:
                            torch.testing.assert_close(_full(p.grad), q.grad, rtol=1e-4, atol=1e-8,
                                                       msg=lambda m, c=(strategy, trainable, name): f"{c}: {m}")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_stay_in_step_when_one_share_has_no_image(world, tok_dir):  # noqa: F811
    """DDP and FSDP2 under several freeze policies (one job: the processes' start-up dominates)."""
    import torch.multiprocessing as mp

    make_vlm(world, tok_dir, ["connector"])  # builds the tokenizer once, before two processes race for it
    mp.spawn(_rank, args=(_free_port(), world.root, tok_dir), nprocs=2, join=True)
