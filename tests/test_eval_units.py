"""Evaluation units: benchmarks given by path (kind inferred or declared), preflight's one-line problems, text tasks
whose data is not available offline skipped rather than fatal, ``run(skip=...)``, one failing unit leaving the
others' scores, and merging a partial evaluation into an old record's metrics."""

from __future__ import annotations

import csv
import json
import math
import shutil

import pytest

from harness.config.schema import ConfigError, EvalCfg
from harness.eval import runner
from harness.eval.aggregates import merge_metrics, unit_of
from harness.eval.benchmarks import encode_image, export_world_benchmarks
from harness.eval.preflight import preflight
from harness.eval.runner import Evaluator
from harness.eval.textcore import lm_eval_available
from tests.test_benchmarks import tiny_vlm, world  # noqa: F401  (module-scoped fixtures)

needs_lm_eval = pytest.mark.skipif(not lm_eval_available(), reason="lm-eval not installed")
SMALL = {"name": "t", "max_images": 4, "max_new_tokens_caption": 6, "max_new_tokens_vqa": 3, "text_limit": 4}


@pytest.fixture(scope="module")
def lmu(world, tmp_path_factory):  # noqa: F811
    """The world's caption / VQA / MCQ test sets as registry files (WORLD_*_TEST.tsv) under a benchmark root."""
    root = tmp_path_factory.mktemp("lmu")
    export_world_benchmarks(world, root, max_images=4)
    return root


@pytest.fixture
def no_hub_data(monkeypatch, tmp_path):
    """Offline, with empty Hugging Face caches: no lm-eval standard task has its data here."""
    datasets = pytest.importorskip("datasets")
    from huggingface_hub import constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_datasets")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_hub"))


def caption_tsv_without_question(world, path, n=4):  # noqa: F811
    """A caption file as some kits ship them: no question column at all."""
    images, samples = world.images("test"), world.samples("test")[:n]
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["index", "image", "answer"])
        for s in samples:
            w.writerow([s["id"], encode_image(images[s["id"]]), repr(s["captions"])])
    return path


def by_key(entries):
    return {(e["task"], e["shots"], e["metric"], e["subset"]): e for e in entries}


# -- benchmarks by path ------------------------------------------------------------------------------------------


def test_tsv_given_by_path_kind_inferred_and_declared(world, tiny_vlm, lmu, tmp_path):  # noqa: F811
    own = tmp_path / "my data"
    own.mkdir()
    shutil.copy(lmu / "WORLD_CAPTION_TEST.tsv", own / "Cap Set.tsv")
    shutil.copy(lmu / "WORLD_VQA_TEST.tsv", own / "qa.v1.tsv")
    shutil.copy(lmu / "WORLD_MCQ_TEST.tsv", own / "choices.tsv")
    caption_tsv_without_question(world, own / "plain.tsv")
    paths = [str(own / "Cap Set.tsv"), str(own / "qa.v1.tsv"), str(own / "choices.tsv"), str(own / "plain.tsv"),
             f"{lmu / 'WORLD_VQA_TEST.tsv'}:vqa", f"{lmu / 'WORLD_CAPTION_TEST.tsv'}:caption"]
    cfg = EvalCfg(**SMALL, shots=[0], tasks=[], text_tasks=[], benchmark_root=str(lmu),
                  benchmarks=["world_caption", "world_vqa", "world_mcq", *paths])
    assert preflight(cfg) == []
    ev = Evaluator(tiny_vlm, world, cfg, tmp_path / "run", seed=0)
    assert ev.units() == ["bench:world_caption@0", "bench:world_vqa@0", "bench:world_mcq@0", "bench:Cap_Set@0",
                          "bench:qa_v1@0", "bench:choices@0", "bench:plain@0", "bench:WORLD_VQA_TEST@0",
                          "bench:WORLD_CAPTION_TEST@0"]
    got = by_key(ev.run())
    # inferred: no question -> caption (CIDEr), questions -> vqa (VQA accuracy), A/B options -> mcq (accuracy);
    # 0-shot, same rows: the same score as the registered benchmark the file was copied from
    for task, ref, metric, kind in (("Cap_Set", "world_caption", "cider", "caption"),
                                    ("qa_v1", "world_vqa", "vqa_accuracy", "vqa"),
                                    ("choices", "world_mcq", "accuracy", "mcq"),
                                    ("WORLD_VQA_TEST", "world_vqa", "vqa_accuracy", "vqa"),  # declared
                                    ("WORLD_CAPTION_TEST", "world_caption", "cider", "caption")):  # declared
        e = got[(task, 0, metric, "all")]
        assert e["kind"] == kind and e["status"] == "ok" and e["unit"] == f"bench:{task}@0"
        assert e["value"] == pytest.approx(got[(ref, 0, metric, "all")]["value"]) and e["n"] > 0
    plain = got[("plain", 0, "cider", "all")]
    assert plain["value"] == pytest.approx(got[("world_caption", 0, "cider", "all")]["value"])
    assert (tmp_path / "run" / "predictions" / "qa_v1_0shot_t0.jsonl").is_file()
    avg = got[("mm1_average", 0, "cider_mean", "caption_tasks")]
    assert avg["tasks"] == ["world_caption", "Cap_Set", "plain", "WORLD_CAPTION_TEST"] and avg["derived"]


