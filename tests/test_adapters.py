"""runtime.save_weights, harness.models.load.load_vlm and the evaluation-kit adapters' conversions (no kit needed).

The round trip trains a micro point that keeps its weights and evaluates the world's VQA TSV; the run loaded back
must answer those rows exactly as the harness did, through the same layout the adapters use.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.data.sources import Chunk
from harness.eval.adapters.core import IMAGE, TEXT, Segment, cut_at_stops, to_chunks
from harness.eval.adapters.lmms_eval import generation_budget, request_segments
from harness.eval.adapters.vlmevalkit import custom_prompt, line_options, message_kind, message_segments
from harness.models.load import RunNotLoadable, finished_record, load_vlm
from tests.conftest import ROOT
from tests.test_bad_configs import compose_micro

CAPTION, VQA = "an image of", "Question: {question} Answer:"


# -- pure conversions ----------------------------------------------------------------------------------------------
def test_segments_become_training_chunks():
    segs = [Segment(TEXT, "a document"), Segment(IMAGE, "a.png"), Segment(TEXT, " first "), Segment(TEXT, "more"),
            Segment(IMAGE, "b.png"), Segment(IMAGE, "c.png"), Segment(TEXT, "Question: what? Answer:")]
    chunks, images = to_chunks(segs)
    assert images == ["a.png", "b.png", "c.png"]
    assert chunks == [Chunk(None, "a document"), Chunk(0, "first more"), Chunk(1, ""),
                      Chunk(2, "Question: what? Answer:")]
    with pytest.raises(ValueError, match="'video' is not supported"):
        to_chunks([Segment("video", "v.mp4")])
    with pytest.raises(ValueError, match="empty prompt"):
        to_chunks([])


def test_cut_at_stops():
    assert cut_at_stops("red Question: how many", ["Question:", "\n"]) == "red "
    assert cut_at_stops("two\nthree", ["Question:", "\n"]) == "two"
    assert cut_at_stops("blue", []) == "blue"


def test_vlmevalkit_rows_get_the_runs_prompts():
    nan = float("nan")
    assert custom_prompt({"question": nan, "answer": "[]"}, "MCQ", CAPTION, VQA) == ("caption", CAPTION)
    assert custom_prompt({"question": "Describe it."}, "Caption", CAPTION, VQA) == ("caption", CAPTION)
    assert custom_prompt({"question": " what colour is the circle? "}, "VQA", CAPTION, VQA) == (
        "vqa", "Question: what colour is the circle? Answer:")
    row = {"question": "how many objects?", "A": "2", "B": "3", "C": nan, "D": ""}
    assert line_options(row) == {"A": "2", "B": "3"}
    assert custom_prompt(row, "MCQ", CAPTION, VQA)[0] == "mcq"


def test_vlmevalkit_messages():
    msg = [{"type": "image", "value": "/x/1.png"}, {"type": "text", "value": "Q", "mm_ablate_kind": "mcq",
                                                   "mm_ablate_options": {"A": "red"}}]
    assert message_segments(msg) == [Segment(IMAGE, "/x/1.png"), Segment(TEXT, "Q")]
    assert message_kind(msg, "MCQ") == ("mcq", {"A": "red"})
    plain = [{"type": "image", "value": "/x/1.png"}, {"type": "text", "value": "Q"}]
    assert message_kind(plain, "Caption") == ("caption", {})
    assert message_kind(plain, "VQA") == ("vqa", {})
    with pytest.raises(ValueError, match="video"):
        message_segments([{"type": "video", "value": "v.mp4"}])


def test_lmms_eval_requests():
    a, b = object(), object()
    assert request_segments("Question: q Answer:", [a]) == [Segment(IMAGE, a), Segment(TEXT, "Question: q Answer:")]
    assert request_segments("one <image> two <image>", [[a], [b]]) == [
        Segment(TEXT, "one "), Segment(IMAGE, a), Segment(TEXT, " two "), Segment(IMAGE, b)]
    assert request_segments("text only", None) == [Segment(TEXT, "text only")]
    with pytest.raises(TypeError, match="images only"):
        request_segments("a video", ["/data/clip.mp4"])
    assert generation_budget({"until": "Question:", "max_new_tokens": 5}, 3) == (5, ["Question:"])
    assert generation_budget({}, 3) == (3, [])
    with pytest.warns(UserWarning, match="greedily"):
        generation_budget({"temperature": 0.7}, 3)


# -- load_vlm errors ---------------------------------------------------------------------------------------------
def _record(tmp_path, **fields):
    run = tmp_path / "runs" / "abc"
    run.mkdir(parents=True)
    rec = {"schema_version": 1, "cfg_hash": "abc", "status": "ok", "error": None, "choices": {"connector": "avg_pool"},
           "config": {"paths": {"cache_dir": str(tmp_path / "cache")}}} | fields
    (run / "record.json").write_text(json.dumps(rec))
    return run


def test_missing_weights_says_how_to_keep_them(tmp_path):
    run = _record(tmp_path)
    with pytest.raises(RunNotLoadable, match=r"no weights\.pt.*runtime\.save_weights=true runtime\.rerun=true"):
        load_vlm(run)


def test_unfinished_or_missing_runs_are_refused(tmp_path):
    with pytest.raises(RunNotLoadable, match="has no record.json"):
        finished_record(tmp_path)
    run = _record(tmp_path, status="failed", error="ConfigError: bad")
    with pytest.raises(RunNotLoadable, match="status is 'failed' .ConfigError: bad."):
        finished_record(run)


def test_missing_backbone_is_named_not_pretrained(tmp_path):
    run = _record(tmp_path, model={"encoder_pretraining": {"artifact": "/elsewhere/encoders/clip_tiny-0123"}})
    (run / "weights.pt").write_bytes(b"")
    with pytest.raises(RunNotLoadable, match=r"lacks encoders/clip_tiny-0123.*cache_dir="):
        load_vlm(run, cache_dir=tmp_path / "cache")


def test_adapters_import_without_hydra_or_kits():
    """The kits' venvs have no hydra-core (it pins omegaconf < 2.4): loading must not need it."""
    code = ("import sys, harness.models.load, harness.eval.adapters.vlmevalkit, harness.eval.adapters.lmms_eval; "
            "bad = [m for m in ('hydra', 'vlmeval', 'lmms_eval') if m in sys.modules]; assert not bad, bad")
    res = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


