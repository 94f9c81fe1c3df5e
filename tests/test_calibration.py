"""The calibration study: its point list, its analysis (controls and the A/A false-positive rate) and its records.

Records are written in the record format with known effects: the base beats resolution=32 on the pattern question
by 0.15 and visual_tokens=4 on the dot question by 0.2 (seed noise 0.01), the two runtime switches change nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from harness.analysis import calibration as cal
from harness.analysis.load import load_runs
from harness.config.store import register_configs
from harness.tables import main as tables_main
from hydra_plugins.mm_ablate_sweeper.points import expand
from tests.analysis_records import BASE_CONFIG, Writer

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"


def _write(root: Path, rng: np.random.Generator, *, pattern_gap=0.15, dot_gap=0.2, switch_shift=0.0,
           world: dict | None = None, token_question: str = "dot", majority: dict | None = None) -> None:
    w = Writer(root, start=1000 if world else 0)

    def point(seed, pattern=0.6, dot=0.7, shift=0.0, **kw):
        kw.setdefault("connector", "avg_pool")
        if world:
            kw["world"] = {**BASE_CONFIG["world"], **world}
        rec = w.record(experiment="calibration", seed=seed, scores={("caption", 0): 0.7, ("vqa", 0): 0.3}, **kw)
        noise = lambda: float(rng.normal(0, 0.01))
        values = {"all": 0.3 + shift, "colour": 0.5, "pattern": pattern, token_question: dot}
        rec.metrics = [m for m in rec.metrics if m["task"] == "caption"]
        rec.metrics[0]["value"] = 0.7 + shift + noise()
        rec.metrics += [{"task": "vqa", "shots": 0, "metric": "vqa_accuracy", "subset": s, "value": v + noise(),
                            "stderr": 0.01, "n": 400} for s, v in values.items()]  # fmt: skip
        for m in rec.metrics:
            if m["task"] == "vqa" and m["subset"] in (majority or {}):
                m["majority_baseline"] = majority[m["subset"]]
        rec.write(root / kw.get("subdir", "runs") / rec.cfg_hash)

    for seed in range(8):
        point(seed)
    for seed in range(3):
        point(seed, pattern=0.6 - pattern_gap, resolution=32)
        point(seed, dot=0.7 - dot_gap, visual_tokens=4)
        for switch in ("packing", "no_feature_cache"):
            point(seed, shift=switch_shift, tags=[f"switch:{switch}"], cfg_hash=f"sw{switch}{seed}{token_question}",
                  subdir=f"runs_switches/{switch}")  # fmt: skip


def test_experiment_lists_eight_base_seeds_and_three_of_each_control() -> None:
    register_configs()
    with initialize_config_dir(config_dir=str(SWEEPS), version_base="1.3"):
        cfg = compose("sweep", overrides=["experiment=calibration"], return_hydra_config=True)
    points = list(cfg.hydra.sweeper.points)
    assert cfg.hydra.sweeper._target_.endswith("PointsSweeper") and cfg.connector.name == "avg_pool"
    split_dot = "world.split=true world.dot=false train.stages.0.steps=5000"
    default = [p for p in points if split_dot not in p]
    assert sum(p.split() == [f"seed={s}"] for p in default for s in range(8)) == 8
    for arm in ("resolution=32", "visual_tokens=4", "runtime.packing=true", "runtime.feature_cache=false"):
        assert sum(arm in p.split() for p in default) == 3, arm
    switch_points = [p for p in points if "runtime." in p]
    assert all("tags=[switch:" in p and "paths.runs_dir=" in p for p in switch_points)  # own folder: same hash
    # the token control where its base learns the split question: 3 seeds of 16 and of 4 tokens, run last
    split = [p.replace(split_dot, "").split() for p in points if split_dot in p]
    assert sorted(split) == sorted([[f"seed={s}"] for s in range(3)] + [["visual_tokens=4", f"seed={s}"]
                                                                          for s in range(3)])  # fmt: skip
    assert points[-len(split):] == [p for p in points if split_dot in p]
    assert len(expand([["train=smoke"]], points)) == len(points) == 26


def test_points_sweeper_rejects_a_point_that_is_not_overrides() -> None:
    with pytest.raises(ValueError, match="key=value"):
        expand([[]], ["seed=0", "resolution 32"])
    with pytest.raises(ValueError, match="empty"):
        expand([[]], [])


def test_switch_runs_stay_out_of_the_other_studies(tmp_path: Path) -> None:
    _write(tmp_path, np.random.default_rng(0))
    plain, everything = load_runs(tmp_path), load_runs(tmp_path, switches=True)
    assert set(plain["switch"]) == {""} and set(everything["switch"]) == {"", "packing", "no_feature_cache"}
    assert everything["cfg_hash"].nunique() == plain["cfg_hash"].nunique() + 6


def test_controls_pass_and_the_aa_rate_is_counted_over_280_splits(tmp_path: Path) -> None:
    _write(tmp_path, np.random.default_rng(0))
    report = cal.build_calibration(load_runs(tmp_path, switches=True))
    c = report.controls.set_index("control")
    assert c["passes"].all(), c[["verdict", "ci_lo", "ci_hi"]]
    assert set(c.loc[c["kind"] == "positive", "verdict"]) == {"detected"}
    assert (c.loc[c["kind"] == "positive", "detection_rate"] > 0.9).all()
    assert set(report.arms["arm"]) == {"base", "resolution=32", "visual_tokens=4", "switch:packing",
                                       "switch:no_feature_cache"}  # fmt: skip
    aa = report.aa.set_index("metric")
    assert (aa["splits"].drop("all metrics") == 280).all() and aa.loc["all metrics", "splits"] == 280 * len(aa.iloc[:-1])
    assert 0 <= aa.loc["all metrics", "rate"] <= 0.2  # iid normal seeds: near the nominal 5%


def test_a_missed_control_and_a_false_difference_fail(tmp_path: Path) -> None:
    _write(tmp_path, np.random.default_rng(1), pattern_gap=-0.1, switch_shift=0.1)
    c = cal.build_calibration(load_runs(tmp_path, switches=True)).controls.set_index("control")
    assert c.loc["pattern needs resolution (64 vs 32 px)", "verdict"] == "reversed"
    assert not c.loc[c["arm"].str.startswith("switch:"), "passes"].any()


def test_all_splits_are_disjoint_and_unordered() -> None:
    splits = cal.all_splits(8, 3)
    assert len(splits) == 280 == math.comb(8, 3) * math.comb(5, 3) // 2
    assert all(not set(a) & set(b) for a, b in splits) and len({frozenset([a, b]) for a, b in splits}) == 280


def test_tables_cli_writes_the_report_and_says_how_to_produce_it(tmp_path: Path, capsys) -> None:
    assert tables_main(["calibration", "--results", str(tmp_path / "none"), "--out", str(tmp_path)]) == 1
    assert "python sweep.py experiment=calibration" in capsys.readouterr().out
    _write(tmp_path / "r", np.random.default_rng(0))
    assert tables_main(["calibration", "--results", str(tmp_path / "r"), "--out", str(tmp_path)]) == 0
    text = (tmp_path / "tables" / "calibration.md").read_text()
    assert "Controls passed: **6 of 6**" in text and "A/A false-positive rate" in text


def test_a_partial_study_reports_what_it_has(tmp_path: Path) -> None:
    """Three base seeds (a sweep still running or cut short): controls are measured, the A/A rate says it waits."""
    _write(tmp_path, np.random.default_rng(0))
    for rec in tmp_path.glob("runs/*/record.json"):
        if json.loads(rec.read_text())["seed"] >= 3:
            rec.unlink()
    report = cal.build_calibration(load_runs(tmp_path, switches=True))
    assert report.aa.empty and "3 base seeds, fewer than 6: no false-positive rate yet" in report.markdown()
    assert report.controls["passes"].all()


def test_setups_are_reported_apart_with_the_controls_their_world_asks(tmp_path: Path) -> None:
    """The study run on the default world and on a world with the split dot (and no dot): two setups, never pooled;
    each has the token control its world asks, and the markdown a section per setup."""
    _write(tmp_path, np.random.default_rng(0))
    _write(tmp_path, np.random.default_rng(1), dot_gap=0.0, world={"split": True, "dot": False},
           token_question="split")
    report = cal.build_calibration(load_runs(tmp_path, switches=True))
    split_setup = "world.dot=false world.split=true"
    assert report.setups() == ["default setup", split_setup]
    c = report.controls.set_index(["setup", "control"])
    assert ("default setup", "dot column needs visual tokens (16 vs 4)") in c.index
    assert ("default setup", "split dot needs visual tokens (16 vs 4)") not in c.index
    assert c.loc[(split_setup, "split dot needs visual tokens (16 vs 4)"), "verdict"] == "missed"  # no gap written
    assert (split_setup, "dot column needs visual tokens (16 vs 4)") not in c.index
    assert (report.aa.groupby("setup")["splits"].max() == 280 * 5).all()  # each setup's own 8 seeds, not 16
    md = report.markdown()
    assert md.count("## Setup: ") == 2 and "Controls passed: **6 of 6**" in md and "Controls passed: **5 of 6**" in md


def test_a_setup_launched_with_one_arm_says_which_controls_it_did_not_run(tmp_path: Path) -> None:
    """Only the base and the token arm in the second setup: the other controls read "not run", and the summary
    counts the controls that ran."""
    _write(tmp_path, np.random.default_rng(0))
    _write(tmp_path, np.random.default_rng(1), world={"split": True, "dot": False}, token_question="split")
    for rec in tmp_path.glob("run*/**/record.json"):
        cfg = json.loads(rec.read_text())["config"]
        if cfg["world"].get("split") and (cfg["resolution"] != 64 or "switch:" in str(cfg["tags"])):
            rec.unlink()
    report = cal.build_calibration(load_runs(tmp_path, switches=True)).only("world.dot=false world.split=true")
    assert set(report.controls.loc[report.controls["verdict"] == cal.NOT_RUN, "arm"]) == {
        "resolution=32", "switch:packing", "switch:no_feature_cache"}  # fmt: skip
    assert "Controls passed: **1 of 1 (5 not run in this setup)**" in report._body(3)


def test_each_setups_arms_show_only_the_questions_its_world_asks(tmp_path: Path) -> None:
    _write(tmp_path, np.random.default_rng(0))
    _write(tmp_path, np.random.default_rng(1), world={"split": True, "dot": False}, token_question="split")
    report = cal.build_calibration(load_runs(tmp_path, switches=True))
    assert {"dot", "split"} <= set(report.arms.columns)  # the combined CSV has both
    default, split = report.only("default setup").arms, report.only("world.dot=false world.split=true").arms
    assert "dot" in default and "split" not in default and "split" in split and "dot" not in split


def test_two_setups_whose_names_coincide_are_still_kept_apart(tmp_path: Path, monkeypatch) -> None:
    """The name lists differences from the composed experiment and can miss one (a key only one side has); the
    grouping is by the whole setup config, so such setups get the hash added to their name and are never pooled."""
    _write(tmp_path, np.random.default_rng(0))
    _write(tmp_path, np.random.default_rng(1), world={"split": True, "dot": False}, token_question="split")
    monkeypatch.setattr(cal, "setup_label", lambda config_json: cal.DEFAULT_SETUP)  # a name that misses everything
    report = cal.build_calibration(load_runs(tmp_path, switches=True))
    setups = report.setups()
    assert len(setups) == 2 and all(s.startswith("default setup [") for s in setups)
    assert all(report.only(s).members["seed"].nunique() == 8 for s in setups)


def test_a_positive_control_whose_base_does_not_learn_its_question_is_not_counted(tmp_path: Path) -> None:
    """The base at the majority answer on the dot (0.26 against 0.25, evaluation stderr 0.01): no effect exists to
    find, so the control is neither passed nor failed, and the study says the mechanism has no valid control."""
    _write(tmp_path, np.random.default_rng(0), dot_gap=0.0, majority={"dot": 0.69, "pattern": 0.2})
    report = cal.build_calibration(load_runs(tmp_path, switches=True))
    c = report.controls.set_index("control")
    dot = c.loc["dot column needs visual tokens (16 vs 4)"]
    assert dot["verdict"].startswith(cal.NOT_A_CONTROL) and dot["passes"] is None and math.isnan(dot["detection_rate"])
    assert c.loc["pattern needs resolution (64 vs 32 px)", "verdict"] == "detected"  # learned: 0.6 against 0.2
    md = report.markdown()
    assert "Controls passed: **5 of 5 (1 not a control in this setup: its base does not learn the question)**" in md
    lines = report.summary_lines()
    assert any(x.startswith("visual tokens: **no valid control**") for x in lines)
    assert any(x.startswith("resolution: **detected in 1** of the 1 setup ") for x in lines)
    assert "## Summary\n\n- resolution" in md  # one setup: the summary still says the token mechanism went untested


def _with_base_values(tmp_path: Path, subset: str, values: list[float], arm_value: float | None = None):
    """The study's runs with the base's ``subset`` score replaced per seed (and the token arm's, if given)."""
    runs = load_runs(tmp_path, switches=True)
    pick = (runs["task"] == "vqa") & (runs["subset"] == subset) & (runs["shots"] == 0)
    base = pick & (runs["resolution"] == 64) & (runs["visual_tokens"] == 16) & (runs["switch"] == "")
    for seed, v in enumerate(values):
        runs.loc[base & (runs["seed"] == seed), "value"] = v
    if arm_value is not None:
        runs.loc[pick & (runs["visual_tokens"] == 4), "value"] = arm_value
    return runs


def test_a_power_miss_stays_a_miss_and_a_reversal_stays_a_reversal(tmp_path: Path) -> None:
    """Only a base that never learned excuses a miss. One of eight base seeds off the plateau (its mean 0.09 above
    the majority answer, 9 evaluation standard errors; its seed interval reaching below it) is a miss the test is
    underpowered for, counted, never excused; a base at chance beaten by its arm is reported reversed."""
    _write(tmp_path, np.random.default_rng(0), dot_gap=0.0, majority={"dot": 0.25})
    runs = _with_base_values(tmp_path, "dot", [0.95] + [0.25] * 7, arm_value=0.25)
    dot = cal.build_calibration(runs).controls.set_index("control").loc["dot column needs visual tokens (16 vs 4)"]
    assert dot["verdict"] == "missed" and dot["passes"] is not None and not dot["passes"] and dot["ci_lo"] < 0 < dot["base - arm"]
    runs = _with_base_values(tmp_path, "dot", [0.25] * 8, arm_value=0.9)
    dot = cal.build_calibration(runs).controls.set_index("control").loc["dot column needs visual tokens (16 vs 4)"]
    assert dot["verdict"] == "reversed" and dot["passes"] is not None and not dot["passes"]


def test_the_summary_finds_each_mechanism_in_the_setup_whose_base_learns_it(tmp_path: Path) -> None:
    """The dot is not learned in the default setup, the split dot is learned and detected in the second: the token
    mechanism counts as detected there, and the default setup's dot row says why it is not a control."""
    _write(tmp_path, np.random.default_rng(0), dot_gap=0.0, majority={"dot": 0.69})
    _write(tmp_path, np.random.default_rng(1), world={"split": True, "dot": False}, token_question="split",
           majority={"split": 0.5})  # fmt: skip
    report = cal.build_calibration(load_runs(tmp_path, switches=True))
    md = report.markdown()
    assert "## Summary over setups" in md
    tokens = next(x for x in report.summary_lines() if x.startswith("visual tokens:"))
    assert tokens.startswith("visual tokens: **detected in 1** of the 1 setup where the base learned the question")
    assert "world.dot=false world.split=true: split +0.19" in tokens and "default setup: dot" in tokens
    assert "not a control here" in tokens
    negatives = [x for x in report.summary_lines() if x.startswith("negative controls")]
    assert negatives == [f"negative controls, {s}: 4 of 4 leave the scores unchanged." for s in report.setups()]