# -- preflight ---------------------------------------------------------------------------------------------------


def problems(cfg) -> list[str]:
    with pytest.raises(ConfigError) as err:
        preflight(cfg)
    return str(err.value).split("\n")


def test_preflight_one_line_per_problem(lmu, tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "noimage.tsv").write_text("index\tquestion\tanswer\n0\tq\ta\n")
    shutil.copy(lmu / "WORLD_VQA_TEST.tsv", bad / "open.tsv")
    root = tmp_path / "root"
    root.mkdir()
    cfg = EvalCfg(name="t", tasks=["caption", "captions"], text_tasks=[], benchmark_root=str(root), benchmarks=[
        "cocoo", "coco", str(tmp_path / "none.tsv"), str(bad / "noimage.tsv"), f"{bad / 'open.tsv'}:mcq",
        f"{bad / 'open.tsv'}:foo", str(lmu / "WORLD_VQA_TEST.tsv"), f"{bad}/../bad/open.tsv",
    ])
    lines = problems(cfg)
    assert len(lines) == 8, lines
    task, unknown, missing, none, columns, mcq, kind, dup = lines
    assert task.startswith("eval.tasks: unknown task 'captions'; valid: caption, vqa")
    assert "Unknown benchmark 'cocoo'. Did you mean: coco" in unknown and "or give a path to a .tsv" in unknown
    assert f"needs the file {root / 'COCO_VAL.tsv'}, which does not exist (folder from eval.benchmark_root={root})" \
        in missing and "set eval.benchmark_root" in missing
    assert f"no file {tmp_path / 'none.tsv'}" in none
    assert "lacks column(s) image that a vqa benchmark needs" in columns  # inferred vqa: it has questions
    assert "lacks column(s) A, B that a mcq benchmark needs" in mcq and "declare another kind" in mcq
    assert "unknown kind 'foo'" in kind and ":caption, <path>.tsv:vqa or <path>.tsv:mcq" in kind
    assert "are both recorded as task 'open'" in dup

    # where the folder came from: $LMUData (with its value), or the default when neither is set
    monkeypatch.setenv("LMUData", str(tmp_path / "lmu_env"))
    (line,) = problems(EvalCfg(name="t", text_tasks=[], benchmarks=["vqav2"]))
    assert f"needs the file {tmp_path / 'lmu_env' / 'VQAv2_VAL.tsv'}" in line
    assert f"(folder from $LMUData={tmp_path / 'lmu_env'} (eval.benchmark_root is unset))" in line
    monkeypatch.delenv("LMUData")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (line,) = problems(EvalCfg(name="t", text_tasks=[], benchmarks=["gqa"]))
    assert f"needs the file {tmp_path / 'home' / 'LMUData' / 'GQA_TestDev_Balanced.tsv'}" in line
    assert "the default ~/LMUData (neither eval.benchmark_root nor $LMUData is set)" in line
    (line,) = problems(EvalCfg(name="t", text_tasks=[], benchmarks=["coco:vqa"]))
    assert "a kind is declared only for a file path" in line


