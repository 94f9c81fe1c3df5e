"""The frozen-feature cache: cached tokens and high-res maps equal fresh encodings; a second bank reuses them."""

from __future__ import annotations

import pytest
import torch

from harness.data.features import bank_for
from tests.test_data_and_vlm import (
    MICRO_WORLD,  # noqa: F401  (the world fixture's config)
    world,  # noqa: F401  (module-scoped fixture)
)


@pytest.fixture(scope="module")
def mining_vlm(world, tmp_path_factory):  # noqa: F811
    from harness.models.connectors import build_connector
    from harness.models.connectors.mining import MiningCfg
    from harness.models.encoders.clip_tiny import ClipTinyCfg, ClipTinyEncoder, make_clip
    from harness.models.encoders.conv_tiny import ConvTinyCfg, ConvTinyEncoder, ConvTower
    from harness.models.llm.base import LanguageModel
    from harness.models.llm.llama_tiny import LlamaTinyCfg, _llama
    from harness.models.llm.tokenizer import world_tokenizer
    from harness.models.vlm import VLM

    torch.manual_seed(0)
    tok = world_tokenizer(world, 256, tmp_path_factory.mktemp("tok"))
    llm = LanguageModel(_llama(LlamaTinyCfg(hidden=32, layers=1, heads=2, intermediate=64), tok), tok)
    ecfg = ClipTinyCfg(width=32, layers=1, head_width=16)
    enc = ClipTinyEncoder(make_clip(ecfg, len(tok), tok.pad_token_id, tok.eos_token_id).visual, ecfg, 32)
    hcfg = ConvTinyCfg(channels=[8, 8, 16, 16])
    hr = ConvTinyEncoder(ConvTower(hcfg.channels, hcfg.depths, hcfg.embed_dim), hcfg, 64)
    enc.meta = {"artifact": "/x/clip_tiny-test"}  # a cacheable identity, as a pre-trained artifact has
    hr.meta = {"artifact": "/x/conv_tiny-test"}
    conn = build_connector(MiningCfg(name="mining", num_tokens=4), enc.spec, llm.d_model, hr.map_spec)
    vlm = VLM(enc, conn, llm, hr).eval()
    vlm.set_trainable(["connector"])
    return vlm


def test_cached_features_and_maps_match_fresh_encoding(world, mining_vlm, tmp_path):  # noqa: F811
    idx = [3, 0, 7, 7]
    bank = bank_for(mining_vlm, world, "train", tmp_path)
    vis = bank.get(idx)
    fresh = mining_vlm.encode_images(torch.from_numpy(world.images("train")[idx]))
    torch.testing.assert_close(vis.feats, fresh.feats, atol=2e-2, rtol=1e-2)  # float16 storage
    assert len(vis.hr) == len(fresh.hr)
    for cached, new in zip(vis.hr, fresh.hr, strict=True):
        assert cached.shape == new.shape
        torch.testing.assert_close(cached, new, atol=2e-2, rtol=1e-2)
    assert bank.encoded == 2 * len(world.images("train")) and not bank.from_cache

    again = bank_for(mining_vlm, world, "train", tmp_path)
    vis2 = again.get(idx)
    assert again.from_cache and again.encoded == 0
    torch.testing.assert_close(vis2.hr[0], vis.hr[0])


def test_unfrozen_encoder_bypasses_the_cache(world, mining_vlm, tmp_path):  # noqa: F811
    mining_vlm.set_trainable(["encoder", "connector"])
    try:
        vis = bank_for(mining_vlm, world, "train", tmp_path).get([1])
        assert vis.feats.requires_grad
        assert not (tmp_path / "features").exists()
    finally:
        mining_vlm.set_trainable(["connector"])


def test_encoder_trained_by_an_earlier_stage_never_reads_the_cache(world, mining_vlm, tmp_path):  # noqa: F811
    """Frozen now, but trained before (a stage trained it, or weights.pt restored it): the cache holds the
    pre-trained encoder's outputs, so the bank encodes afresh, without gradients, and writes nothing."""
    bank_for(mining_vlm, world, "train", tmp_path).get([0])  # the pre-trained encoder's entry exists
    mining_vlm.trained_parts = {"encoder", "connector"}
    try:
        bank = bank_for(mining_vlm, world, "train", tmp_path)
        vis = bank.get([1, 4])
        fresh = mining_vlm.encode_images(torch.from_numpy(world.images("train")[[1, 4]]))
        assert torch.equal(vis.feats, fresh.feats) and not vis.feats.requires_grad
        assert bank.encoded == 2 * 2 and not bank.from_cache  # low-res + high-res, each image afresh
    finally:
        mining_vlm.trained_parts = set()


