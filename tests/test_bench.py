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
