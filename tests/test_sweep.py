"""The walking skeleton end to end: `python sweep.py -m ...` at micro size yields records, a summary, and skips reruns."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import MICRO, run_sweep


def records(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "runs").glob("*/record.json"))]


def test_two_point_sweep_then_rerun_skips(sweep_env, tmp_path):
    args = ["-m", "connector=avg_pool,mining", *MICRO]  # Hydra's basic launcher: points run in this process
    first = run_sweep(args, sweep_env, tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    recs = records(tmp_path / "results")
    assert len(recs) == 2 and {r["status"] for r in recs} == {"ok"}, [r.get("error") for r in recs]
    for r in recs:
        assert r["choices"]["connector"] in ("avg_pool", "mining")
        assert r["git"].keys() == {"sha", "dirty"} and r["versions"]["torch"]
        assert r["train"]["steps"] == r["step_budget"] == 8 and r["train"]["tokens"] > 0
        assert r["model"]["connector_flops_per_image"] > 0 and r["train"]["flops_estimate"] > 0
        params = r["model"]["params"]  # the encoder is frozen: stage 1 trains the connector and the LM only
        assert params["trainable"] == params["connector"] + params["llm"] < params["total"]
        assert f"'trainable': {params['trainable']}" in first.stdout  # the build line says the same
        heads = {(m["task"], m["metric"]) for m in r["metrics"] if m["subset"] == "all"}
        assert heads == {("caption", "cider"), ("vqa", "vqa_accuracy")}
        assert all(m["n"] > 0 for m in r["metrics"])
        assert (tmp_path / "results" / "runs" / r["cfg_hash"] / "predictions" / "vqa_0shot_t0.jsonl").is_file()
    summaries = list((tmp_path / "results" / "sweeps").glob("*/summary.md"))
    assert len(summaries) == 1 and "majority baseline" in summaries[0].read_text()
    assert "| avg_pool" in first.stdout and "| mining" in first.stdout

    mtimes = {p: p.stat().st_mtime for p in (tmp_path / "results" / "runs").glob("*/record.json")}
    second = run_sweep(args, sweep_env, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("skipping") == 2 and "[train]" not in second.stdout
    assert {p: p.stat().st_mtime for p in mtimes} == mtimes  # records untouched


def test_failing_point_is_recorded_and_sweep_goes_on(sweep_env, tmp_path):
    # avg_pool cannot make 15 tokens (not a square); c_abstractor neither; linear emits N and ignores the knob.
    res = run_sweep(["-m", "connector=avg_pool,linear", "visual_tokens=15", *MICRO], sweep_env, tmp_path)
    # every point ran, and the sweep still exits non-zero, naming the point that failed
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    assert "1 of 2 points did not finish cleanly" in res.stdout and "failed:" in res.stdout
    assert "'connector': 'avg_pool'" in res.stdout.split("did not finish cleanly")[1]
    by_conn = {r["choices"]["connector"]: r for r in records(tmp_path / "results")}
    failed = by_conn["avg_pool"]
    assert failed["status"] == "failed" and "Nearest valid: 9, 16" in failed["error"]
    assert all(math.isnan(m["value"]) for m in failed["metrics"]) and failed["metrics"]
    assert by_conn["linear"]["status"] == "ok"
    assert by_conn["linear"]["model"]["visual_tokens_emitted"] == 64  # 64 px / patch 8 -> 8 x 8 patches


def test_one_failing_point_exits_non_zero(sweep_env, tmp_path):
    res = run_sweep(["connector=avg_pool", "visual_tokens=15", *MICRO], sweep_env, tmp_path)
    assert res.returncode == 1 and "invalid config" in res.stdout
    assert records(tmp_path / "results")[0]["status"] == "failed"


def test_unknown_connector_names_valid_ones(sweep_env, tmp_path):
    res = run_sweep(["connector=minning", *MICRO], sweep_env, tmp_path)
    assert res.returncode != 0
    assert "mining" in res.stderr and "avg_pool" in res.stderr


def test_local_launcher_runs_points_as_parallel_one_thread_jobs(sweep_env, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    micro_auto_threads = [o for o in MICRO if not o.startswith("runtime.threads=")]  # 0 = auto
    res = run_sweep(["-m", "hydra/launcher=local", "connector=avg_pool,attn_pool", *micro_auto_threads], sweep_env,
                    tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "tail -f" in res.stdout and "| attn_pool" in res.stdout  # where job logs are; the table at the end
    recs = records(tmp_path / "results")
    assert sorted(r["choices"]["connector"] for r in recs) == ["attn_pool", "avg_pool"]
    assert {r["status"] for r in recs} == {"ok"}
    assert {r["threads"] for r in recs} == {1}  # submitit local jobs share the machine: one thread each
    assert len({r["host"] for r in recs}) == 1


def test_bad_benchmark_and_bad_data_fail_before_anything_is_built(sweep_env, tmp_path):
    """Preflight: a benchmark name that does not exist, and a data source whose only sample is corrupt, each end
    the point with one line before any backbone is built or trained (a cache of its own proves nothing was)."""
    from tests.photos import photo_shard

    env = sweep_env | {"MM_ABLATE_CACHE": str(tmp_path / "cache"), "MM_ABLATE_DATA": str(tmp_path / "data")}
    res = run_sweep(["eval.benchmarks=[cocoo]", *MICRO], env, tmp_path)
    assert res.returncode == 1 and "[train]" not in res.stdout
    (line,) = [ln for ln in res.stdout.splitlines() if "invalid config" in ln]
    assert "cocoo" in line and "coco" in line.split("cocoo", 1)[1]  # names the fix: did you mean coco
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").glob("*/*tiny*"))

    photo_shard(tmp_path / "data" / "bad" / "00000.tar", [])  # one sample, and it does not decode
    (tmp_path / "b").mkdir()
    res = run_sweep(["data=caption_only", "data.sources.caption.format=webdataset",
                     "data.sources.caption.path='bad/{00000..00000}.tar'", *MICRO], env, tmp_path / "b")
    assert res.returncode == 1 and "[train]" not in res.stdout
    assert "yielded no valid sample" in res.stdout + res.stderr and "undecodable_image" in res.stdout + res.stderr
    built = [p.name for p in (tmp_path / "cache").glob("*/*") if p.is_dir()]
    assert not any(k in n for n in built for k in ("clip", "llama", "conv")), built  # no backbone was pre-trained


@pytest.mark.parametrize("launcher, limited", [("local", True), ("slurm", False), (None, False)])
def test_local_sweeps_start_points_in_batches_that_fit_in_memory(launcher, limited):
    """submitit's local executor starts every point it is given: a 36-point sweep once started 36 processes and ran a
    24 GB machine out of memory. The sweeper hands it batches of one point per 1.5 GB; SLURM queues its own."""
    import os

    from hydra import compose, initialize_config_dir

    from harness.config.store import register_configs

    register_configs()
    overrides = [f"hydra/launcher={launcher}"] if launcher else []
    with initialize_config_dir(str(Path(__file__).parents[1] / "sweeps"), version_base="1.3"):
        cfg = compose("sweep", overrides=overrides, return_hydra_config=True)
    batch = cfg.hydra.sweeper.max_batch_size
    if not limited:
        assert batch is None
        return
    total_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    assert isinstance(batch, int) and 1 <= batch <= max(1, total_gb / 2)


def test_local_batch_follows_the_memory_available(monkeypatch):
    from harness.config import store

    monkeypatch.setattr(store, "available_memory_gb", lambda: 21.0)
    assert store.local_batch({"hydra/launcher": "local"}) == 10
    monkeypatch.setattr(store, "available_memory_gb", lambda: 0.5)
    assert store.local_batch({"hydra/launcher": "local"}) == 1  # never 0: the sweep still runs, one point at a time
