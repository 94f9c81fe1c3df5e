"""`python -m harness.status`: one row per point from records, train logs and checkpoints alone."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import torch

from harness import status
from harness.records import SCHEMA_VERSION, write_json_atomic
from tests.conftest import MICRO, ROOT, run_sweep


def _iso(seconds_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).isoformat(timespec="seconds")


def write_point(runs: Path, h: str, connector: str, state: str, pid: int, log: list[dict] = (), **extra) -> Path:
    run_dir = runs / h
    rec = {"schema_version": SCHEMA_VERSION, "cfg_hash": h, "status": state, "error": None,
           "choices": {"connector": connector, "encoder": "clip_tiny"}, "host": socket.gethostname(), "pid": pid,
           "started_at": _iso(60), "step_budget": 8, "metrics": []} | extra
    write_json_atomic(run_dir / "record.json", rec)
    if log:
        (run_dir / status.TRAIN_LOG).write_text("".join(json.dumps(line) + "\n" for line in log))
    return run_dir


def _line(stage: str, step: int, loss: float, s_per_step: float = 0.5) -> dict:
    return {"stage": stage, "step": step, "loss": loss, "lr": [1e-3], "s_per_step": s_per_step}


@pytest.fixture
def results(tmp_path) -> Path:
    """Four points, one in each state a CPU machine can reach."""
    runs = tmp_path / "results" / "runs"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid no longer exists
    write_point(runs, "a" * 16, "avg_pool", "ok", 1, [_line("align", 4, 2.0), _line("sft", 4, 1.25)],
                train={"steps": 8, "final_loss": 1.25}, wall_s=75.0)
    # stage 'align' has 2 steps, then 'sft': the log restarts its step count per stage, so these lines are step 3
    write_point(runs, "b" * 16, "attn_pool", "running", os.getpid(),
                [_line("align", 1, 3.0), _line("align", 2, 2.75), _line("sft", 1, 2.5, s_per_step=0.5)])
    write_point(runs, "c" * 16, "mining", "failed", 1, [_line("align", 2, 3.0)],
                error="ValueError: connector exploded\nTraceback (most recent call last): ...", wall_s=5.0)
    write_point(runs, "d" * 16, "c_abstractor", "running", gone.pid, [_line("align", 4, 2.75), _line("sft", 2, 2.5)])
    return tmp_path / "results"


def test_rows_show_each_state_with_steps_errors_and_counts(results):
    rows = {r["point"][0]: r for r in status.status_rows(results)}
    assert {k: r["status"] for k, r in rows.items()} == {"a": "ok", "b": "running", "c": "failed", "d": "interrupted"}
    assert (rows["a"]["step"], rows["a"]["budget"], rows["a"]["loss"]) == (8, 8, 1.25)  # the record's totals
    assert (rows["b"]["step"], rows["b"]["loss"]) == (3, 2.5)
    assert rows["b"]["eta"] == pytest.approx(5 * 0.5)  # 5 steps left at 0.5 s each
    assert rows["b"]["elapsed"] == pytest.approx(60, abs=5)  # since started_at
    assert rows["d"]["step"] == 6 and "resume" in rows["d"]["note"]  # 4 steps of 'align' + 2 of 'sft'
    assert rows["c"]["note"] == "ValueError: connector exploded" and rows["c"]["step"] == 2
    for k in "acd":  # an estimate only where something is still training
        assert rows[k]["eta"] != rows[k]["eta"]  # NaN

    text = status.render(list(rows.values()), "here")
    head, cols, *lines = text.splitlines()
    assert head == "4 points in here: 1 ok, 1 running, 1 failed, 1 interrupted"
    assert "connector" in cols and "encoder" not in cols  # the encoder is the same everywhere: no column
    by_point = {line.split()[0][0]: line for line in lines}
    assert " 3/8 " in by_point["b"] and " 8/8 " in by_point["a"] and " 6/8 " in by_point["d"]
    assert socket.gethostname() in by_point["b"] and "2s" in by_point["b"].split()
    assert by_point["c"].endswith("ValueError: connector exploded")


def test_multirun_folder_selects_only_its_points_in_job_order(results, tmp_path):
    sweep = tmp_path / "multirun" / "2026-12-06" / "10-00-00"
    for job, h in (("10", "a" * 16), ("2", "c" * 16), ("3", "e" * 16)):  # 'e': its record is not written yet
        write_json_atomic(sweep / job / "record_ref.json",
                          {"cfg_hash": h, "record": str(results / "runs" / h / "record.json")})
    rows = status.status_rows(sweep)
    assert [(r["point"], r["status"]) for r in rows] == [("c" * 16, "failed"), ("e" * 16, "pending"),
                                                         ("a" * 16, "ok")]
    assert status.render(rows, "s").splitlines()[0] == "3 points in s: 1 ok, 1 pending, 1 failed"


def test_step_from_checkpoint_when_no_log_and_stale_log_ignored(tmp_path):
    runs = tmp_path / "runs"
    ckpt_run = write_point(runs, "f" * 16, "avg_pool", "preempted", 1, error="Preempted: SIGTERM received")
    torch.save({"format": 1, "global_step": 5, "weights": {"connector": {"w": torch.zeros(4)}}},
               ckpt_run / status.CHECKPOINT)
    stale = write_point(runs, "g" * 16, "mining", "running", os.getpid(), [_line("align", 2, 3.0)])
    old = time.time() - 3600  # written by an earlier attempt, and no checkpoint: this attempt starts over
    os.utime(stale / status.TRAIN_LOG, (old, old))
    rows = {r["point"][0]: r for r in status.status_rows(tmp_path)}
    assert rows["f"]["step"] == 5 and rows["f"]["status"] == "preempted"
    assert rows["g"]["step"] == 0 and rows["g"]["eta"] != rows["g"]["eta"]
    from harness.train.checkpoint import CHECKPOINT

    assert status.CHECKPOINT == CHECKPOINT


def test_cli_prints_once_and_watch_stops_when_nothing_runs(results, capsys):
    assert status.main([str(results)]) == 0
    assert capsys.readouterr().out.count("4 points in") == 1
    # the running point finishes while we watch: the table is printed again (not a TTY), then the watch ends.
    # In a subprocess with a timeout, so a watch that never ends fails the test instead of hanging it.
    run_dir = results / "runs" / ("b" * 16)
    rec = json.loads((run_dir / "record.json").read_text())
    watch = subprocess.Popen([sys.executable, "-m", "harness.status", str(results), "--watch", "0.2"], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    first = watch.stdout.readline()  # the first table is out: the point is still running in it
    write_json_atomic(run_dir / "record.json", rec | {"status": "ok", "train": {"steps": 8, "final_loss": 2.0}})
    try:
        watch.wait(timeout=30)  # a few small tables: the pipe does not fill up
        out = first + watch.stdout.read()  # not communicate(): it would skip what readline() buffered
    finally:
        watch.kill()
        watch.stdout.close()
    assert watch.returncode == 0 and out.count("4 points in") >= 2 and "\033[" not in out
    assert out.strip().split("\n\n")[-1].splitlines()[0].endswith("2 ok, 1 failed, 1 interrupted")


def test_bad_folder_is_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "harness.status", str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, check=False)
    assert res.returncode != 0 and "neither a results folder" in res.stderr and len(res.stderr.splitlines()) == 1


def test_micro_sweep_reads_done_with_its_budget(sweep_env, tmp_path):
    """A real two-stage point (3 + 5 steps, logged every 2): the train log the trainer writes adds up to its
    budget, and status reads the finished point from its multirun folder."""
    two_stages = ["train=minigpt4", "train.batch_size=8", "runtime.log_every=2",
                  "train.stages.0.steps=3", "train.stages.0.warmup_steps=1",
                  "train.stages.1.steps=5", "train.stages.1.warmup_steps=1"]
    res = run_sweep(["-m", "connector=avg_pool", *[a for a in MICRO if a != "train=smoke"], *two_stages], sweep_env,
                    tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (sweep,) = (tmp_path / "multirun").glob("*/*")
    (ref,) = sweep.glob("*/record_ref.json")
    run_dir = Path(json.loads(ref.read_text())["record"]).parent
    assert status.log_progress(run_dir)["step"] == 8  # logged at 2, 3 | 2, 4, 5
    out = subprocess.run([sys.executable, "-m", "harness.status", str(sweep)], cwd=ROOT, env=sweep_env,
                         capture_output=True, text=True, check=True).stdout
    head, _, row = out.splitlines()
    assert head == f"1 point in {sweep}: 1 ok"
    assert " avg_pool " in row and " ok " in row and " 8/8 " in row
