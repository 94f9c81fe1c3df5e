"""Study membership of runs launched without ``experiment=``: the Quickstart's composition is the ``connectors``
study, and one trained point recorded twice (under two eval configs, before evaluation had its own hash) counts
once."""

from __future__ import annotations

from harness.analysis.load import load_runs
from harness.analysis.studies import STUDIES, study_runs
from harness.config.hashing import config_hash, point_identity
from harness.config.store import compose_sweep
from harness.records import SCHEMA_VERSION, write_json_atomic

QUICKSTART = ("avg_pool", "attn_pool", "c_abstractor", "mining")


def recorded_config(overrides: list[str]) -> dict:
    """The ``config`` a record of this point holds (as run_point writes it)."""
    cfg = compose_sweep(overrides)
    return point_identity(cfg)[0]


def write(root, config: dict, conn: str, shots: list[int], experiment=None) -> str:
    h = config_hash(config, conn == "mining", with_eval=True)
    metrics = [{"task": t, "shots": k, "metric": m, "subset": "all", "value": 0.5, "stderr": 0.01, "n": 10}
               for k in shots for t, m in (("caption", "cider"), ("vqa", "vqa_accuracy"))]
    write_json_atomic(root / "runs" / h / "record.json", {
        "schema_version": SCHEMA_VERSION, "cfg_hash": h, "status": "ok", "config": config, "seed": config["seed"],
        "choices": {"connector": conn, "experiment": experiment}, "resolution": config["resolution"],
        "visual_tokens": config["visual_tokens"], "step_budget": 600, "tags": [], "metrics": metrics,
        "finished_at": "2026-12-06T00:00:00+00:00"})
    return h


def test_quickstart_sweep_is_the_connectors_study(tmp_path):
    for conn in QUICKSTART:
        write(tmp_path, recorded_config([f"connector={conn}"]), conn, [0])
    members = study_runs(load_runs(tmp_path), STUDIES.get("connectors"))
    assert sorted(members.drop_duplicates("cfg_hash")["connector"]) == sorted(QUICKSTART)


def test_one_trained_point_recorded_under_two_eval_configs_counts_once(tmp_path):
    plain = recorded_config(["connector=c_abstractor"])
    mm1 = recorded_config(["connector=c_abstractor", "eval.shots=[0,4,8]"])
    assert config_hash(plain, False) == config_hash(mm1, False)  # the same trained point
    write(tmp_path, plain, "c_abstractor", [0])
    kept = write(tmp_path, mm1, "c_abstractor", [0, 4, 8], experiment="connectors")
    members = study_runs(load_runs(tmp_path), STUDIES.get("connectors"))
    assert set(members["cfg_hash"]) == {kept}  # the labelled record, with every shot count
