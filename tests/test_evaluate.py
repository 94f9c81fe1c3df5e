"""Evaluation as a step of its own (harness.evaluate): a trained point is scored on new units without training, a
second identical call does nothing, a sweep with another ``eval`` reuses the trained point, and records written
before units existed merge correctly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.evaluate import done_units, protocol, unit_of
from harness.records import read_record
from tests.conftest import MICRO, ROOT, run_sweep
from tests.photos import photo_shard, real_photos


def photo_tsv(path: Path) -> Path:
    """A VQA benchmark over real photos, as VLMEvalKit lays one out (base64 images, one answer per row)."""
    from PIL import Image

    from harness.eval.benchmarks import encode_image, write_tsv

    photos = real_photos()[:3]
    assert photos, "no photo found in the installed packages"
    rows = []
    for i, p in enumerate(photos * 2):
        with Image.open(p) as im:
            rgb = np.asarray(im.convert("RGB").resize((160, 120)))
        rows.append({"index": i, "image": encode_image(rgb), "question": "What is in the image?",
                     "answer": "a photo"})
    return write_tsv(path, rows)


def evaluate(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.evaluate", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600, check=False)


def one_record(results: Path) -> tuple[Path, dict]:
    (path,) = sorted((results / "runs").glob("*/record.json"))
    return path.parent, json.loads(path.read_text())


def test_evaluate_a_trained_point_on_a_tsv_by_path_without_training(sweep_env, tmp_path):
    sweep_env = sweep_env | {"PYTHONPATH": str(ROOT)}
    first = run_sweep(["connector=avg_pool", *MICRO], sweep_env, tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    run_dir, before = one_record(tmp_path / "results")
    assert (run_dir / "weights.pt").is_file()  # kept by default: evaluation needs them
    assert {unit_of(e) for e in before["metrics"] if e["task"] in ("caption", "vqa")} == {"caption@0", "vqa@0"}

    tsv = photo_tsv(tmp_path / "bench" / "my_photos.tsv")
    res = evaluate([before["cfg_hash"][:8], f"eval.benchmarks=[{tsv}:vqa]"], sweep_env, tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    _, after = one_record(tmp_path / "results")
    assert after["train"] == before["train"] and after["started_at"] == before["started_at"]  # not retrained
    bench = [e for e in after["metrics"] if unit_of(e) == "bench:my_photos@0"]
    assert len(bench) == 1 and bench[0]["n"] == len(real_photos()[:3]) * 2 and bench[0]["status"] == "ok"
    kept = {(e["task"], e["subset"]): e["value"] for e in before["metrics"] if e["task"] in ("caption", "vqa")}
    assert {(e["task"], e["subset"]): e["value"] for e in after["metrics"] if e["task"] in ("caption", "vqa")} == kept
    assert [e["by"] for e in after["evaluations"]] == ["sweep.py", "harness.evaluate"]
    # each pass says what computed it: a later pass may run other code or threads than the training did
    for e in after["evaluations"]:
        assert set(e["git"]) == {"sha", "dirty"} and e["threads"] >= 1 and e["device"] == "cpu"
    assert after["evaluations"][0]["git"] == after["git"]

    again = evaluate([str(run_dir), f"eval.benchmarks=[{tsv}:vqa]"], sweep_env, tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout + again.stderr
    assert one_record(tmp_path / "results")[1] == after  # idempotent: the record is untouched

    # a sweep with another eval reuses the trained point and scores only the new units
    more = run_sweep(["connector=avg_pool", *MICRO, "eval.shots=[0,1]"], sweep_env, tmp_path)
    assert more.returncode == 0, more.stdout[-3000:] + more.stderr[-3000:]
    assert "[train]" not in more.stdout and "vqa@1" in more.stdout
    _, last = one_record(tmp_path / "results")
    assert {"caption@1", "vqa@1", "bench:my_photos@0"} <= {unit_of(e) for e in last["metrics"]}
    assert last["train"] == before["train"]


def test_scores_from_weights_equal_the_runs_own(sweep_env, tmp_path, shared_cache):
    """``harness.evaluate`` scores a unit as the point's own evaluation did: the reloaded VLM is frozen, so the feature
    bank reads the float16 cache instead of encoding every image afresh in float32 (before 2026-12-07 it did, and
    8-shot CIDEr moved in the 4th digit on 3 of 6 table1 points)."""
    from omegaconf import OmegaConf

    from harness.data.features import bank_for
    from harness.models.load import load_vlm
    from harness.world import World

    sweep_env = sweep_env | {"PYTHONPATH": str(ROOT)}
    res = run_sweep(["connector=avg_pool", *MICRO, "eval.shots=[0,1]"], sweep_env, tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run_dir, own = one_record(tmp_path / "results")

    loaded = load_vlm(run_dir, shared_cache)
    assert not any(p.requires_grad for p in loaded.vlm.parameters())
    assert loaded.vlm.trained_parts == {"connector", "llm"}  # train=smoke trains both; the encoder stays cached
    world = World.build_or_load(OmegaConf.to_object(loaded.cfg.world), shared_cache)
    first = min(loaded.cfg.eval.max_images, len(world.samples("test")))  # what the evaluation scores
    bank = bank_for(loaded.vlm, world, "test", shared_cache, first=first)
    bank.get([0, 1])
    assert bank.from_cache and bank.encoded == 0  # the run's own evaluation left the entry; nothing re-encoded

    redo = {"caption@1", "vqa@1"}
    scores = {(unit_of(e), e.get("subset"), e["metric"]): e["value"] for e in own["metrics"] if unit_of(e) in redo}
    assert len(scores) >= 2
    stripped = own | {"metrics": [e for e in own["metrics"] if unit_of(e) not in redo]}
    (run_dir / "record.json").write_text(json.dumps(stripped))
    again = evaluate([str(run_dir), "eval.shots=[0,1]"], sweep_env, tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    _, after = one_record(tmp_path / "results")
    assert {(unit_of(e), e.get("subset"), e["metric"]): e["value"] for e in after["metrics"]
            if unit_of(e) in redo} == scores


def test_a_killed_evaluation_keeps_the_units_it_finished(sweep_env, tmp_path, shared_cache, monkeypatch):
    """Each unit is written into the record as it finishes: a pass killed in its second unit keeps the first, and
    the same command run again scores only what is missing."""
    from harness.eval.runner import Evaluator
    from harness.evaluate import evaluate_run

    sweep_env = sweep_env | {"PYTHONPATH": str(ROOT)}
    res = run_sweep(["connector=avg_pool", *MICRO, "eval.shots=[0,1]"], sweep_env, tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run_dir, own = one_record(tmp_path / "results")
    redo = ["caption@1", "vqa@1"]  # run in this order (tasks, then shots)
    scores = {(unit_of(e), e.get("subset")): e["value"] for e in own["metrics"] if unit_of(e) in redo}
    (run_dir / "record.json").write_text(json.dumps(own | {"metrics": [e for e in own["metrics"]
                                                                       if unit_of(e) not in redo]}))
    for k, v in sweep_env.items():
        monkeypatch.setenv(k, v)
    real = Evaluator._unit_entries

    def killed_in_vqa(self, unit):
        if unit == "vqa@1":
            raise KeyboardInterrupt  # what Ctrl-C or a SLURM time limit's SIGTERM handler raises
        return real(self, unit)

    monkeypatch.setattr(Evaluator, "_unit_entries", killed_in_vqa)
    with pytest.raises(KeyboardInterrupt):
        evaluate_run(run_dir, ["eval.shots=[0,1]"], shared_cache, log=lambda m: None)
    kept = read_record(run_dir)
    assert "caption@1" in {unit_of(e) for e in kept.metrics} and "vqa@1" not in {unit_of(e) for e in kept.metrics}
    assert kept.evaluations[-1]["units"] == redo and kept.evaluations[-1]["scored"] == ["caption@1"]
    # no 1-shot average over caption alone passes for the mean over tasks; the 0-shot ones stand
    assert {e["shots"] for e in kept.metrics if e.get("derived") and e["task"] == "mm1_average"} == {0}

    monkeypatch.setattr(Evaluator, "_unit_entries", real)
    lines: list[str] = []
    evaluate_run(run_dir, ["eval.shots=[0,1]"], shared_cache, log=lines.append)
    assert any("1 of 4 units to score: vqa@1" in m for m in lines), lines
    after = read_record(run_dir)
    assert {(unit_of(e), e.get("subset")): e["value"] for e in after.metrics if unit_of(e) in redo} == scores
    assert after.evaluations[-1]["scored"] == ["vqa@1"] and after.evaluations[-1]["failed"] == []
    one_shot = [e for e in after.metrics if e.get("derived") and e["task"] == "mm1_average" and e["shots"] == 1]
    assert [set(e["tasks"]) for e in one_shot if e["subset"] == "all_tasks"] == [{"caption", "vqa"}]

    # a unit skipped for want of data stays done, and the rerun says how to score it once the data is there
    raw = json.loads((run_dir / "record.json").read_text())
    for e in raw["metrics"]:
        if unit_of(e) == "vqa@1" and not e.get("derived"):
            e.update(status="skipped", value=float("nan"), reason="its data cannot be loaded here")
    (run_dir / "record.json").write_text(json.dumps(raw))
    lines.clear()
    evaluate_run(run_dir, ["eval.shots=[0,1]"], shared_cache, log=lines.append)
    assert any("nothing to do; 1 of them skipped before" in m and "(vqa@1)" in m and "--retry-skipped" in m
               for m in lines), lines
    lines.clear()
    evaluate_run(run_dir, ["eval.shots=[0,1]"], shared_cache, log=lines.append, retry_skipped=True)
    assert any("1 of 4 units to score: vqa@1" in m for m in lines), lines


def test_evaluate_refuses_overrides_that_change_training(sweep_env, tmp_path):
    res = evaluate(["nohash", "train.batch_size=2"], sweep_env | {"PYTHONPATH": str(ROOT)}, tmp_path)
    assert res.returncode == 2 and "change what was trained" in res.stderr


def test_old_records_units_and_protocol():
    """A shipped record (written before units existed) maps onto units, all done under its own protocol."""
    path = next((ROOT / "results" / "reference").rglob("record.json"))
    rec = read_record(path.parent)
    ev = rec.config["eval"]
    proto = protocol(ev)
    done = done_units(rec, ev)
    assert {f"caption@{k}" for k in ev["shots"]} | {f"vqa@{k}" for k in ev["shots"]} <= done
    other = ev | {"max_images": ev["max_images"] + 1}
    assert protocol(other) != proto and not done_units(rec, other)  # another protocol: nothing counts as done
    same = protocol(ev | {"shots": [0, 4, 8, 16], "benchmarks": ["coco"]})
    assert same == proto  # choosing more units is not another protocol


def _record_from_before_caption_demo():
    """A shipped 0/4/8-shot record as records were written before eval.caption_demo existed: no such key in its eval
    config and no protocol on its entries (the world-v2 records that left results/reference on 2026-12-07 were
    such). Only the bookkeeping matters here, not the scores."""
    rec = next(r for r in (read_record(p.parent) for p in sorted((ROOT / "results" / "reference").rglob("record.json")))
               if 4 in (r.config["eval"].get("shots") or []))  # fmt: skip
    rec.config["eval"].pop("caption_demo", None)
    for e in rec.metrics:
        e.pop("protocol", None)
    return rec


def test_demonstration_format_is_part_of_the_protocol_of_few_shot_units_only():
    """Records from before eval.caption_demo used bare demonstrations: under the new default their 0-shot units stay
    done and their k-shot units are scored again; spelling out the old format is the old protocol."""
    rec = _record_from_before_caption_demo()
    ev = rec.config["eval"]
    assert "caption_demo" not in ev
    done = done_units(rec, ev | {"caption_demo": "prompted"})
    assert {"caption@0", "vqa@0", "vqa@4", "vqa@8"} <= done and not done & {"caption@4", "caption@8"}
    assert {"caption@4", "vqa@4"} <= done_units(rec, ev | {"caption_demo": "bare"})
    assert protocol(ev | {"caption_demo": "bare"}) == protocol(ev) != protocol(ev | {"caption_demo": "prompted"})


def test_evaluating_an_old_record_keeps_the_demonstration_format_it_was_scored_with():
    """`harness.evaluate <old run> eval.benchmarks=[x]` adds x and changes nothing else: a record from before
    eval.caption_demo existed is evaluated with bare demonstrations, not today's default."""
    from harness.evaluate import eval_config

    rec = next(read_record(p.parent) for p in (ROOT / "results" / "reference").rglob("record.json"))
    assert "caption_demo" not in rec.config["eval"]
    ev, _ = eval_config(rec, ["eval.benchmark_limit=5"])
    assert ev.caption_demo == "bare" and ev.benchmark_limit == 5
    ev, _ = eval_config(rec, ["eval.caption_demo=prompted"])
    assert ev.caption_demo == "prompted"


