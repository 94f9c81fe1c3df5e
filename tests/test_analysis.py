"""Analysis layer: tidy loading, seed statistics, study membership, tables, figures, verdicts and the CLI.

Fixture records (tests/analysis_records.py) carry known effects, so every number and verdict below has a hand answer.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from harness.analysis import STUDIES, load_runs, verdicts
from harness.analysis.findings import FAILS, HOLDS, INCONCLUSIVE, _verdict
from harness.analysis.report import build, runs_overview, study_counts
from harness.analysis.stats import Interval, delta_vs_base, mean_interval, t_critical, welch_interval
from harness.analysis.studies import AS_DECLARED, _named, context_label, declared_config, headline, layout, study_runs
from harness.analysis.summary import summary_table
from harness.analysis.tables import cell, wide
from harness.records import read_record
from harness.registry import UnknownComponentError
from harness.tables import main
from tests.analysis_records import Writer, scores, write_fixture_results

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return write_fixture_results(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def runs(results) -> pd.DataFrame:
    return load_runs(results)


@pytest.fixture(scope="module")
def cli_all(results, tmp_path_factory):
    """``python -m harness.tables all`` once for the module; record bytes are hashed before and after."""
    before = {p: hashlib.sha1(p.read_bytes()).hexdigest() for p in results.rglob("record.json")}
    out = tmp_path_factory.mktemp("out")
    rc = main(["all", "--results", str(results), "--out", str(out)])
    after = {p: hashlib.sha1(p.read_bytes()).hexdigest() for p in results.rglob("record.json")}
    return rc, out, before, after


# -- stats ------------------------------------------------------------------------------------------------------------
def test_t_table_and_interpolation():
    assert t_critical(2) == 4.303 and t_critical(math.inf) == 1.960
    assert t_critical(35) == pytest.approx(2.030, abs=1e-3)  # tabulated value 2.0301
    assert math.isnan(t_critical(0.5)) and math.isnan(t_critical(math.nan))


def test_seed_interval_matches_hand_computation():
    iv = mean_interval([0.30, 0.32, 0.34, math.nan])  # the NaN is a failed seed: not counted
    assert iv.n == 3 and iv.mean == pytest.approx(0.32) and iv.std == pytest.approx(0.02)
    half = 4.303 * 0.02 / math.sqrt(3)
    assert (iv.lo, iv.hi) == pytest.approx((0.32 - half, 0.32 + half))


def test_one_seed_has_no_interval_and_no_seed_is_nan():
    one = mean_interval([0.5])
    assert one.mean == 0.5 and math.isnan(one.lo) and math.isnan(one.hi)
    none = mean_interval([math.nan, math.nan])
    assert none.n == 0 and math.isnan(none.mean)


def test_welch_interval_hand_computed():
    a, b = [1.0, 2.0, 3.0], [1.0, 1.5, 2.0, 2.5]
    va, vb = 1.0 / 3, (5 / 12) / 4  # sample variance / n
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    iv = welch_interval(a, b)
    assert iv.mean == pytest.approx(0.25) and iv.df == pytest.approx(df)
    half = t_critical(df) * math.sqrt(va + vb)
    assert (iv.lo, iv.hi) == pytest.approx((0.25 - half, 0.25 + half))


def test_delta_vs_base():
    df = pd.DataFrame(
        {
            "arm": ["base"] * 3 + ["new"] * 3,
            "value": [1.0, 1.1, 0.9, 1.5, 1.6, math.nan],
            "metric": "m",
            "status": ["ok"] * 5 + ["failed"],
        }
    )
    d = delta_vs_base(df, ["arm"], {"arm": "base"}, within=["metric"]).set_index("arm")
    assert d.loc["base", "delta"] == 0 and math.isnan(d.loc["base", "ci_lo"])
    expected = welch_interval([1.5, 1.6], [1.0, 1.1, 0.9])
    assert d.loc["new", "delta"] == pytest.approx(0.55) and d.loc["new", "ci_lo"] == pytest.approx(expected.lo)
    assert d.loc["new", "n"] == 2
    with pytest.raises(ValueError, match="not among the axes"):
        delta_vs_base(df, ["arm"], {"connector": "x"}, within=["metric"])


# -- load -------------------------------------------------------------------------------------------------------------
def test_load_is_tidy(runs):
    keys = ["cfg_hash", "task", "shots", "metric", "subset"]
    assert not runs.duplicated(keys).any()
    for col in (
        "connector",
        "data",
        "resolution",
        "visual_tokens",
        "seed",
        "step_budget",
        "status",
        "encoder_arch",
        "encoder_data",
        "mix_caption",
        "mix_interleaved",
        "mix_text",
        "mix_synthetic_caption",
    ):
        assert col in runs
    row = runs[(runs["data"] == "mix_90_0_10")].iloc[0]
    assert row["mix_caption"] == pytest.approx(0.9) and row["mix_text"] == pytest.approx(0.1)
    assert row["mix_interleaved"] == 0 and row["encoder_arch"] == "clip_tiny w96 L4"


def test_duplicate_hash_keeps_newest_ok(runs):
    per_run = runs.drop_duplicates("cfg_hash").set_index("cfg_hash")
    assert per_run.loc["dupe_ok_then_failed", "status"] == "ok"  # the newer copy failed: the ok one wins
    assert "/copied/" in per_run.loc["dupe_two_ok", "record_path"]  # both ok: the newer one
    vqa = runs[(runs["cfg_hash"] == "dupe_two_ok") & (runs["task"] == "vqa") & (runs["shots"] == 0)]
    assert vqa["value"].item() == pytest.approx(0.22)


def test_failed_run_stays_nan_never_zero(runs):
    failed = runs[runs["status"] == "failed"]
    assert len(failed) and failed["value"].isna().all()
    lay = layout(study_runs(runs, STUDIES.get("figure4")), STUDIES.get("figure4"))
    cell_ = lay[(lay["connector"] == "attn_pool") & (lay["metric"] == "VQA acc") & (lay["shots"] == 0)].iloc[0]
    assert math.isnan(cell_["mean"]) and cell_["n"] == 0 and cell_["failed"] == 1
    assert cell(cell_["mean"], cell_["ci_lo"], cell_["ci_hi"], cell_["n"], cell_["failed"]) == "NaN [1 failed]"


def test_grid_points_without_a_finished_run_are_named(runs):
    rep = build("figure4", runs)
    assert len(rep.missing) == 4 and all(p.startswith("connector=attn_pool, ") for p in rep.missing)
    assert "No finished run yet at: connector=attn_pool, resolution=32, visual_tokens=4;" in rep.provenance()


def test_running_record_is_listed_with_nan(tmp_path):
    rec = Writer(tmp_path).record(scores={})
    df = load_runs(tmp_path)
    assert rec.metrics == [] and len(df) == 1 and math.isnan(df["value"].item())
    assert runs_overview(df)["cfg_hash"].tolist() == [rec.cfg_hash]


def test_empty_results_dir(tmp_path):
    df = load_runs(tmp_path)
    assert df.empty and "value" in df
    assert build("figure4", df).empty


def test_summary_shares_the_row_logic(results):

    recs = [read_record(p.parent) for p in sorted((results / "runs").glob("*/record.json"))]
    table = summary_table(recs)
    assert {"connector", "tokens", "steps", "status", "CIDEr", "VQA"} <= set(table.columns)
    failed = table[table["status"] == "failed"].iloc[0]
    assert failed["tokens"] == "16" and math.isnan(failed["VQA"])  # a failed run shows the tokens it asked for


def test_summary_marks_question_types_at_chance(tmp_path):
    from harness.analysis.summary import CHANCE_MARK, write_summary

    def vqa(subset, value, base, se):
        return {"task": "vqa", "shots": 0, "metric": "vqa_accuracy", "subset": subset, "value": value,
                "stderr": se, "n": 400, "majority_baseline": base}

    w = Writer(tmp_path / "results")
    ok = w.record(connector="avg_pool", scores={("caption", 0): 1.0, ("vqa", 0): 0.33})
    # glyph: below the baseline; position: 0.03 above with stderr 0.015 (= 2 stderr, not more); colour: far above
    ok.metrics += [vqa("glyph", 0.09, 0.138, 0.014), vqa("position", 0.13, 0.10, 0.015),
                      vqa("colour", 0.58, 0.19, 0.024)]
    failed = w.record(connector="mining", status="failed", scores={("vqa", 0): 0.0})
    failed.metrics.append(vqa("glyph", math.nan, 0.138, math.nan))  # no score is not "at chance"
    table = summary_table([ok, failed])
    assert table["vqa_at_chance"].tolist()[:2] == ["glyph position", ""]
    md = write_summary([ok, failed], tmp_path / "out", "t")
    assert f"0.090{CHANCE_MARK}" in md and f"0.130{CHANCE_MARK}" in md and f"0.580{CHANCE_MARK}" not in md
    assert "not above the majority baseline" in md
    csv = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert csv["vqa:glyph"].iloc[0] == pytest.approx(0.09)  # the CSV stays numeric; the flags are their own column


# -- studies ----------------------------------------------------------------------------------------------------------
def test_unknown_study_suggests():
    with pytest.raises(UnknownComponentError, match="Did you mean: table1"):
        STUDIES.get("tabel1")
    with pytest.raises(UnknownComponentError, match="Available: connectors, figure4"):
        verdicts(pd.DataFrame(), "fig")


def test_membership_includes_shared_points_and_splits_contexts(runs):
    fig5b = study_runs(runs, STUDIES.get("figure5b")).drop_duplicates("cfg_hash")
    assert set(fig5b["data"]) == {"caption_only", "interleaved_only", "mix_90_0_10", "mix_0_90_10"}
    assert len(fig5b) == 12 and set(fig5b["experiment"].fillna("none")) == {"figure5a", "figure5b", "none"}
    fig5a = study_runs(runs, STUDIES.get("figure5a")).drop_duplicates("cfg_hash")
    assert "mm1_45_45_10" not in set(fig5a["data"])  # same context, but not on figure5a's grid
    assert fig5a["context"].nunique() == 2 and set(fig5a["step_budget"]) == {50, 600}
    fig4 = study_runs(runs, STUDIES.get("figure4")).drop_duplicates("cfg_hash")
    assert "table1" not in set(fig4["experiment"])  # table1's eval differs: another context


def test_contexts_are_named_by_what_differs_from_the_experiment_file(runs):
    """Two budgets of figure5a: each context is named by its settings that differ from ``experiment=figure5a`` (the
    fixture's configs also differ in hr_resolution), in tables and in every verdict row."""
    fig5a = study_runs(runs, STUDIES.get("figure5a"))
    names = fig5a.groupby("context")["step_budget"].unique().map(list).to_dict()
    assert len(names) == 2 and all(n.startswith("hr_resolution=") for n in names)
    (short,) = [n for n, budgets in names.items() if budgets == [50]]
    assert short.endswith(" train.stages.0.steps=50")
    v = verdicts(runs, "figure5a")
    assert set(v["setup"]) == set(names) and (v.groupby("setup").size() == len(v) // 2).all()


def test_a_context_name_shows_the_override_that_made_it():
    """Lists of another length and a null against a dict are shown whole; a config that differs only in keys one
    side lacks is named by its hash, never "as declared"; two contexts that share a name both get their hash."""
    import copy

    study = STUDIES.get("table1")
    declared = declared_config("table1")
    assert context_label(copy.deepcopy(declared), study) == AS_DECLARED
    frozen = copy.deepcopy(declared)
    frozen["train"]["stages"][0]["trainable"] = ["connector"]
    assert context_label(frozen, study) == "train.stages.0.trainable=[connector]"
    other = copy.deepcopy(declared)
    other["connector"] = {**other["connector"], "name": "avg_pool", "extra_knob": 3}
    assert context_label(other, study) == "connector.name=avg_pool"
    only_own_keys = copy.deepcopy(declared)
    only_own_keys["connector"]["extra_knob"] = 3  # a key the declared connector lacks: ignored by the name ...
    assert context_label(only_own_keys, study).startswith("setup ")  # ... but it is not the declared setup
    context = pd.Series({"h1": "c1", "h2": "c2", "h3": "c1"})
    configs = pd.Series({"h1": other, "h2": {**other, "connector": {**other["connector"], "extra_knob": 4}},
                         "h3": other})  # fmt: skip
    names = _named(context, configs, study)
    assert names == {"h1": "connector.name=avg_pool [c1]", "h2": "connector.name=avg_pool [c2]",
                     "h3": "connector.name=avg_pool [c1]"}  # fmt: skip


@pytest.mark.parametrize("name", sorted(STUDIES.names()))
def test_every_study_has_its_experiment_file(name):
    study = STUDIES.get(name)
    path = SWEEPS / "experiment" / f"{name}.yaml"
    assert path.is_file(), f"study {name} has no sweeps/experiment/{name}.yaml"
    params = {k: str(v).split(",") for k, v in OmegaConf.load(path).hydra.sweeper.params.items() if k != "seed"}
    assert params == {k: [str(v) for v in vals] for k, vals in study.grid.items()}
    if study.base is not None:
        assert set(study.factors) <= set(study.base), f"{name}: base must fix every factor"


def test_every_experiment_file_is_a_study():
    # calibration is read by harness.analysis.calibration (arms, controls, A/A), not by a grid study
    assert {p.stem for p in (SWEEPS / "experiment").glob("*.yaml")} <= {*STUDIES.names(), "calibration"}


def test_paper_reference_is_flagged_and_separate(runs):
    t1 = STUDIES.get("table1").paper.table()
    assert len(t1) == 10 and t1["confidence"].str.contains("unconfirmed").all()
    assert (t1["confidence"].str.startswith("R (unconfirmed: recalled")).sum() == 2
    notes = STUDIES.get("figure4").paper.notes_table()
    assert notes["confidence"].str.startswith("P (paper wording").any()
    ours = wide(build("table1", runs))
    assert not set(t1.columns) & set(ours.columns)  # paper and this run never share a column


# -- verdicts ---------------------------------------------------------------------------------------------------------
def test_verdict_rule():
    assert _verdict(Interval(0.1, 0.05, 0.15, 4), "") == HOLDS
    assert _verdict(Interval(-0.1, -0.15, -0.05, 4), "") == FAILS
    assert _verdict(Interval(0.1, -0.05, 0.25, 4), "") == INCONCLUSIVE
    assert _verdict(Interval(0.1, 0.05, 0.15, 4), "1 matched block(s)") == INCONCLUSIVE
    assert _verdict(Interval(0.1, math.nan, math.nan, 1), "") == INCONCLUSIVE


def test_verdicts_on_fixture(runs):
    v = verdicts(runs)
    by = {lesson: g for lesson, g in v.groupby("study")}
    # 2 claims x 2 metrics x 0-shot, and the resolution claim on the pattern control
    assert set(by["table1"]["verdict"]) == {HOLDS} and len(by["table1"]) == 5
    assert set(by["figure4"]["verdict"]) == {HOLDS} and len(by["figure4"]) == 14  # + 2 claims on the controls
    controls = by["figure4"][by["figure4"]["claim"].str.contains("control")]
    assert sorted(controls["metric"]) == ["VQA dot", "VQA pattern"] and set(controls["shots"]) == {0}
    main_ctx = by["figure5a"][by["figure5a"]["steps"] == "600"]
    assert set(main_ctx["verdict"]) == {HOLDS}
    assert set(main_ctx["shots"]) == {0, 4, 8}
    short = by["figure5a"][by["figure5a"]["steps"] == "50"]
    assert set(short["verdict"]) == {INCONCLUSIVE} and short["detail"].str.contains("only 1 caption_share").all()
    few = by["figure5b"][by["figure5b"]["claim"] == "text-only data raises few-shot"]
    assert set(few["verdict"]) == {FAILS} and (few["ci_hi"] < 0).all() and set(few["shots"]) == {4, 8}
    text = by["figure5b"][by["figure5b"]["claim"] == "text-only data raises text-task scores"]
    assert text["verdict"].tolist() == [INCONCLUSIVE] and "no scores for task(s) textcore" in text["detail"].item()
    assert by["figure5d"]["detail"].item() == "no figure5d records: run `python sweep.py experiment=figure5d`"


def test_missing_runs_are_named(tmp_path):
    w = Writer(tmp_path)
    w.record(experiment="figure5d", data="mm1_45_45_10", seed=0, scores=scores(0.30))
    w.record(experiment="figure5d", data="mm1_45_45_10", seed=1, scores=scores(0.31))
    v = verdicts(load_runs(tmp_path), "figure5d")
    assert set(v["verdict"]) == {INCONCLUSIVE}
    assert v["detail"].eq("no finished runs with synthetic=with synthetic").all()
    w.record(experiment="figure5d", data="mm1_45_45_10_synth", seed=0, scores=scores(0.35))
    v = verdicts(load_runs(tmp_path), "figure5d")
    assert set(v["verdict"]) == {INCONCLUSIVE} and v["detail"].str.contains("1 matched block").all()
    assert v["detail"].str.contains("add seeds").all()


def test_figure5c_compares_the_literal_10_percent_level_with_the_largest_share(tmp_path):
    """A contrast may name a literal level on one side and an extreme on the other: 10% text vs the most text."""
    w = Writer(tmp_path)
    for seed in range(3):  # 0% and 10% text score alike, 33% text loses 0.05 (+-0.01 by seed)
        w.record(experiment="figure5c", data="mix_50_50_0", seed=seed, scores=scores(0.40))
        w.record(experiment="figure5c", data="mm1_45_45_10", seed=seed, scores=scores(0.40 + 0.01 * seed))
        w.record(experiment="figure5c", data="mix_33_33_33", seed=seed, scores=scores(0.35))
    v = verdicts(load_runs(tmp_path), "figure5c")
    multimodal = v[v["claim"] == "a small text share beats a large one on multimodal scores"]
    assert set(multimodal["verdict"]) == {HOLDS} and len(multimodal) == 6  # 2 metrics x 3 shot counts
    assert multimodal["detail"].str.contains(r"text_share 0.1 vs 0.333").all()
    text = v[v["claim"] == "a small text share raises text-task scores over none"]
    assert text["verdict"].tolist() == [INCONCLUSIVE] and "no scores for task(s) textcore" in text["detail"].item()


def test_interval_crossing_zero_is_inconclusive(tmp_path):
    w = Writer(tmp_path)
    for seed, (off, on) in enumerate(((0.30, 0.35), (0.30, 0.26), (0.30, 0.33))):  # +0.05, -0.04, +0.03
        w.record(experiment="figure5d", data="mm1_45_45_10", seed=seed, scores=scores(off))
        w.record(experiment="figure5d", data="mm1_45_45_10_synth", seed=seed, scores=scores(on))
    v = verdicts(load_runs(tmp_path), "figure5d")
    assert set(v["verdict"]) == {INCONCLUSIVE} and (v["ci_lo"] < 0).all() and (v["ci_hi"] > 0).all()
    assert v["blocks"].eq("3").all() and v["steps"].eq("600").all()


# -- tables, figures, CLI ---------------------------------------------------------------------------------------------
def test_cli_all_writes_tables_and_figures_and_leaves_records_alone(cli_all):
    rc, out, before, after = cli_all
    assert rc == 0 and before == after
    for name in ("figure4", "table1", "figure5a", "figure5b", "figure5c", "connectors"):
        for ext in ("md", "csv", "tex"):
            assert (out / "tables" / f"{name}.{ext}").stat().st_size > 0
    assert not (out / "tables" / "figure5d.md").exists()  # no records: nothing written for it
    md = (out / "tables" / "figure4.md").read_text()
    assert "## This run" in md and "## Paper (MM1), for reference" in md and "## Verdicts" in md
    assert "NaN [1 failed]" in md and "unconfirmed" in md
    csv = pd.read_csv(out / "tables" / "figure4.csv")
    assert {"mean", "std", "n", "ci_lo", "ci_hi", "failed"} <= set(csv.columns) and csv["n"].dtype.kind == "i"
    tex = (out / "tables" / "figure4.tex").read_text()
    assert r"\begin{tabular}" in tex and r"c\_abstractor" in tex and r"$\pm$" in tex and "±" not in tex
    assert (out / "tables" / "verdicts.md").read_text().count("| holds") >= 16


def test_cli_all_writes_readable_pngs(cli_all):
    _, out, _, _ = cli_all
    pngs = sorted((out / "figures").glob("*.png"))
    assert {p.name for p in pngs} >= {
        "figure4_vs_visual_tokens.png",
        "figure4_vs_resolution.png",
        "figure5a_vs_caption_share.png",
        "table1_vs_resolution.png",
    }
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_cli_single_study_without_records_fails_with_the_command(results, tmp_path, capsys):
    assert main(["figure5d", "--results", str(results), "--out", str(tmp_path)]) == 1
    assert "python sweep.py experiment=figure5d" in capsys.readouterr().out


def test_cli_all_moves_aside_tables_of_a_study_whose_records_are_gone(results, tmp_path, capsys):
    """Tables left by an earlier run describe other records: ``all`` moves them aside (``*.stale``, nothing is
    deleted), a named study points them out."""
    old = [tmp_path / "tables" / "figure5d.md", tmp_path / "tables" / "figure5d_verdicts.csv",
           tmp_path / "figures" / "figure5d_vs_synthetic.png", tmp_path / "tables" / "calibration.md"]  # fmt: skip
    kept = tmp_path / "tables" / "notes.md"  # not a file this tool writes
    for p in [*old, kept]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("from an earlier run")
    assert main(["figure5d", "--results", str(results), "--out", str(tmp_path)]) == 1
    assert all(p.exists() for p in old) and "`all` removes them" in capsys.readouterr().out
    assert main(["all", "--results", str(results), "--out", str(tmp_path)]) == 0
    assert not any(p.exists() for p in old) and kept.exists()
    assert all(p.with_name(p.name + ".stale").read_text() == "from an earlier run" for p in old)
    out = capsys.readouterr().out
    assert "figure5d: moved aside 3 files" in out and "calibration: moved aside 1 file " in out
    assert (tmp_path / "tables" / "figure4.md").exists()  # studies with records are written as before


def test_cli_unknown_study(capsys, tmp_path):
    assert main(["figure_4", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Unknown study 'figure_4'" in err and "Did you mean: figure4" in err and "all" in err


def test_study_counts(runs):
    counts = study_counts(runs).set_index("study")
    assert counts.loc["figure5d", "runs"] == 0 and counts.loc["figure4", "failed"] == 1
    assert counts.loc["figure5d", "command"] == "python sweep.py experiment=figure5d"
    assert np.issubdtype(counts["ok"].dtype, np.integer)


# -- power in every verdict -------------------------------------------------------------------------------------------
def test_verdict_table_has_power_columns_at_the_end(cli_all):
    _, out, _, _ = cli_all
    md = (out / "tables" / "verdicts.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| lesson"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    # the fixture has figure5a at two budgets, so the setup column names each row's context
    old = ["lesson", "claim", "metric", "shots", "effect [95% CI]", "blocks", "steps", "setup", "verdict", "detail"]
    assert cols == old + ["MDE (80%)", "seeds to resolve"]  # existing columns keep their order
    assert "80% power" in md and "| resolved" in md
    csv = pd.read_csv(out / "tables" / "verdicts.csv")
    assert list(csv.columns[-4:]) == ["seeds", "mde", "seeds_to_resolve", "seeds_status"]
    assert "MDE (80%)" in (out / "tables" / "figure4.md").read_text()  # the per-study verdict block too


def test_inconclusive_verdict_says_how_many_seeds_would_resolve_it(tmp_path):
    from harness.analysis.stats import minimum_detectable_effect, seeds_to_resolve
    from harness.analysis.tables import verdict_display

    w = Writer(tmp_path)
    for seed, (off, on) in enumerate(((0.30, 0.35), (0.30, 0.26), (0.30, 0.33))):  # +0.05, -0.04, +0.03
        w.record(experiment="figure5d", data="mm1_45_45_10", seed=seed, scores=scores(off))
        w.record(experiment="figure5d", data="mm1_45_45_10_synth", seed=seed, scores=scores(on))
    v = verdicts(load_runs(tmp_path), "figure5d")
    d = np.array([0.05, -0.04, 0.03])  # VQA differences per seed
    sd = float(d.std(ddof=1))  # 0.0473; one block per seed (figure5d varies only the data)
    expected = seeds_to_resolve(float(d.mean()), (sd,), (1.0,))
    assert expected.status == "ok" and expected.seeds > 3
    assert (v["seeds"] == 3).all() and (v["seeds_status"] == "ok").all()
    assert v["seeds_to_resolve"].eq(expected.seeds).all()
    mde = minimum_detectable_effect(sd / math.sqrt(3), 2)
    scale = v["metric"].map({"VQA acc": 1, "CIDEr": 2})  # the fixture puts CIDEr on twice the VQA scale
    assert (v["mde"] / scale).to_numpy() == pytest.approx(mde, abs=1e-9)
    shown = verdict_display(v)["seeds to resolve"]
    assert shown.eq(f"{int(expected.seeds)} seeds per cell (now 3)").all()


def test_power_columns_of_resolved_and_unmeasured_verdicts(runs, tmp_path):
    v = verdicts(runs)
    resolved = v[v["verdict"] != INCONCLUSIVE]
    assert len(resolved) and (resolved["seeds_status"] == "resolved").all() and (resolved["mde"] > 0).all()
    assert resolved["seeds_to_resolve"].isna().all()
    w = Writer(tmp_path)  # one matched block: no sd, so neither an MDE nor a seed count, and it says why
    w.record(experiment="figure5d", data="mm1_45_45_10", seed=0, scores=scores(0.30))
    w.record(experiment="figure5d", data="mm1_45_45_10_synth", seed=0, scores=scores(0.35))
    one = verdicts(load_runs(tmp_path), "figure5d")
    assert one["mde"].isna().all() and one["seeds_to_resolve"].isna().all()
    assert one["seeds_status"].str.startswith("no sd").all()


def test_a_setup_scored_with_two_caption_demonstration_formats_is_flagged(tmp_path):
    """k-shot CIDEr of a record from before eval.caption_demo (bare demonstrations) and of one scored with today's
    default (prompted) must not be averaged silently: the study's provenance line says so."""
    w = Writer(tmp_path)
    for seed, ev in ((0, {"name": "default", "shots": [0, 4, 8]}),
                     (1, {"name": "default", "shots": [0, 4, 8], "caption_demo": "prompted"})):
        for conn in ("avg_pool", "c_abstractor"):
            w.record(experiment="figure4", connector=conn, resolution=64, visual_tokens=16, seed=seed, eval=ev,
                     scores=scores(0.3))
    runs = load_runs(tmp_path)
    shown = runs.dropna(subset=["caption_demo"])
    assert set(shown["task"]) == {"caption"} and set(shown["shots"]) == {4, 8}
    assert dict(shown.drop_duplicates("cfg_hash")["caption_demo"].value_counts()) == {"bare": 2, "prompted": 2}
    assert "mixes caption demonstration formats (bare: 2 runs, prompted: 2 runs)" in build("figure4", runs).provenance()
    same = runs[runs["seed"] == 1]
    assert "mixes" not in build("figure4", same).provenance()


def _figure4_grid(root, seeds: int, scores_of) -> None:
    """Figure 4's grid (three connectors x 32/64 px x 4/16 tokens x ``seeds``), each record's scores from
    ``scores_of(resolution)``."""
    w = Writer(root)
    for conn in ("avg_pool", "attn_pool", "c_abstractor"):
        for res in (32, 64):
            for tokens in (4, 16):
                for seed in range(seeds):
                    rec = w.record(experiment="figure4", connector=conn, resolution=res, visual_tokens=tokens,
                                   seed=seed, scores=scores_of(res))
                    for m in rec.metrics:  # the controls' majority answer and evaluation error, as the world gives
                        if m["subset"] in ("dot", "pattern"):
                            m["majority_baseline"], m["stderr"] = 0.25, 0.02
                    rec.write(root / "runs" / rec.cfg_hash)


def test_a_lesson_against_a_spread_of_pure_noise_is_not_refuted(tmp_path):
    """Tokens, resolution and connector all change nothing here: the connector range is still positive (three noisy
    scores spread 1.69 sds on average), so comparing the paired token effect with the raw range said "does not hold"
    on pure noise. Taken less its noise floor, the spread leaves the verdict inconclusive."""
    from harness.analysis.stats import range_noise_floor, spreads

    rng = np.random.default_rng(1)
    _figure4_grid(tmp_path, 5, lambda res: scores({0: 0.3 + float(rng.normal(0, 0.02))}))
    runs = load_runs(tmp_path)
    v = verdicts(runs, "figure4")
    assert len(v) == 4 and set(v["verdict"]) == {INCONCLUSIVE}, v[["claim", "metric", "verdict", "detail"]]
    cider = headline(study_runs(runs, STUDIES.get("figure4"))).query("metric == 'CIDEr'")
    blocks = ["resolution", "visual_tokens", "seed"]
    floor = range_noise_floor(cider, "connector", blocks)
    raw = spreads(cider, "connector", blocks)
    assert raw.mean() > 0.03 and abs(raw.mean() - floor) < 0.015  # the floor is what noise alone spreads


def test_a_control_nobody_learned_asks_for_a_budget_not_for_seeds(tmp_path):
    """Every connector, resolution and token count answers the dot question at the majority answer (within 2 s.e.):
    the token claim on it is inconclusive, and its seeds column says the question was not learned instead of
    planning seeds for an effect that is noise. Where the control is learned (the pattern here) seeds are planned."""
    from harness.analysis.findings import NOT_LEARNED

    rng = np.random.default_rng(2)
    _figure4_grid(tmp_path, 3, lambda res: scores({0: 0.3 + float(rng.normal(0, 0.02))})
                  | {("vqa", 0, "dot"): 0.25 + float(rng.normal(0, 0.01)),
                     ("vqa", 0, "pattern"): 0.3 + 0.3 * (res == 64) + float(rng.normal(0, 0.2))})
    v = verdicts(load_runs(tmp_path), "figure4").set_index("metric")
    dot = v.loc["VQA dot"]
    assert dot["verdict"] == INCONCLUSIVE and dot["seeds_status"] == NOT_LEARNED and math.isnan(dot["seeds_to_resolve"])
    assert v.loc["VQA pattern", "seeds_status"] != NOT_LEARNED
