"""Checkpoint and resume: an interrupted point ends with exactly the record of an uninterrupted one.

The subprocess test kills a real ``sweep.py`` run with SIGKILL (no chance to clean up) at a random step after its
first checkpoint, reruns the same command and compares with a run that was never interrupted. The in-process test
walks the other exits: a stop signal (preemption), a diverging loss (the last good checkpoint is kept and named),
resuming past both, and ``runtime.rerun=true`` ignoring a checkpoint that is there.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from harness.models.vlm import VLM
from harness.records import Record, read_record
from harness.train.checkpoint import CHECKPOINT
from tests.conftest import MICRO, ROOT, run_sweep
from tests.test_bad_configs import compose_micro

STEPS = 40
# CPU even where a GPU is present: bitwise-equal losses across processes need deterministic kernels.
EXTRA = [f"train.stages.0.steps={STEPS}", "runtime.checkpoint_every=5", "runtime.log_every=1", "runtime.device=cpu"]


def only_record(results: Path) -> Record:
    (path,) = (results / "runs").glob("*/record.json")
    return read_record(path.parent)


def outcome(rec: dict) -> str:
    """What must not depend on interruptions: scores, losses, data seen (as JSON, so NaN equals NaN)."""
    keys = ("task", "shots", "metric", "subset", "value", "stderr", "n")
    tr = rec.train
    return json.dumps(
        {
            "metrics": [{k: m.get(k) for k in keys} for m in rec.metrics],
            "final_loss": tr["final_loss"],
            "stages": [{k: s[k] for k in ("loss_curve", "realised_mixture", "first_loss")} for s in tr["stages"]],
            "totals": {k: tr[k] for k in ("steps", "sequences", "images", "tokens", "loss_tokens")},
        },
        sort_keys=True,
    )


def logged(run_dir: Path) -> list[tuple]:
    lines = (run_dir / "train_log.jsonl").read_text().splitlines()
    return [(r["stage"], r["step"], r["loss"], r["realised_window"]) for r in map(json.loads, lines)]


def test_sigkill_then_rerun_matches_uninterrupted_run(sweep_env, shared_cache, tmp_path):
    from harness.launch import run_point

    reference = run_point(compose_micro(EXTRA, tmp_path / "ref", shared_cache))  # in-process: saves a startup
    assert reference.status == "ok" and reference.resumed_from_step is None

    env = {**sweep_env, "MM_ABLATE_RESULTS": str(tmp_path / "killed")}
    target = random.randrange(6, STEPS - 5)  # a step after the first checkpoint (step 5), well before the end
    with open(tmp_path / "killed.log", "w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "sweep.py"), *MICRO, *EXTRA],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        run_dir = None
        while proc.poll() is None:
            run_dir = run_dir or next((p.parent for p in (tmp_path / "killed").glob(f"runs/*/{CHECKPOINT}")), None)
            if run_dir and (run_dir / "train_log.jsonl").read_text().count("\n") >= target:  # whole lines only
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (
        f"run ended before step {target}: {(tmp_path / 'killed.log').read_text()}"
    )
    assert logged(run_dir)[-1][1] < STEPS and (run_dir / CHECKPOINT).is_file()
    assert only_record(tmp_path / "killed").status == "running"

    again = run_sweep([*MICRO, *EXTRA], env, tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming from" in again.stdout
    resumed = only_record(tmp_path / "killed")
    assert resumed.status == "ok" and resumed.resumed_from_step % 5 == 0, (target, resumed.resumed_from_step)
    assert 5 <= resumed.resumed_from_step <= target
    assert outcome(resumed) == outcome(reference), f"killed at step {target}"
    assert logged(run_dir) == logged(tmp_path / "ref" / "runs" / reference.cfg_hash)  # no duplicated log lines
    assert not (run_dir / CHECKPOINT).exists()


@pytest.fixture
def poisoned_forward(monkeypatch):
    """``poison(n, action)``: the n-th training forward from now on sends SIGTERM or returns a NaN loss."""
    plan: dict = {}
    original = VLM.forward

    def forward(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if self.training and plan:
            plan["calls"] += 1
            if plan["calls"] == plan["at"] and plan["action"] == "sigterm":
                signal.raise_signal(signal.SIGTERM)
            if plan["calls"] == plan["at"] and plan["action"] == "nan":
                out.loss = out.loss * float("nan")
        return out

    def poison(at: int | None, action: str = "nan") -> None:
        plan.clear()
        if at is not None:
            plan.update(calls=0, at=at, action=action)

    monkeypatch.setattr(VLM, "forward", forward)
    return poison


def test_preemption_divergence_resume_and_rerun(shared_cache, tmp_path, poisoned_forward):
    from harness.launch import run_point

    def point(*extra: str):
        overrides = [
            "train.stages.0.steps=12",
            "runtime.checkpoint_every=4",
            "runtime.log_every=1",
            "runtime.device=cpu",
        ]
        overrides += extra
        return compose_micro(overrides, tmp_path, shared_cache)

    sigterm_handler = signal.getsignal(signal.SIGTERM)

    poisoned_forward(6, "sigterm")  # preemption in step 6: checkpoint at its end, preempted record, exit 128 + 15
    with pytest.raises(SystemExit) as stop:
        run_point(point())
    assert stop.value.code == 128 + signal.SIGTERM
    (run_dir,) = (tmp_path / "runs").glob("*")
    rec = read_record(run_dir)
    assert rec.status == "preempted" and "SIGTERM received; stopped after stage 'pretrain' step 6/12" in rec.error
    assert torch.load(run_dir / CHECKPOINT, weights_only=True)["global_step"] == 6
    assert signal.getsignal(signal.SIGTERM) == sigterm_handler  # the loop's handler is gone once training stops

    poisoned_forward(4, "nan")  # resumed at 6, diverges at 10: the checkpoint of step 8 stays and is named
    rec = run_point(point())
    assert rec.status == "failed" and rec.resumed_from_step == 6
    assert "non-finite loss nan at stage 'pretrain' step 10/12" in rec.error
    assert "last finite loss" in rec.error and "lr connector+encoder" in rec.error
    assert f"last good checkpoint: {run_dir / CHECKPOINT} (after global step 8)" in rec.error
    div = rec.divergence
    assert (div["step"], div["checkpoint_step"]) == (10, 8) and div["last_finite_loss"] > 0 and div["lr"]["llm"] > 0
    assert torch.load(run_dir / CHECKPOINT, weights_only=True)["global_step"] == 8

    poisoned_forward(None)
    resumed = run_point(point())
    assert resumed.status == "ok" and resumed.resumed_from_step == 8
    assert [row[1] for row in logged(run_dir)] == list(range(1, 13))  # each step logged once across three processes
    assert not (run_dir / CHECKPOINT).exists()

    poisoned_forward(10, "nan")  # a fresh run (rerun=true) that leaves a checkpoint behind ...
    assert run_point(point("runtime.rerun=true")).status == "failed"
    assert (run_dir / CHECKPOINT).is_file()
    poisoned_forward(None)  # ... which the next rerun=true ignores: it trains from step 0
    fresh = run_point(point("runtime.rerun=true"))
    assert fresh.status == "ok" and fresh.resumed_from_step is None
    assert outcome(fresh) == outcome(resumed)