@pytest.mark.parametrize("caption, demo", [
    ("two red squares.", "an image of two red squares."),
    ("an image of two red squares.", "an image of two red squares."),
    ("A man riding a horse.", "an image of a man riding a horse."),
    ("NASA launch pad.", "an image of NASA launch pad."),
    ("Paris at night.", "an image of Paris at night."),
    ("I think a dog.", "an image of I think a dog."),
    ("an image offset.", "an image of an image offset."),
])
def test_caption_demonstrations_read_as_answered_queries(caption, demo):
    from types import SimpleNamespace

    from harness.eval.tasks import caption_demo

    cfg = SimpleNamespace(caption_prompt="an image of", caption_demo="prompted")
    assert caption_demo(caption, cfg) == demo
    assert caption_demo(caption, SimpleNamespace(caption_prompt="an image of", caption_demo="bare")) == caption


@pytest.mark.parametrize("entry, unit", [
    ({"task": "caption", "shots": 4, "metric": "cider", "subset": "all"}, "caption@4"),
    ({"task": "vqa", "shots": 0, "metric": "vqa_accuracy", "subset": "color"}, "vqa@0"),
    ({"task": "textcore", "shots": 0, "metric": "acc", "subset": "world_textmc"}, "text:world_textmc"),
    ({"task": "vqav2", "shots": 8, "metric": "vqa_accuracy", "subset": "all"}, "bench:vqav2@8"),
])
def test_unit_of_entries_without_unit(entry, unit):
    assert unit_of(entry) == unit



