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
from tests.analysis_records import Writer

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"


def _write(root: Path, rng: np.random.Generator, *, pattern_gap=0.15, dot_gap=0.2, switch_shift=0.0) -> None:
    w = Writer(root)

    def point(seed, pattern=0.6, dot=0.7, shift=0.0, **kw):
        kw.setdefault("connector", "avg_pool")
        rec = w.record(experiment="calibration", seed=seed, scores={("caption", 0): 0.7, ("vqa", 0): 0.3}, **kw)
        noise = lambda: float(rng.normal(0, 0.01))
        values = {"all": 0.3 + shift, "colour": 0.5, "pattern": pattern, "dot": dot}
        rec.metrics = [m for m in rec.metrics if m["task"] == "caption"]
        rec.metrics[0]["value"] = 0.7 + shift + noise()
        rec.metrics += [{"task": "vqa", "shots": 0, "metric": "vqa_accuracy", "subset": s, "value": v + noise(),
                            "stderr": 0.01, "n": 400} for s, v in values.items()]  # fmt: skip
        rec.write(root / kw.get("subdir", "runs") / rec.cfg_hash)

    for seed in range(8):
        point(seed)
    for seed in range(3):
        point(seed, pattern=0.6 - pattern_gap, resolution=32)
        point(seed, dot=0.7 - dot_gap, visual_tokens=4)
        for switch in ("packing", "no_feature_cache"):
            point(seed, shift=switch_shift, tags=[f"switch:{switch}"], cfg_hash=f"sw{switch}{seed}",
                  subdir=f"runs_switches/{switch}")  # fmt: skip


def test_experiment_lists_eight_base_seeds_and_three_of_each_control() -> None:
    register_configs()
    with initialize_config_dir(config_dir=str(SWEEPS), version_base="1.3"):
        cfg = compose("sweep", overrides=["experiment=calibration"], return_hydra_config=True)
    points = list(cfg.hydra.sweeper.points)
    assert cfg.hydra.sweeper._target_.endswith("PointsSweeper") and cfg.connector.name == "avg_pool"
    assert sum(p.split() == [f"seed={s}"] for p in points for s in range(8)) == 8
    for arm in ("resolution=32", "visual_tokens=4", "runtime.packing=true", "runtime.feature_cache=false"):
        assert sum(arm in p.split() for p in points) == 3, arm
    switch_points = [p for p in points if "runtime." in p]
    assert all("tags=[switch:" in p and "paths.runs_dir=" in p for p in switch_points)  # own folder: same hash
    assert len(expand([["train=smoke"]], points)) == len(points) == 20


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