# -- save_weights + load_vlm round trip -------------------------------------------------------------------------
def test_save_weights_is_on_by_default_and_unhashed(tmp_path):
    from omegaconf import OmegaConf

    from harness.config.hashing import point_identity

    def h(over):
        cfg = compose_micro(over, tmp_path, tmp_path)
        return cfg, point_identity(cfg)[2]

    (kept, h0), (plain, h1) = h([]), h(["runtime.save_weights=false"])  # kept by default: harness.evaluate needs them
    assert plain.runtime.save_weights is False and kept.runtime.save_weights is True
    assert h0 == h1
    assert OmegaConf.to_container(plain.train) == OmegaConf.to_container(kept.train)


def test_saved_run_loads_back_and_answers_as_the_harness(shared_cache, tmp_path):
    from omegaconf import OmegaConf

    from harness.eval.adapters.core import RunModel
    from harness.eval.benchmarks import export_world_benchmarks, read_tsv
    from harness.launch import run_point
    from harness.models.build import build_vlm
    from harness.world import World

    over = ["runtime.save_weights=true", "runtime.device=cpu", "eval.max_images=2", "eval.tasks=[vqa]",
            "eval.benchmarks=[world_vqa]", f"eval.benchmark_root={tmp_path / 'lmu'}", "eval.benchmark_limit=6"]
    cfg = compose_micro(over, tmp_path / "results", shared_cache)
    world = World.build_or_load(OmegaConf.to_object(cfg.world), shared_cache)
    export_world_benchmarks(world, tmp_path / "lmu", max_images=3, kinds=("vqa",))
    rec = run_point(cfg)
    assert rec.status == "ok", rec.error
    run = tmp_path / "results" / "runs" / rec.cfg_hash
    assert (run / "weights.pt").is_file() and not (run / "checkpoint.pt").exists()
    assert rec.weights["parts"] == ["connector", "llm"] and rec.weights["bytes"] > 0

    loaded = load_vlm(run)
    saved = torch.load(run / "weights.pt", weights_only=True)["weights"]
    for part, module in (("connector", loaded.vlm.connector), ("llm", loaded.vlm.lm)):
        for k, v in module.state_dict().items():
            assert torch.equal(v, saved[part][k]), f"{part}.{k} not loaded"
    _, fresh, _ = build_vlm(loaded.cfg, torch.device("cpu"))  # what load_vlm would give without the saved weights
    assert any(not torch.equal(v, saved["llm"][k]) for k, v in fresh.lm.state_dict().items())

    model = RunModel(run)
    items = {it.index: it for it in read_tsv(tmp_path / "lmu" / "WORLD_VQA_TEST.tsv")}
    preds = [json.loads(line) for line in (run / "predictions" / "world_vqa_0shot_t0.jsonl").read_text().splitlines()]
    assert len(preds) == 6
    e = model.cfg.eval
    for p in preds:
        item = items[p["index"]]
        kind, text = custom_prompt({"question": item.question}, "VQA", e.caption_prompt, e.vqa_prompt)
        answer = model.answer([Segment(IMAGE, item.decode_image()), Segment(TEXT, text)], kind)
        assert answer == p["prediction"], (p["index"], answer, p)
    score, greedy = model.loglikelihood([Segment(IMAGE, np.asarray(items[preds[0]["index"]].decode_image())),
                                         Segment(TEXT, "Question: what? Answer:")], " red")
    assert math.isfinite(score) and score < 0 and isinstance(greedy, bool)

    # The same run through another path to the cache (a symlinked shadow, as `bench cache` makes): the backbones'
    # keys hash content, so it loads without pre-training anything ...
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    for entry in shared_cache.iterdir():
        if entry.name != "encoders":
            (shadow / entry.name).symlink_to(entry.resolve())
    (shadow / "encoders").mkdir()
    for entry in (shared_cache / "encoders").iterdir():
        (shadow / "encoders" / entry.name).symlink_to(entry.resolve())
    assert load_vlm(run, cache_dir=shadow).vlm.encoder.meta["artifact"].startswith(str(shadow))
    # ... and a run recorded on another encoder artifact than the one this code builds is refused, not mis-paired.
    recorded = Path(rec.model["encoder_pretraining"]["artifact"]).name
    other = recorded.rsplit("-", 1)[0] + "-000000000000"
    (shadow / "encoders" / other).mkdir()
    (shadow / "encoders" / other / "DONE").write_text("{}")
    record = json.loads((run / "record.json").read_text())
    record["model"]["encoder_pretraining"]["artifact"] = str(shadow / "encoders" / other)
    (run / "record.json").write_text(json.dumps(record))
    with pytest.raises(RunNotLoadable, match=rf"trained on other backbones.*encoder: {other} -> {recorded}"):
        load_vlm(run, cache_dir=shadow)
