"""Multi-process training keeps the global batch: 2 gloo processes and gradient accumulation both reproduce the
one-process loss curve (harness.train.distributed)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.config.schema import ConfigError
from harness.records import read_record
from harness.train.distributed import DistEnv, check_batch, setup, share
from tests.conftest import MICRO, ROOT
from tests.test_bad_configs import compose_micro

# 6 steps of batch 8, the loss logged every step; evaluation trimmed to the minimum (this is about training).
EXTRA = ["train.stages.0.steps=6", "runtime.log_every=1", "runtime.device=cpu", "eval.max_images=8",
         "eval.text_tasks=[]"]


def losses(results: Path) -> np.ndarray:
    (log,) = results.glob("runs/*/train_log.jsonl")
    return np.array([json.loads(line)["loss"] for line in log.read_text().splitlines()])


def test_share_gives_each_rank_strided_equal_micro_batches():
    rows = list(range(8))
    assert share(rows, DistEnv(rank=0, world_size=2), 1) == [[0, 2, 4, 6]]
    assert share(rows, DistEnv(rank=1, world_size=2), 2) == [[1, 3], [5, 7]]
    assert share(rows, DistEnv(), 4) == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_batch_that_does_not_split_is_refused_with_the_divisors():
    with pytest.raises(ConfigError, match=r"batch_size=6 .* world size 2 x runtime.grad_accum 2 = 4 .*\[1, 2, 3, 6\]"):
        check_batch(6, DistEnv(world_size=2), 2)
    check_batch(8, DistEnv(world_size=2), 2)


def test_multi_process_launch_with_strategy_none_is_refused(monkeypatch):
    import torch

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="launched as 2 processes but runtime.strategy=none"):
        setup("none", torch.device("cpu"))
    with pytest.raises(ConfigError, match="must be one of auto, none, ddp"):
        setup("fsdp1", torch.device("cpu"))


def test_grad_accumulation_matches_one_micro_batch(shared_cache, tmp_path):
    from harness.launch import run_point

    one = run_point(compose_micro(EXTRA, tmp_path / "one", shared_cache))
    acc = run_point(compose_micro([*EXTRA, "runtime.grad_accum=4"], tmp_path / "acc", shared_cache))
    assert one.status == acc.status == "ok"
    assert one.cfg_hash == acc.cfg_hash  # a runtime setting: the same point
    assert acc.distributed == {"strategy": "none", "world_size": 1, "grad_accum": 4}
    np.testing.assert_allclose(losses(tmp_path / "acc"), losses(tmp_path / "one"), rtol=2e-4)
    assert acc.train["tokens"] == one.train["tokens"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# FSDP also runs with packed rows and recomputed decoder layers: both compute the same loss, so the same curve.
@pytest.mark.parametrize(("strategy", "switches"), [
    ("ddp", []), ("fsdp", ["runtime.packing=true", "runtime.activation_checkpointing=true"])])
def test_two_gloo_processes_match_one_process(strategy, switches, sweep_env, shared_cache, tmp_path):
    from harness.launch import run_point

    single = run_point(compose_micro(EXTRA, tmp_path / "single", shared_cache))
    assert single.status == "ok"
    env = dict(sweep_env, MM_ABLATE_RESULTS=str(tmp_path / "ddp"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(ROOT / "sweep.py"), *MICRO, *EXTRA,
           f"runtime.strategy={strategy}", *switches]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (rec_path,) = (tmp_path / "ddp").glob("runs/*/record.json")
    rec = read_record(rec_path.parent)
    assert rec.status == "ok" and rec.cfg_hash == single.cfg_hash
    assert rec.distributed == {"strategy": strategy, "world_size": 2, "grad_accum": 1}
    steps = [m.split()[3] for m in proc.stdout.splitlines() if m.startswith("[train] pretrain step ")]
    assert steps and len(steps) == len(set(steps)), steps  # one console line per logged step, not one per rank
    assert sum(" params {" in m for m in proc.stdout.splitlines() if m.startswith("[run] ")) == 1  # the point, once
    # Rank 0 alone logs and counts the whole global batch: the totals are those of one process.
    assert rec.train["tokens"] == single.train["tokens"]
    np.testing.assert_allclose(losses(tmp_path / "ddp"), losses(tmp_path / "single"), rtol=2e-4)
    # Evaluated on the trained weights (gathered from the shards under FSDP): the same scores as one process.
    score = {(m["task"], m["shots"], m["subset"]): m["value"] for m in single.metrics}
    for m in rec.metrics:
        assert m["value"] == pytest.approx(score[(m["task"], m["shots"], m["subset"])], abs=0.02), m