@needs_lm_eval
def test_preflight_text_tasks(no_hub_data):
    notes = preflight(EvalCfg(name="t", text_tasks=["world_textqa", "arc_easy"]))
    (note,) = notes  # the local task is always available; arc_easy's data is not here
    assert note.startswith("eval.text_tasks: arc_easy will be skipped") and "\n" not in note
    assert "datasets.load_dataset('allenai/ai2_arc', 'ARC-Easy')" in note
    (line,) = problems(EvalCfg(name="t", text_tasks=["arc_eassy", "world_textmc"]))
    assert line.startswith("eval.text_tasks: unknown lm-eval task 'arc_eassy'. Did you mean: arc_easy")


# -- units -------------------------------------------------------------------------------------------------------


@needs_lm_eval
def test_text_task_unavailable_offline_is_skipped(world, tiny_vlm, lmu, tmp_path, no_hub_data):  # noqa: F811
    cfg = EvalCfg(**SMALL, shots=[0], tasks=["caption"], benchmarks=[str(lmu / "WORLD_VQA_TEST.tsv")],
                  text_tasks=["world_textmc", "arc_easy"])
    entries = Evaluator(tiny_vlm, world, cfg, tmp_path, seed=0).run()
    got = by_key(entries)
    (arc,) = [e for e in entries if e["task"] == "arc_easy"]
    assert arc["status"] == "skipped" and math.isnan(arc["value"]) and arc["unit"] == "text:arc_easy"
    assert arc["suite"] == "textcore" and arc["subset"] == "all"
    assert arc["metric"] == "acc" and "allenai/ai2_arc" in arc["reason"] and "\n" not in arc["reason"]
    # the other units keep their scores
    for key in (("caption", 0, "cider", "all"), ("WORLD_VQA_TEST", 0, "vqa_accuracy", "all"),
                ("world_textmc", 0, "acc", "all")):
        assert got[key]["status"] == "ok" and not math.isnan(got[key]["value"]), key
    tc = got[("textcore", 0, "textcore_average", "all")]
    assert math.isnan(tc["value"]) and tc["status"] == "incomplete" and "text:arc_easy" in tc["reason"]
    assert tc["tasks"] == ["world_textmc", "arc_easy"]
    assert got[("mm1_average", 0, "task_mean", "all_tasks")]["status"] == "ok"


def test_run_skips_exactly_the_given_units(world, tiny_vlm, lmu, tmp_path, monkeypatch):  # noqa: F811
    cfg = EvalCfg(**SMALL, shots=[0, 1], tasks=["caption", "vqa"], benchmarks=[str(lmu / "WORLD_MCQ_TEST.tsv")],
                  text_tasks=["world_textmc"] if lm_eval_available() else [])
    ev = Evaluator(tiny_vlm, world, cfg, tmp_path, seed=0)
    units = ev.units()
    assert units == Evaluator.units_for(cfg)
    assert units[:6] == ["caption@0", "caption@1", "vqa@0", "vqa@1", "bench:WORLD_MCQ_TEST@0",
                         "bench:WORLD_MCQ_TEST@1"]
    skip = {"caption@0", "vqa@1", "bench:WORLD_MCQ_TEST@0", "text:world_textmc", "no-such-unit"}
    entries = ev.run(skip=skip)
    ran = [u for u in dict.fromkeys(e["unit"] for e in entries) if u != "aggregate"]
    assert ran == [u for u in units if u not in skip]
    assert all(e["status"] == "ok" for e in entries)
    pred = tmp_path / "predictions"
    assert not (pred / "caption_0shot_t0.jsonl").exists() and (pred / "caption_1shot_t0.jsonl").is_file()
    assert not (pred / "WORLD_MCQ_TEST_0shot_t0.jsonl").exists() and (pred / "WORLD_MCQ_TEST_1shot_t0.jsonl").is_file()
    assert not list(pred.glob("textcore_*"))


