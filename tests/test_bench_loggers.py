"""``python -m harness.bench loggers`` runs every logger configuration on a micro point and writes its JSON (a smoke
check: the figures are measured, never asserted against a bound)."""

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.conftest import MICRO, ROOT

MISSING = [p for p in ("tensorboard", "mlflow", "wandb") if importlib.util.find_spec(p) is None]


@pytest.mark.slow
@pytest.mark.skipif(bool(MISSING), reason=f"pip install {' '.join(MISSING)} (the tracking extra)")
def test_logger_bench_times_every_configuration(sweep_env, tmp_path):
    env = dict(sweep_env, WANDB_MODE="online")  # the bench keeps W&B offline whatever the environment says
    res = subprocess.run([sys.executable, "-m", "harness.bench", "loggers", "--steps", "4", "--warmup", "1",
                          "--note", "test", "--out", str(tmp_path), *MICRO, "runtime.log_every=2"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (out,) = tmp_path.glob("loggers-*.json")
    result = json.loads(out.read_text())
    for key in ("command", "overrides", "versions", "rows", "runs", "import_s", "first_use", "load_avg_before",
                "note", "machine", "when"):
        assert key in result, key
    assert result["command"].startswith("python -m harness.bench loggers --steps 4")
    assert "runtime.log_every=2" in result["overrides"] and result["note"] == "test"
    assert result["versions"]["mlflow"] and result["versions"]["wandb"] and result["versions"]["tensorboard"]
    rows = {r["config"]: r for r in result["rows"]}
    assert list(rows) == ["jsonl", "tensorboard", "mlflow", "wandb", "all"]
    for name, r in rows.items():
        for key in ("step_ms", "cpu_ms_per_step", "in_logger_share", "in_logger_ms_per_call", "step_overhead_vs_jsonl",
                    "open_s", "finish_s", "point_share_estimate"):
            assert r[key] >= 0 or key == "step_overhead_vs_jsonl", (name, key, r[key])
        assert r["step_ms"] > 0 and r["log_calls"] == (0 if name == "jsonl" else 2)  # steps 2 and 4
    assert rows["jsonl"]["in_logger_s"] == 0  # the baseline has no tracker: nothing to time
    assert all(rows[n]["in_logger_s"] > 0 for n in ("tensorboard", "mlflow", "wandb", "all"))
    assert set(rows["all"]["scalars_share"]) == {"tensorboard", "mlflow", "wandb"}
    # every tracker wrote its files (into the bench's temporary results folder, now gone)
    (run,) = result["runs"]["all"]
    assert set(run["bytes"]) == {"tensorboard", "mlruns", "wandb"} and all(run["bytes"].values())
    assert set(result["first_use"]) == set(result["import_s"]) == {"tensorboard", "mlflow", "wandb"}
