"""The benchmark command runs and writes its JSON (a smoke check; benchmarks are never timed assertions)."""

import json
import subprocess
import sys

from tests.conftest import MICRO, ROOT


def test_connector_bench_writes_json(sweep_env, tmp_path):
    over = [o for o in MICRO if not o.startswith("runtime.")]
    res = subprocess.run([sys.executable, "-m", "harness.bench", "connectors", "--only", "avg_pool,mining",
                          "--steps", "2", "--warmup", "1", "--threads", "1", "--out", str(tmp_path), *over],
                         env=sweep_env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    (out,) = tmp_path.glob("connectors-*.json")
    rows = json.loads(out.read_text())["rows"]
    assert [r["connector"] for r in rows] == ["avg_pool", "mining"]
    assert all(r["ms_per_step"] > 0 and r["connector_flops_per_image"] > 0 for r in rows)


def test_cache_bench_runs_both_sweeps_and_sizes_the_cache(sweep_env, tmp_path):
    over = [o for o in MICRO if not o.startswith("runtime.")] + ["eval.text_tasks=[]", "eval.max_images=8"]
    res = subprocess.run([sys.executable, "-m", "harness.bench", "cache", "--connectors", "avg_pool", "--steps", "2",
                          "--launcher", "", "--out", str(tmp_path), *over],
                         env=sweep_env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (out,) = tmp_path.glob("cache-*.json")
    result = json.loads(out.read_text())
    (unc,), (cac,) = result["uncached"]["points"], result["cached"]["points"]
    assert not unc["features_from_cache"] and unc["images_encoded"] > 0  # every batch's images, encoded afresh
    assert cac["features_encode_s"] > 0  # the cached sweep starts cold: it encodes the split once ...
    assert result["feature_cache_entries"] >= 1 and result["feature_cache_bytes"] > 0  # ... and stores it
    assert result["ratio_cached_over_uncached"] > 0