def test_online_bank_encodes_each_batch_and_matches_the_cache(world, mining_vlm, tmp_path):  # noqa: F811
    idx = [5, 2]
    online = bank_for(mining_vlm, world, "train", tmp_path, online=True)
    vis = online.get(idx)
    online.get(idx)
    assert online.encoded == 2 * 2 * len(idx) and not online.from_cache  # twice the batch, low-res + high-res
    assert not (tmp_path / "features").exists()  # nothing written
    cached = bank_for(mining_vlm, world, "train", tmp_path).get(idx)
    torch.testing.assert_close(vis.feats, cached.feats, atol=2e-2, rtol=1e-2)
    torch.testing.assert_close(vis.hr[-1], cached.hr[-1], atol=2e-2, rtol=1e-2)


def test_a_split_too_large_to_store_encodes_only_the_asked_images(world, mining_vlm, tmp_path, capsys):  # noqa: F811
    """Over runtime.feature_cache_gb nothing is stored and only the asked images are encoded, in chunks of
    runtime.feature_chunk, rounded to float16 as the store holds them: the cached bank's numbers."""
    per_image = mining_vlm.encoder.spec.num_patches * mining_vlm.encoder.spec.dim * 2
    assert bank_for(mining_vlm, world, "train", tmp_path).bytes_per_image(mining_vlm) > per_image  # maps counted
    n = len(world.images("train"))
    small = bank_for(mining_vlm, world, "train", tmp_path / "small", max_gb=0.5 * per_image * n / 2**30, chunk=3)
    assert small.too_big and small.online and "runtime.feature_cache_gb=" in capsys.readouterr().out
    idx = [9, 2, 4, 7, 1, 0, 5]
    vis = small.get(idx)
    assert small.encoded == 2 * len(idx) and not (tmp_path / "small" / "features").exists()
    stored = bank_for(mining_vlm, world, "train", tmp_path / "stored")  # written through a memory map
    assert not stored.too_big
    ref = stored.get(idx)
    assert torch.equal(vis.feats, vis.feats.half().float())  # rounded as a store's
    torch.testing.assert_close(vis.feats, ref.feats, atol=1e-3, rtol=1e-3)
    for a, b in zip(vis.hr, ref.hr, strict=True):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)


def test_an_evaluation_stores_only_the_first_images_it_scores(world, mining_vlm, tmp_path):  # noqa: F811
    """eval.max_images=12 of a 1000-image split encodes 12: a store of its own, with the whole split's numbers."""
    n = len(world.images("test"))
    part = bank_for(mining_vlm, world, "test", tmp_path, first=5)
    vis = part.get([4, 0])
    assert part.encoded == 2 * 5 and part.tokens.path != bank_for(mining_vlm, world, "test", tmp_path).path
    whole = bank_for(mining_vlm, world, "test", tmp_path / "whole")
    ref = whole.get([4, 0])
    assert whole.encoded == 2 * n and torch.equal(vis.feats, ref.feats) and torch.equal(vis.hr[0], ref.hr[0])
    assert bank_for(mining_vlm, world, "test", tmp_path / "whole", first=n + 3).path == whole.path  # all of it


def test_a_stop_signal_ends_a_store_build_between_chunks(world, mining_vlm, tmp_path):  # noqa: F811
    # SLURM's SIGTERM arrives while the first step builds a real-size store (minutes): the build stops at its next
    # chunk as a preemption, leaves no half-written folder, and a later build is whole.
    import signal

    from harness.train.checkpoint import Preempted, StopSignals

    calls = []
    with StopSignals() as stop:
        bank = bank_for(mining_vlm, world, "train", tmp_path, chunk=16)
        encode = bank.tokens.encode

        def signalled_after_one_chunk(idx):
            calls.append(len(idx))
            stop.signum = signal.SIGTERM  # as the handler would set it
            return encode(idx)

        bank.tokens.encode = signalled_after_one_chunk
        with pytest.raises(Preempted, match="SIGTERM received while encoding the train tokens features"):
            bank.get([0])
    assert calls == [16]  # one chunk, then the stop
    assert not list((tmp_path / "features").glob(".*tmp*"))
    whole = bank_for(mining_vlm, world, "train", tmp_path, chunk=16)  # no handler: check_stop does nothing
    assert whole.get([0]).feats.shape[0] == 1 and whole.tokens.encoded == len(world.images("train"))


def test_a_store_build_says_where_it_is_in_a_log_file(world, mining_vlm, tmp_path, monkeypatch, capsys):  # noqa: F811
    # Under SLURM no bar is drawn, and a real-size store takes minutes: the build prints a line every HEARTBEAT_S.
    from harness.data import features

    monkeypatch.setattr(features, "HEARTBEAT_S", -1.0)  # every chunk after the first
    monkeypatch.setenv("MM_ABLATE_PROGRESS", "0")
    bank_for(mining_vlm, world, "train", tmp_path, chunk=40).get([0])
    lines = [m for m in capsys.readouterr().out.splitlines() if m.startswith("[features] encoding train tokens:")]
    n = len(world.images("train"))
    assert lines and lines[0].startswith(f"[features] encoding train tokens: 40/{n} images ("), lines
