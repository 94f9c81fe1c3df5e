"""Speed and memory switches change how a step is computed, never what it computes: sequence packing and activation
checkpointing reproduce the plain loss curve (and keep the point's hash); bf16 autocast is a result of its own."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.data.mixture import Mixture
from harness.data.sequences import SequenceBuilder, collate, pack, padding_fraction
from tests.test_data_and_vlm import tiny_vlm, world  # noqa: F401  (module-scoped fixtures)

EXTRA = ["train.stages.0.steps=6", "runtime.log_every=1", "runtime.device=cpu", "eval.max_images=8",
         "eval.text_tasks=[]"]


def _mixed_rows(world, vlm, n: int = 12):  # noqa: F811
    """Captions, interleaved documents and text-only passages: very different lengths, as in training."""
    builder = SequenceBuilder(vlm.tokenizer, vlm.num_visual_tokens, max_len=160)
    mix, rng = Mixture(world, {"caption": 1, "interleaved": 1, "text": 1}), np.random.default_rng(0)
    return [builder.encode(mix.sample(rng)) for _ in range(n)]


def _loss_and_grad(vlm, b: dict, packed: bool):
    images = torch.from_numpy(np.ascontiguousarray(vlm._world.images("train")[b["images"]]))
    vlm.zero_grad(set_to_none=True)
    vlm.set_trainable(["connector", "llm"])
    out = vlm(b["input_ids"], None if packed else b["attention_mask"], b["labels"],
              vlm.encode_images(images), position_ids=b.get("position_ids"))
    out.loss.backward()
    grad = torch.cat([p.grad.flatten() for p in vlm.connector.parameters() if p.grad is not None])
    return out.loss.item(), grad


def test_pack_layout_positions_and_image_order(world, tiny_vlm):  # noqa: F811
    rows = _mixed_rows(world, tiny_vlm)
    b = pack(rows, tiny_vlm.tokenizer.pad_token_id, 160)
    assert b["input_ids"].shape[1] <= 160
    assert int(b["attention_mask"].sum()) == sum(len(e.ids) for e in rows)  # every token once
    assert sorted(b["images"]) == sorted(i for e in rows for i in e.images)
    bos = tiny_vlm.tokenizer.bos_token_id
    starts = (b["position_ids"] == 0) & (b["attention_mask"] == 1)
    assert int(starts.sum()) == len(rows) and bool((b["input_ids"][starts] == bos).all())  # positions restart per seq
    # the images follow the rows' reading order: find each packed segment's sequence, collect its images in turn
    by_ids = {tuple(e.ids): e for e in rows}
    in_order = []
    for r in range(b["input_ids"].shape[0]):
        cuts = [*torch.nonzero(starts[r]).flatten().tolist(), int(b["attention_mask"][r].sum())]
        for lo, hi in itertools.pairwise(cuts):
            in_order += by_ids[tuple(b["input_ids"][r, lo:hi].tolist())].images
    assert in_order == b["images"]
    assert padding_fraction(b) < padding_fraction(collate(rows, tiny_vlm.tokenizer.pad_token_id))
    with pytest.raises(ValueError, match="max_len=8"):
        pack(rows, 0, 8)


def test_packed_batch_gives_the_padded_batch_loss_and_gradient(world, tiny_vlm):  # noqa: F811
    rows = _mixed_rows(world, tiny_vlm)
    tiny_vlm._world = world
    pad = tiny_vlm.tokenizer.pad_token_id
    loss_pad, grad_pad = _loss_and_grad(tiny_vlm, collate(rows, pad), packed=False)
    loss_pack, grad_pack = _loss_and_grad(tiny_vlm, pack(rows, pad, 160), packed=True)
    assert loss_pack == pytest.approx(loss_pad, rel=1e-5)
    torch.testing.assert_close(grad_pack, grad_pad, rtol=1e-4, atol=1e-6)
    tiny_vlm.requires_grad_(False)


def _losses(results: Path) -> np.ndarray:
    (log,) = results.glob("runs/*/train_log.jsonl")
    return np.array([json.loads(line)["loss"] for line in log.read_text().splitlines()])


def _padding(results: Path) -> float:
    (log,) = results.glob("runs/*/train_log.jsonl")
    return float(np.mean([json.loads(line)["padding_fraction"] for line in log.read_text().splitlines()]))


@pytest.fixture(scope="module")
def plain(shared_cache, tmp_path_factory) -> tuple[dict, Path]:
    """The reference: the micro point with every switch off."""
    from harness.launch import run_point
    from tests.test_bad_configs import compose_micro

    out = tmp_path_factory.mktemp("plain")
    return run_point(compose_micro(EXTRA, out, shared_cache)), out


def test_packing_and_activation_checkpointing_reproduce_the_plain_run(plain, shared_cache, tmp_path):
    from harness.launch import run_point
    from tests.test_bad_configs import compose_micro

    plain, plain_dir = plain
    packed = run_point(compose_micro([*EXTRA, "runtime.packing=true"], tmp_path / "packed", shared_cache))
    ckpt = run_point(compose_micro([*EXTRA, "runtime.activation_checkpointing=true"], tmp_path / "ckpt", shared_cache))
    assert plain.status == packed.status == ckpt.status == "ok"
    assert plain.cfg_hash == packed.cfg_hash == ckpt.cfg_hash  # runtime settings: the same point
    np.testing.assert_allclose(_losses(tmp_path / "packed"), _losses(plain_dir), rtol=2e-4)
    np.testing.assert_allclose(_losses(tmp_path / "ckpt"), _losses(plain_dir), rtol=2e-4)
    for key in ("sequences", "images", "tokens", "loss_tokens"):  # counted on sequences, not on rows
        assert packed.train[key] == plain.train[key]
    assert _padding(tmp_path / "packed") < _padding(plain_dir)
    assert 0 <= packed.train["stages"][0]["padding_fraction"] < plain.train["stages"][0]["padding_fraction"]


def test_bf16_is_its_own_point_and_fp32_keeps_the_old_hash(plain, shared_cache, tmp_path):
    from harness.launch import run_point
    from tests.test_bad_configs import compose_micro

    fp32, fp32_dir = plain
    bf16 = run_point(compose_micro([*EXTRA, "train.precision=bf16"], tmp_path / "bf16", shared_cache))
    assert fp32.status == bf16.status == "ok"
    assert fp32.cfg_hash != bf16.cfg_hash
    assert "precision" not in fp32.config["train"]  # the default before the setting existed: not hashed
    assert bf16.config["train"]["precision"] == "bf16"
    a, b = _losses(fp32_dir), _losses(tmp_path / "bf16")
    assert np.isfinite(b).all()
    np.testing.assert_allclose(b, a, rtol=0.05)  # bf16 rounding (8 mantissa bits), not a different model


def test_unknown_precision_names_the_valid_ones():
    from harness.config.schema import ConfigError, TrainCfg

    with pytest.raises(ConfigError, match=r"train.precision must be one of \['fp32', 'bf16'\], got 'fp16'"):
        TrainCfg(name="x", precision="fp16")


@pytest.mark.slow  # inductor compiles C++ kernels for the tiny LLM: about a minute on 2 cores
def test_compiled_llm_reproduces_the_plain_run(plain, shared_cache, tmp_path):
    from harness.launch import run_point
    from tests.test_bad_configs import compose_micro

    plain, plain_dir = plain
    compiled = run_point(compose_micro([*EXTRA, "runtime.compile=true"], tmp_path / "compiled", shared_cache))
    assert compiled.status == "ok", compiled.get("error")
    assert compiled.cfg_hash == plain.cfg_hash
    np.testing.assert_allclose(_losses(tmp_path / "compiled"), _losses(plain_dir), rtol=2e-4)
