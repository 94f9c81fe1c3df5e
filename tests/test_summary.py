"""The end-of-sweep summary across seeds: one row per point with seed intervals, rows below the best marked.

Hand answers: three seeds 1.10, 1.12, 1.11 have mean 1.110 and std 0.010, so the 95% t half-width is
4.303 * 0.010 / sqrt(3) = 0.0248; a 0.3 CIDEr gap at that spread is far outside Welch's interval, while VQA means
0.330 and 0.320 with std 0.020 each (half-widths 0.050) are not distinguishable.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest

from harness.analysis.summary import (
    BELOW_BEST_MARK,
    CHANCE_MARK,
    ONE_SEED_LINE,
    marked_markdown,
    seed_groups,
    seed_table,
    summary_table,
    write_summary,
)
from tests.analysis_records import Writer

CIDER = {"avg_pool": (1.10, 1.12, 1.11), "mining": (0.80, 0.82, 0.81)}
VQA = {"avg_pool": (0.33, 0.35, 0.31), "mining": (0.34, 0.30, 0.32)}


def vqa_type(subset: str, value: float, base: float, se: float = 0.01) -> dict:
    return {"task": "vqa", "shots": 0, "metric": "vqa_accuracy", "subset": subset, "value": value, "stderr": se,
            "n": 400, "majority_baseline": base}


def sweep(w: Writer, seeds=(0, 1, 2), failed: tuple[str, int] | None = None) -> list[dict]:
    """Both connectors at every seed, in sweep order (seed-major, as Hydra lists ``connector=...,... seed=0,1,2``)."""
    recs = []
    for seed in seeds:
        for conn in CIDER:
            status = "failed" if failed == (conn, seed) else "ok"
            rec = w.record(connector=conn, seed=seed, status=status,
                           scores={("caption", 0): CIDER[conn][seed], ("vqa", 0): VQA[conn][seed]})
            rec.metrics[1]["majority_baseline"] = 0.17
            if status == "ok":
                # glyph: every seed at the baseline; colour: far above; shape: the mean beats the baseline by 11
                # evaluation stderrs, but the seeds spread so much that their interval reaches below it
                rec.metrics += [vqa_type("glyph", 0.138, 0.138), vqa_type("colour", 0.55 + 0.01 * seed, 0.19),
                                   vqa_type("shape", (0.20, 0.30, 0.40)[seed], 0.19)]
            recs.append(rec)
    return recs


def row(md: str, name: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {name} "))
    return [c.strip() for c in line.strip("|").split("|")]


def header(md: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith("| connector"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_seeds_of_a_point_become_one_row_and_a_clear_gap_is_marked(tmp_path):
    recs = sweep(Writer(tmp_path / "results"))
    md = write_summary(recs, tmp_path / "out", "t")
    cols = header(md)
    best, worse = dict(zip(cols, row(md, "avg_pool"))), dict(zip(cols, row(md, "mining")))
    assert md.count("| avg_pool ") == 1 and md.count("| mining ") == 1 and "seed" not in cols
    assert best["n"] == worse["n"] == "3" and best["status"] == "ok"
    assert best["CIDEr"] == "1.110 ± 0.025"  # the best row itself is never marked
    assert worse["CIDEr"] == f"0.810{BELOW_BEST_MARK} ± 0.025"
    assert best["VQA"] == "0.330 ± 0.050" and worse["VQA"] == "0.320 ± 0.050"  # within noise: no mark
    assert f"A {BELOW_BEST_MARK} after a mean: below the best row of its column (CIDEr: best avg_pool (1.110); VQA: " \
           "best avg_pool (0.330)), Welch's 95% interval for the difference excludes 0" in md
    assert ONE_SEED_LINE not in md and "| majority baseline " in md
    assert row(md, "majority baseline")[cols.index("VQA")] == "0.170"

    per_seed = pd.read_csv(tmp_path / "out" / "summary.csv")  # one row per record, as with one seed
    assert per_seed["seed"].dropna().astype(int).tolist() == [0, 0, 1, 1, 2, 2]
    assert per_seed["CIDEr"].iloc[:6].tolist() == pytest.approx([1.10, 0.80, 1.12, 0.82, 1.11, 0.81])
    points = pd.read_csv(tmp_path / "out" / "summary_seeds.csv").set_index("connector")
    assert points.loc["mining", "seeds"] == "0 1 2" and points.loc["mining", "CIDEr_n"] == 3
    assert points.loc["avg_pool", "CIDEr_lo"] == pytest.approx(1.110 - 4.303 * 0.01 / math.sqrt(3), abs=1e-6)
    assert bool(points.loc["mining", "CIDEr_below_best"]) and not bool(points.loc["mining", "VQA_below_best"])
    assert points.loc["mining", "CIDEr_vs_best_hi"] < 0 < points.loc["mining", "VQA_vs_best_hi"]


def test_chance_mark_on_seed_means_needs_both_the_stderr_rule_and_the_seed_interval(tmp_path):
    table = seed_table(sweep(Writer(tmp_path / "results")))
    # glyph: at the baseline in every seed; shape: 0.30 vs 0.19 beats 2 stderrs (0.02) but the seed interval
    # 0.30 +- 0.248 reaches below 0.19; colour: above on both counts
    assert table["vqa_at_chance"].tolist()[:2] == ["glyph shape", "glyph shape"]
    md = write_summary(sweep(Writer(tmp_path / "r2")), tmp_path / "out", "t")
    cells = dict(zip(header(md), row(md, "avg_pool")))
    assert cells["vqa:shape"] == f"0.300{CHANCE_MARK} ± 0.248" and CHANCE_MARK not in cells["vqa:colour"]
    assert "or the seed interval reaches down to the baseline" in md


def test_a_failed_seed_is_counted_in_the_runs_not_in_the_scores(tmp_path):
    recs = sweep(Writer(tmp_path / "results"), failed=("mining", 2))
    md = write_summary(recs, tmp_path / "out", "t")
    cells = dict(zip(header(md), row(md, "mining")))
    assert cells["n"] == "3" and cells["status"] == "2 ok, 1 failed"
    # two seeds 0.80, 0.82: half-width 12.706 * 0.01414 / sqrt(2) = 0.127; Welch against the best's three seeds:
    # se 0.0115 at df 1.68 (t 5.88) gives -0.300 +- 0.068, still entirely below 0
    table = seed_table(recs).set_index("connector")
    assert table.loc["mining", "CIDEr_n"] == "2"
    assert cells["CIDEr"] == f"0.810{BELOW_BEST_MARK} ± 0.127 (n=2)"
    assert table.loc["mining", "CIDEr_vs_best_hi"] == pytest.approx(-0.300 + 5.88 * 0.01155, abs=2e-3)


def test_a_single_finished_seed_is_not_the_best_row(tmp_path):
    w = Writer(tmp_path / "results")
    recs = sweep(w)
    lucky = [w.record(connector="attn_pool", seed=0, scores={("caption", 0): 1.5, ("vqa", 0): 0.5}),
             w.record(connector="attn_pool", seed=1, status="failed", scores={("caption", 0): 0, ("vqa", 0): 0})]
    table = seed_table(recs + lucky).set_index("connector")
    assert bool(table.loc["avg_pool", "CIDEr_best"]) and not bool(table.loc["attn_pool", "CIDEr_best"])
    assert bool(table.loc["mining", "CIDEr_below_best"]) and not bool(table.loc["attn_pool", "CIDEr_below_best"])


def test_one_seed_per_point_keeps_the_per_record_table_and_says_it_is_untested(tmp_path):
    write_summary(sweep(Writer(tmp_path / "r3")), tmp_path / "out", "t")  # an earlier write with seeds, same folder
    recs = sweep(Writer(tmp_path / "results"), seeds=(0,))
    md = write_summary(recs, tmp_path / "out", "t")
    assert marked_markdown(summary_table(recs)) + "\n\n" + ONE_SEED_LINE + "\n" in md
    assert "seed" in header(md) and "±" not in md and "below the best row" not in md
    assert not (tmp_path / "out" / "summary_seeds.csv").exists()


def test_points_are_grouped_on_the_config_without_the_seed(tmp_path):
    w = Writer(tmp_path / "results")
    a0, a1 = w.record(connector="avg_pool", seed=0), w.record(connector="avg_pool", seed=1)
    other = w.record(connector="avg_pool", seed=0, resolution=32)  # another point, same labels but resolution
    again = dataclasses.replace(a0)  # the same run listed twice (one record reached through two job folders) counts once
    groups = seed_groups([a0, other, a1, again])
    assert [[r.cfg_hash for r in g] for g in groups] == [[a0.cfg_hash, a1.cfg_hash], [other.cfg_hash]]
    # records without a config fall back to their table labels
    bare = [dataclasses.replace(a0, config={}, cfg_hash="x0"), dataclasses.replace(a1, config={}, cfg_hash="x1"),
            dataclasses.replace(other, config={}, cfg_hash="x2")]
    assert [len(g) for g in seed_groups(bare)] == [2, 1]


def test_a_connector_with_a_second_high_resolution_view_is_labelled(tmp_path):
    """mining's record has high-resolution encoder parameters: the summary says what it sees that the others do not
    (and the M = N setting of Mini-Gemini); a sweep without such a connector has no such line."""
    recs = sweep(Writer(tmp_path))
    assert "Not like for like" not in write_summary(recs, tmp_path / "plain", "sweep")
    for rec in recs:
        if rec.choices["connector"] == "mining":
            rec.model["params"]["hr_encoder"] = 300_000
            rec.config["hr_encoder"] = {"name": "conv_tiny"}
    md = write_summary(recs, tmp_path / "mining", "sweep")
    (line,) = [ln for ln in md.splitlines() if ln.startswith("- mining also sees")]
    assert "at 128 px" in line and "beside its 64 px" in line and "M = N" in line
    assert "avg_pool also" not in md


def test_points_told_apart_only_by_a_key_below_a_group_get_a_setting_column(tmp_path):
    """``-m encoder.layers=2,4`` keeps the encoder's name: without a setting column the two rows would look alike.
    Keys that follow a label column (the tokens column and ``connector.num_tokens``) or the seed never show."""
    recs = sweep(Writer(tmp_path / "plain"))
    assert "setting" not in header(write_summary(recs, tmp_path / "a", "sweep"))  # connectors tell the rows apart
    for rec in recs:
        rec.config["encoder"] = {**rec.config.get("encoder", {}), "name": "clip_tiny",
                                 "layers": 4 if rec.choices["connector"] == "mining" else 2}  # fmt: skip
        rec.config["connector"] = {**rec.config.get("connector", {}), "name": "avg_pool"}
        rec.choices["connector"] = "avg_pool"
    md = write_summary(recs, tmp_path / "b", "sweep")
    assert "setting" in header(md)
    assert row(md, "avg_pool")[header(md).index("setting")] in ("encoder.layers=2", "encoder.layers=4")
    assert set(summary_table(recs)["setting"].dropna()) == {"encoder.layers=2", "encoder.layers=4"}
    assert "seed=" not in md


def test_a_setting_column_spells_a_shorter_list_whole_and_ignores_records_without_a_config(tmp_path):
    """A frozen-LLM point beside the default one: both rows name the whole trainable list (not one index of it, which
    would make the default row look like the changed one); a record without a config adds no keys to the others."""
    from harness.analysis.summary import hidden_settings

    recs = sweep(Writer(tmp_path), seeds=(0,))
    for rec in recs:  # both connectors -> one label; the trainable list tells them apart
        rec.config["connector"] = {**rec.config.get("connector", {}), "name": "avg_pool"}
        rec.choices["connector"] = "avg_pool"
        rec.config["train"] = {"stages": [{"trainable": ["connector"] if rec is recs[0] else ["connector", "llm"]}]}
    bare = dataclasses.replace(recs[1], config={}, cfg_hash="bare")
    assert hidden_settings([*recs, bare]) == ["train.stages.0.trainable=[connector]",
                                              "train.stages.0.trainable=[connector,llm]", ""]  # fmt: skip


def test_a_calibration_switch_run_is_a_point_of_its_own(tmp_path):
    """A switch run shares its base's config hash (runtime settings are not hashed): it is neither dropped as the same
    run listed twice nor pooled with the base's seeds, and its row says which switch it is."""
    from harness.analysis.summary import hidden_settings

    w = Writer(tmp_path / "results")
    a0, a1 = w.record(connector="avg_pool", seed=0), w.record(connector="avg_pool", seed=1)
    s0 = dataclasses.replace(a0, tags=["switch:packing"])
    s1 = dataclasses.replace(a1, tags=["switch:packing"])
    groups = seed_groups([a0, s0, a1, s1, dataclasses.replace(s0)])
    assert [[(r.cfg_hash, tuple(r.tags)) for r in g] for g in groups] == [
        [(a0.cfg_hash, ()), (a1.cfg_hash, ())], [(a0.cfg_hash, ("switch:packing",)), (a1.cfg_hash, ("switch:packing",))]]
    assert hidden_settings([a0, s0]) == ["", "switch=packing"]
