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


def test_runs_on_ones_own_data_stay_out_of_the_worlds_mixture_studies(tmp_path):
    """A mixture study sweeps ``data`` (its shares); where the data comes from (``data.sources``, recorded only when
    a source is set) is context, so a run on one's own photos with a grid mixture is not a world point."""
    study = STUDIES.get("figure5a")
    world = {}
    for mix in study.grid["data"]:
        config = recorded_config(["experiment=figure5a", f"data={mix}"])
        world[mix] = write(tmp_path, config, "avg_pool", [0], experiment="figure5a")
    own = recorded_config(["experiment=figure5a", "data=mix_50_50_0"])
    own["data"]["sources"] = {"caption": {"format": "webdataset", "path": "mine/{00000..00003}.tar", "root": "data"}}
    own["seed"] = 7  # another trained point: not a seed the world's runs share
    mine = write(tmp_path, own, "avg_pool", [0])
    members = study_runs(load_runs(tmp_path), study)
    assert set(members["cfg_hash"]) == set(world.values()) and mine not in set(members["cfg_hash"])


def test_a_study_without_members_says_why(tmp_path):
    from harness.analysis.studies import why_no_members

    study = STUDIES.get("figure5a")
    assert why_no_members(load_runs(tmp_path), study) == "no runs were read"
    own = recorded_config(["experiment=figure5a", "data=mix_50_50_0"])
    own["data"]["sources"] = {"caption": {"format": "webdataset", "path": "mine/{00000..00003}.tar", "root": "data"}}
    write(tmp_path, own, "avg_pool", [0])
    write(tmp_path, recorded_config(["connector=avg_pool"]), "avg_pool", [0])  # default mixture: off the grid
    runs = load_runs(tmp_path)
    assert study_runs(runs, study).empty
    why = why_no_members(runs, study)
    assert why.startswith("2 runs read, none launched as python sweep.py experiment=figure5a; 1 on its grid")
    assert "data.sources (1)" in why and "tags=[figure5a]" in why