def test_a_failing_unit_keeps_the_other_scores(world, tiny_vlm, lmu, tmp_path, monkeypatch):  # noqa: F811
    cfg = EvalCfg(**SMALL, shots=[0], tasks=["caption", "vqa"], benchmarks=[str(lmu / "WORLD_VQA_TEST.tsv")],
                  text_tasks=[])
    clean = by_key(Evaluator(tiny_vlm, world, cfg, tmp_path / "a", seed=0).run())
    run_task = Evaluator.run_task

    def broken(self, task, *args):
        if task == "vqa":
            raise RuntimeError("generation blew up\nsecond line of the message")
        return run_task(self, task, *args)

    monkeypatch.setattr(runner.Evaluator, "run_task", broken)
    entries = Evaluator(tiny_vlm, world, cfg, tmp_path / "b", seed=0).run()
    got = by_key(entries)
    (vqa,) = [e for e in entries if e["unit"] == "vqa@0"]
    assert vqa["status"] == "failed" and vqa["error"] == "RuntimeError: generation blew up"
    assert (vqa["task"], vqa["metric"], vqa["subset"]) == ("vqa", "vqa_accuracy", "all") and math.isnan(vqa["value"])
    for key in (("caption", 0, "cider", "all"), ("WORLD_VQA_TEST", 0, "vqa_accuracy", "all")):
        assert got[key]["status"] == "ok" and got[key]["value"] == clean[key]["value"]
    mean = got[("mm1_average", 0, "vqa_mean", "vqa_tasks")]
    assert math.isnan(mean["value"]) and mean["status"] == "incomplete" and "vqa@0" in mean["reason"]
    assert got[("mm1_average", 0, "cider_mean", "caption_tasks")]["status"] == "ok"


# -- merging -----------------------------------------------------------------------------------------------------


def _e(task, k, metric, value, subset="all", **kw):
    return {"task": task, "shots": k, "metric": metric, "subset": subset, "value": value, "stderr": 0.1, "n": 10,
            **kw}