def test_held_out_source_becomes_a_caption_benchmark(tmp_path):
    from harness.eval.benchmarks import read_tsv
    from harness.eval.from_source import main

    photo_shard(tmp_path / "data" / "val-00000.tar", real_photos()[:4])
    out = tmp_path / "my_val.tsv"
    assert main(["--format", "webdataset", "--path", "val-{00000..00000}.tar", "--root", str(tmp_path / "data"),
                 "--out", str(out), "--max-side", "300"]) == 0
    items = read_tsv(out)
    assert len(items) == 4  # the corrupt sample is skipped
    img = items[0].decode_image()
    assert max(img.shape[:2]) == 300 and img.shape[2] == 3  # capped, aspect kept (the originals are larger)
    assert items[1].answers == [f"a photo of {real_photos()[1].stem.replace('_', ' ')}"]
    assert main(["--format", "interleaved", "--path", "x.jsonl", "--root", str(tmp_path), "--out", str(out)]) == 2
    assert main(["--format", "webdataset", "--path", "nope.tar", "--root", str(tmp_path), "--out", str(out)]) == 2

    # a 16-bit grey-scale scan keeps its greys in the benchmark (PIL's plain conversion wrote it white)
    import io
    import tarfile

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.tile(np.linspace(0, 255, 64), (64, 1)) * 257).astype(np.uint16)).save(buf, format="PNG")
    with tarfile.open(tmp_path / "data" / "deep-00000.tar", "w") as tar:
        for name, data in (("0.png", buf.getvalue()), ("0.txt", b"a grey ramp")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert main(["--format", "webdataset", "--path", "deep-00000.tar", "--root", str(tmp_path / "data"),
                 "--out", str(out)]) == 0
    grey = read_tsv(out)[0].decode_image()[..., 0].astype(float)
    assert abs(grey.mean() - 127.5) < 3 and grey.min() < 10 and grey.max() > 245  # JPEG-stored: near, not exact


def test_llava_pretraining_json_becomes_a_caption_benchmark_under_the_sweeps_data_root(tmp_path, monkeypatch):
    """LLaVA's LCS-558K holds captions as one-turn conversations; ``--root data`` is ``$MM_ABLATE_DATA``, as a data
    source's ``root: data`` is in a sweep."""
    import shutil

    from harness.data.formats.llava_json import entry
    from harness.eval.benchmarks import read_tsv
    from harness.eval.from_source import main

    photos = real_photos()[:3]
    (tmp_path / "mine" / "images").mkdir(parents=True)
    for p in photos:
        shutil.copy(p, tmp_path / "mine" / "images" / p.name)
    entries = [entry(str(i), p.name, [("Describe the image briefly.", f"a photo of {p.stem}")])
               for i, p in enumerate(photos)] + [entry("x", "gone.jpg", [("Describe it.", "nothing")])]
    (tmp_path / "mine" / "chat.json").write_text(json.dumps(entries))
    monkeypatch.setenv("MM_ABLATE_DATA", str(tmp_path / "mine"))
    monkeypatch.chdir(tmp_path)  # no folder called data here: root data must not mean ./data
    out = tmp_path / "llava_val.tsv"
    assert main(["--format", "llava_json", "--path", "chat.json", "--images", "images", "--root", "data",
                 "--out", str(out)]) == 0
    items = read_tsv(out)
    assert [i.answers for i in items] == [[f"a photo of {p.stem}"] for p in photos]
    from collections import Counter

    from harness.eval.from_source import source_rows

    skipped: Counter = Counter()
    source_rows("llava_json", "chat.json", tmp_path / "mine", "images", skipped=skipped)
    assert skipped == Counter({"missing_file": 1})  # named for what it is, as training counts it


def test_eval_overrides_apply_to_the_records_own_eval_config():
    from harness.evaluate import eval_config

    path = next((ROOT / "results" / "reference").rglob("record.json"))
    rec = read_record(path.parent)
    ev, runtime = eval_config(rec, ["eval.benchmarks=[/data/x.tsv:vqa]", "runtime.threads=3"])
    assert list(ev.benchmarks) == ["/data/x.tsv:vqa"] and runtime.threads == 3
    assert list(ev.shots) == rec.config["eval"]["shots"] and ev.max_images == rec.config["eval"]["max_images"]
    smoke, _ = eval_config(rec, ["eval=smoke"])
    assert smoke.name == "smoke" and smoke.max_images == 12  # an option replaces the record's eval config


def test_a_field_a_unit_does_not_read_never_makes_it_stale():
    """``eval.trials`` changes only k-shot units and ``eval.benchmark_limit`` only benchmark units: a shipped record
    (stamped before units read only their fields) keeps its other units done under either change."""
    from omegaconf import OmegaConf

    from harness.evaluate import eval_config

    rec = read_record(ROOT / "results" / "reference" / "runs" / "46e5363f1c11d2bb")
    ev, _ = eval_config(rec, ["eval.shots=[0,4,8]", "eval.caption_demo=prompted"])
    ev = OmegaConf.to_container(ev, resolve=True)
    every = {"caption@0", "caption@4", "caption@8", "vqa@0", "vqa@4", "vqa@8"}
    assert every <= done_units(rec, ev)
    more_trials = done_units(rec, ev | {"trials": ev["trials"] + 2})
    assert {"caption@0", "vqa@0"} <= more_trials and not more_trials & {"caption@4", "vqa@8"}
    assert every <= done_units(rec, ev | {"benchmark_limit": 7})
    assert not done_units(rec, ev | {"max_images": 12}) & every  # a field every image unit reads
