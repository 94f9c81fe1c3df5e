"""``python -m harness.plan``: parameter counts against real models, trainable parts, sweeps and the memory flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness import plan
from tests.conftest import MICRO

ROOT = Path(__file__).resolve().parents[1]
# clip_tiny + avg_pool + llama_tiny, 64 px, 16 tokens: the embedded default's avg_pool point, shipped with the repo
AVG_POOL_RECORD = ROOT / "results" / "reference" / "runs" / "46e5363f1c11d2bb" / "record.json"  # Quickstart avg_pool, seed 0
GIB = 2**30


def _plan(overrides: list[str], **opts) -> dict:
    return plan.plan_point(plan.compose(overrides), plan.Options(**opts))


def test_tiny_point_matches_the_built_vlm(shared_cache):
    """Every count, the LM's vocabulary included, equals the real VLM's that ``build_vlm`` assembles (micro backbones:
    their pre-training does not change a count). Mining adds the high-resolution encoder."""
    from harness.models.build import build_vlm

    overrides = [*MICRO, f"paths.cache_dir={shared_cache}", "connector=mining"]
    cfg = plan.compose(overrides)
    _, vlm, _ = build_vlm(cfg, torch.device("cpu"))  # also caches the tokenizer, so the plan's vocabulary is exact
    vlm.set_trainable(list(cfg.train.stages[0].trainable))
    row = plan.plan_point(cfg, plan.Options())
    assert row["params"] == vlm.param_counts()
    assert row["connector_flops_per_image"] == vlm.connector.flops_per_image()
    assert row["notes"] == []


def test_default_point_matches_the_shipped_record(tmp_path):
    """Without a cached tokenizer the LM's vocabulary is the configured upper bound (and said so); every other count
    equals the shipped record's."""
    record = json.loads(AVG_POOL_RECORD.read_text())
    row = _plan(["connector=avg_pool", f"paths.cache_dir={tmp_path}"])
    got, want = row["params"], record["model"]["params"]
    for part in ("encoder", "hr_encoder", "connector"):
        assert got[part] == want[part], part
    assert got["llm"] >= want["llm"]
    assert any("upper bound" in n for n in row["notes"])
    assert row["connector_flops_per_image"] == record["model"]["connector_flops_per_image"]


def test_frozen_llm_trains_fewer_params_and_keeps_no_llm_adam_state(tmp_path):
    base = [f"paths.cache_dir={tmp_path}", "connector=avg_pool"]
    both = _plan(base)
    frozen = _plan([*base, "train.stages.0.trainable=[connector]"])
    conn, llm = frozen["params"]["connector"], frozen["params"]["llm"]
    assert frozen["params"]["trainable"] == conn
    assert both["params"]["trainable"] == conn + llm
    mem_f, mem_b = frozen["memory_bytes"], both["memory_bytes"]
    assert mem_f["adam"] == 2 * 4 * conn  # fp32 moments of the connector only
    assert mem_b["adam"] == 2 * 4 * (conn + llm)
    assert mem_f["gradients"] == 4 * conn
    assert frozen["flops_per_step"] < both["flops_per_step"]  # 4N instead of 6N through the LM


def test_stages_are_counted_one_by_one(tmp_path):
    row = _plan([f"paths.cache_dir={tmp_path}", "connector=avg_pool", "train=minigpt4"])
    cfg = plan.compose([f"paths.cache_dir={tmp_path}", "connector=avg_pool", "train=minigpt4"])
    assert [s["trainable"] for s in row["stages"]] == [list(s.trainable) for s in cfg.train.stages]
    assert row["flops"] == pytest.approx(sum(s["flops_per_step"] * s["steps"] for s in row["stages"]))


def test_multirun_over_two_connectors_gives_two_rows(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert plan.main(["-m", f"paths.cache_dir={tmp_path}", "connector=avg_pool,attn_pool", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["choices"]["connector"] for r in rows] == ["avg_pool", "attn_pool"]
    assert rows[0]["params"]["connector"] != rows[1]["params"]["connector"]
    printed = capsys.readouterr().out
    assert "2 point(s)" in printed and "| avg_pool |" in printed and "| attn_pool |" in printed


def test_sweep_without_multirun_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="add -m"):
        plan.main([f"paths.cache_dir={tmp_path}", "connector=avg_pool,attn_pool"])


def test_point_too_big_for_the_gpu_is_flagged(tmp_path, capsys):
    """A 1.2B LM trained with Adam in fp32 needs ~20 GB: it fits 80 GiB, not 1 GiB."""
    big = [f"paths.cache_dir={tmp_path}", "connector=avg_pool", "llm=hf_llama_1b", "train.batch_size=1"]
    row = _plan(big, gpu_mem_gib=1.0)
    assert row["fits"] is False
    assert row["memory_bytes"]["weights"] > 4 * 1.2e9  # fp32 weights alone
    assert _plan(big, gpu_mem_gib=80.0)["fits"] is True
    plan.main([*big, "--gpu-mem-gib", "1"])
    assert "Will NOT fit 1 GiB: point(s) 0" in capsys.readouterr().out


def test_bad_option_is_one_clear_line(capsys):
    with pytest.raises(SystemExit):
        plan.main(["--mfu", "0", "connector=avg_pool"])
    assert "--mfu=0.0 is out of range; accepted: in (0, 1]" in capsys.readouterr().err


def test_activation_checkpointing_and_bf16_shrink_activations(tmp_path):
    base = [f"paths.cache_dir={tmp_path}", "connector=avg_pool"]
    full = _plan(base)["memory_bytes"]
    ckpt = _plan([*base, "runtime.activation_checkpointing=true"])["memory_bytes"]
    bf16 = _plan([*base, "train.precision=bf16"])["memory_bytes"]
    assert ckpt["activations"] < full["activations"]
    assert bf16["activations"] == pytest.approx(full["activations"] / 2)
    assert bf16["autocast_copies"] > 0 == full["autocast_copies"]
    assert ckpt["weights"] == full["weights"] == bf16["weights"]  # fp32 master weights either way


def test_misspelt_option_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match="plan: cannot compose the sweep: .*avgpool"):
        plan.main([f"paths.cache_dir={tmp_path}", "connector=avgpool"])