def test_merge_metrics_into_an_old_style_record():
    nan = math.nan
    old = [  # as records were written before units: no unit, no status
        _e("caption", 0, "cider", 0.6),
        _e("vqa", 0, "vqa_accuracy", 0.4), _e("vqa", 0, "vqa_accuracy", 0.7, subset="colour"),
        _e("coco", 0, "cider", nan, n=0),
        _e("textcore", 0, "acc", 0.5, subset="world_textmc"), _e("textcore", 0, "acc_norm", 0.4, subset="world_textmc"),
        _e("textcore", 0, "exact_match", 0.2, subset="world_textqa"),
        _e("textcore", 0, "textcore_average", 0.35, tasks=["world_textmc", "world_textqa"]),
        _e("mm1_average", 0, "cider_mean", nan, subset="caption_tasks", tasks=["caption", "coco"]),
        _e("mm1_average", 0, "task_mean", nan, subset="all_tasks", tasks=["caption", "vqa", "coco"]),
    ]
    assert [unit_of(e) for e in old] == ["caption@0", "vqa@0", "vqa@0", "bench:coco@0", "text:world_textmc",
                                         "text:world_textmc", "text:world_textqa", "aggregate", "aggregate",
                                         "aggregate"]
    new = [  # coco re-run, world_textqa re-run, a new text task; plus derived entries of their own (dropped)
        _e("coco", 0, "cider", 1.0, unit="bench:coco@0", status="ok"),
        _e("textcore", 0, "exact_match", 0.6, subset="world_textqa", unit="text:world_textqa", status="ok"),
        _e("textcore", 0, "acc", nan, subset="arc_easy", unit="text:arc_easy", status="skipped", reason="offline"),
        _e("mm1_average", 0, "cider_mean", 1.0, subset="caption_tasks", tasks=["coco"], derived=True,
           unit="aggregate"),
    ]
    merged = merge_metrics(old, new)
    assert merged[:7] == [old[0], old[1], old[2], new[0], old[4], old[5], new[1]]  # replaced in place, order kept
    assert merged[7] == new[2]
    derived = merged[8:]
    assert all(e["derived"] and e["unit"] == "aggregate" for e in derived)
    tc, *mm1 = derived
    assert tc["metric"] == "textcore_average" and tc["tasks"] == ["world_textmc", "world_textqa", "arc_easy"]
    assert math.isnan(tc["value"]) and tc["status"] == "incomplete" and "text:arc_easy" in tc["reason"]
    mm1 = {e["subset"]: e for e in mm1}
    assert mm1["caption_tasks"]["value"] == pytest.approx(0.8) and mm1["caption_tasks"]["tasks"] == ["caption", "coco"]
    assert mm1["all_tasks"]["value"] == pytest.approx(2.0 / 3) and mm1["all_tasks"]["status"] == "ok"
    assert mm1["vqa_tasks"]["value"] == pytest.approx(0.4)
    assert json.dumps(merge_metrics(merged, [])) == json.dumps(merged)  # idempotent: nothing new, the same list
    # without the skipped task, the TextCore average is recomputed from the merged per-task entries
    again = merge_metrics(old, new[:2])
    (tc,) = [e for e in again if e["metric"] == "textcore_average"]
    assert tc["value"] == pytest.approx((0.5 + 0.6) / 2) and tc["status"] == "ok"
    assert Evaluator.merge_metrics is merge_metrics


def test_subset_means_a_slice_and_old_textcore_entries_read_the_same(tmp_path):
    """``subset`` is a slice of one task's queries; a TextCore entry's task is its lm-eval task (``suite``). A record
    written before that (``task: textcore``, ``subset``: the lm-eval task) reads as the new form, and merging new
    entries into it keeps every unit and average."""
    from harness.eval.aggregates import canonical_entry, text_task_of
    from harness.records import RECORD, SCHEMA_VERSION, read_record

    old = _e("textcore", 0, "exact_match", 0.5, subset="world_textqa")
    new = canonical_entry(old)
    assert new == {"task": "world_textqa", "suite": "textcore", "shots": 0, "metric": "exact_match", "subset": "all",
                   "value": 0.5, "stderr": 0.1, "n": 10}
    assert text_task_of(old) == text_task_of(new) == "world_textqa" and unit_of(old) == unit_of(new)
    avg = _e("textcore", 0, "textcore_average", 0.5, tasks=["world_textqa"])
    vqa = _e("vqa", 0, "vqa_accuracy", 0.7, subset="colour")
    assert canonical_entry(avg) is avg and canonical_entry(vqa) is vqa and text_task_of(avg) is None
    (tmp_path / RECORD).write_text(json.dumps({"schema_version": SCHEMA_VERSION, "cfg_hash": "a", "status": "ok",
                                               "metrics": [old, avg, vqa]}))
    assert read_record(tmp_path).metrics == [new, avg, vqa]
    # an old record's entries merged with a re-run in the new form: one unit, one average over it
    rerun = [new | {"value": 0.9, "unit": "text:world_textqa", "status": "ok"}]
    merged = merge_metrics([old, avg, vqa, _e("caption", 0, "cider", 0.6)], rerun)
    assert [unit_of(e) for e in merged] == ["text:world_textqa", "vqa@0", "caption@0", "aggregate", "aggregate",
                                            "aggregate"]
    tc = next(e for e in merged if e["metric"] == "textcore_average")
    assert tc["value"] == pytest.approx(0.9) and tc["tasks"] == ["world_textqa"]
    assert [e["tasks"] for e in merged if e["task"] == "mm1_average"] == [["caption"], ["caption"]]  # not TextCore
