"""VLMEvalKit-style TSV benchmarks: reader, writer, registry and missing-file errors, the world's export, and the
Evaluator on TSV files (a world benchmark read back from TSV scores exactly as the world's own task)."""

from __future__ import annotations

import base64
import csv
import io
import json
import math

import numpy as np
import pytest
import torch

from harness.eval.benchmarks import (
    BENCHMARKS,
    MM1_BENCHMARKS,
    benchmark_path,
    decode_image,
    encode_image,
    export_world_benchmarks,
    parse_answers,
    read_tsv,
    write_tsv,
)
from harness.eval.textcore import lm_eval_available
from harness.registry import UnknownComponentError
from harness.world import World, WorldCfg

MICRO = WorldCfg(name="shapes_micro", n_train=80, n_val=10, n_test=12, n_docs=20, n_texts=60)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World.build_or_load(MICRO, tmp_path_factory.mktemp("world"))


def read_jsonl(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def jpeg_b64(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG")
    return base64.b64encode(buf.getvalue()).decode()


def test_reader_on_a_handwritten_fixture(tmp_path):
    """A file as VLMEvalKit ships them: Python-list answers, an image referenced by index, quoted cells, blank
    options, an extra column."""
    red = np.zeros((8, 6, 3), np.uint8)
    red[..., 0] = 255
    png = encode_image(red)
    path = tmp_path / "FIXTURE.tsv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["index", "image", "question", "answer", "A", "B", "C", "D", "category"])
        w.writerow([0, png, "what colour?", "['red', 'red', 'dark red']", "", "", "", "", "colour"])
        w.writerow([1, "0", 'is it "red"?\tsure', "yes", "", "", "", "", "yes/no"])
        w.writerow([2, jpeg_b64(red), "pick one", "B", "blue", "red", "green", "nan", "mc"])
    items = read_tsv(path)
    assert [i.index for i in items] == ["0", "1", "2"]
    assert items[0].answers == ["red", "red", "dark red"] and items[0].extra == {"category": "colour"}
    assert items[1].image == png and items[1].question == 'is it "red"?\tsure' and items[1].answers == ["yes"]
    assert np.array_equal(items[1].decode_image(), red)
    assert items[2].options == {"A": "blue", "B": "red", "C": "green"} and items[2].answers == ["B"]
    assert items[2].decode_image().shape == (8, 6, 3)  # JPEG: lossy pixels, same shape
    assert items[0].options == {}
    assert [i.index for i in read_tsv(path, limit=2)] == ["0", "1"]


def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (5, 7, 3), dtype=np.uint8) for _ in range(3)]
    rows = [
        {
            "index": i,
            "image": encode_image(im),
            "question": f"q{i}\nline two",
            "answer": [f"a{i}", "b, c"],
            "A": "x",
            "split": "val",
        }
        for i, im in enumerate(imgs)
    ]
    items = read_tsv(write_tsv(tmp_path / "RT.tsv", rows))
    for it, row, im in zip(items, rows, imgs):
        assert it.index == str(row["index"]) and it.question == row["question"] and it.answers == row["answer"]
        assert np.array_equal(it.decode_image(), im) and it.options == {"A": "x"} and it.extra == {"split": "val"}


def test_parse_answers():
    assert parse_answers('["a", "b"]') == ["a", "b"]
    assert parse_answers("""['a', "it's"]""") == ["a", "it's"]  # a Python literal, as pandas writes lists
    assert parse_answers("[1, 2]") == ["1", "2"]
    assert parse_answers(" plain answer ") == ["plain answer"]
    assert parse_answers("[not a list") == ["[not a list"]


def test_bad_files(tmp_path):
    p = tmp_path / "BAD.tsv"
    p.write_text("index\tquestion\n0\tq\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['image', 'answer'\]"):
        read_tsv(p)
    big = "A" * 80  # a long cell is an image's base64; short cells refer to it, forward or back
    p.write_text(f"index\timage\tanswer\n0\t7\tx\n1\t2\tx\n2\t{big}\tx\n3\t0\tx\n")
    items = read_tsv(p)  # an unresolvable cell costs its row, not the file
    assert [i.image == big for i in items] == [False, True, True, False] and items[0].bad and not items[1].bad
    with pytest.raises(ValueError, match="image cell '7' is neither base64 nor the index of another row"):
        items[0].decode_image()
    assert items[3].bad  # row 0 holds no image itself, so a reference to it holds none either


def test_lowercase_option_columns_are_named_not_scored_as_open_answers(tmp_path):
    from harness.config.schema import ConfigError
    from harness.eval.benchmarks import resolve_benchmark

    img = encode_image(np.zeros((8, 8, 3), np.uint8))
    rows = [{"index": i, "image": img, "question": "Which?", "a": "red", "b": "blue", "answer": "A"} for i in range(3)]
    path = write_tsv(tmp_path / "letters.tsv", rows)
    with pytest.raises(ConfigError, match="option columns a, b in lower case.*A, B, C, D"):
        resolve_benchmark(str(path))
    assert resolve_benchmark(f"{path}:vqa").spec.kind == "vqa"  # declared: the user's choice


def test_registry_and_missing_file_errors(tmp_path, monkeypatch):
    assert set(MM1_BENCHMARKS) <= set(BENCHMARKS.names())
    assert {BENCHMARKS.get(n).kind for n in MM1_BENCHMARKS} == {"caption", "vqa"}
    assert BENCHMARKS.get("gqa").metric == "exact_match" and BENCHMARKS.get("coco").metric == "cider"
    with pytest.raises(UnknownComponentError, match="Did you mean: textvqa"):
        BENCHMARKS.get("textvq")
    with pytest.raises(FileNotFoundError) as err:
        benchmark_path("coco", tmp_path)
    msg = str(err.value)
    assert f"needs the file {tmp_path / 'COCO_VAL.tsv'}" in msg and f"Put COCO_VAL.tsv into {tmp_path}" in msg
    assert "index, image, answer" in msg
    monkeypatch.setenv("LMUData", str(tmp_path / "lmu"))
    with pytest.raises(FileNotFoundError, match="LMUData"):
        benchmark_path("vqav2")
    (tmp_path / "lmu").mkdir()
    (tmp_path / "lmu" / "VQAv2_VAL.tsv").write_text("index\timage\tanswer\n")
    assert benchmark_path("vqav2") == tmp_path / "lmu" / "VQAv2_VAL.tsv"


def test_world_export_reads_back(world, tmp_path):
    paths = export_world_benchmarks(world, tmp_path, max_images=5)
    assert {p.name for p in paths.values()} == {"WORLD_CAPTION_TEST.tsv", "WORLD_VQA_TEST.tsv", "WORLD_MCQ_TEST.tsv"}
    samples, images = world.samples("test")[:5], world.images("test")
    caps = read_tsv(paths["caption"])
    assert [c.answers for c in caps] == [s["captions"] for s in samples]
    assert all(np.array_equal(c.decode_image(), images[s["id"]]) for c, s in zip(caps, samples))
    vqa = read_tsv(paths["vqa"])
    qa = [(s["id"], q) for s in samples for q in s["qa"]]
    assert len(vqa) == len(qa)
    for item, (sid, q) in zip(vqa, qa):
        assert item.question == q["question"] and item.answers == [q["answer"]]
        assert item.extra["question_type"] == q["type"] and int(item.extra["image_id"]) == sid
        assert np.array_equal(item.decode_image(), images[sid])
    with open(paths["vqa"], newline="") as f:
        raw = [r["image"] for r in csv.DictReader(f, delimiter="\t")]
    assert sum(len(r) > 64 for r in raw) == len(samples)  # each image stored once, then referenced
    mcq = read_tsv(paths["mcq"])
    for item, (_, q) in zip(mcq, qa):
        assert 2 <= len(item.options) <= 4 and item.options[item.answers[0]] == q["answer"]
    assert decode_image(encode_image(images[0])).tobytes() == np.asarray(images[0]).tobytes()


# -- the Evaluator on TSV files ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_vlm(world, tmp_path_factory):
    from harness.models.connectors import build_connector
    from harness.models.connectors.avg_pool import AvgPoolCfg
    from harness.models.encoders.clip_tiny import ClipTinyCfg, ClipTinyEncoder, make_clip
    from harness.models.llm.base import LanguageModel
    from harness.models.llm.llama_tiny import LlamaTinyCfg, _llama
    from harness.models.llm.tokenizer import world_tokenizer
    from harness.models.vlm import VLM

    torch.manual_seed(0)
    tok = world_tokenizer(world, 200, tmp_path_factory.mktemp("tok"))
    llm = LanguageModel(_llama(LlamaTinyCfg(hidden=32, layers=1, heads=2, intermediate=64), tok), tok)
    ecfg = ClipTinyCfg(width=32, layers=1, head_width=16)
    enc = ClipTinyEncoder(make_clip(ecfg, len(tok), tok.pad_token_id, tok.eos_token_id).visual, ecfg, 32)
    conn = build_connector(AvgPoolCfg(name="avg_pool", num_tokens=4), enc.spec, llm.d_model)
    return VLM(enc, conn, llm).eval()


def test_evaluator_on_world_tsv_matches_native(world, tiny_vlm, tmp_path):
    from harness.config.schema import EvalCfg
    from harness.eval.runner import Evaluator

    root = tmp_path / "lmu"
    export_world_benchmarks(world, root, max_images=6)
    cfg = EvalCfg(
        name="t",
        max_images=6,
        shots=[0, 1],
        max_new_tokens_caption=6,
        max_new_tokens_vqa=3,
        text_tasks=["world_textmc"],  # and TextCore after the image tasks
        text_limit=4,
        benchmarks=["world_caption", "world_vqa", "world_mcq"],
        benchmark_root=str(root),
    )
    entries = Evaluator(tiny_vlm, world, cfg, tmp_path / "run", seed=0).run()
    get = lambda task, k, metric: next(
        e for e in entries if (e["task"], e["shots"], e["metric"], e["subset"]) == (task, k, metric, "all")
    )
    # 0-shot: same prompts, same pixels (PNG is lossless), same references -> the same score
    assert get("world_caption", 0, "cider")["value"] == pytest.approx(get("caption", 0, "cider")["value"])
    assert get("world_vqa", 0, "vqa_accuracy")["value"] == pytest.approx(get("vqa", 0, "vqa_accuracy")["value"])
    assert get("world_vqa", 0, "vqa_accuracy")["n"] == get("vqa", 0, "vqa_accuracy")["n"]
    preds = tmp_path / "run" / "predictions"
    for native, tsv in (("caption", "world_caption"), ("vqa", "world_vqa")):  # the generated text itself agrees
        assert [r["raw"] for r in read_jsonl(preds / f"{native}_0shot_t0.jsonl")] == [
            r["raw"] for r in read_jsonl(preds / f"{tsv}_0shot_t0.jsonl")
        ]
    mc = get("world_mcq", 1, "accuracy")
    assert 0 <= mc["value"] <= 1 and mc["file"].endswith("WORLD_MCQ_TEST.tsv")
    assert (tmp_path / "run" / "predictions" / "world_vqa_1shot_t0.jsonl").is_file()
    # MM1 averages per k over the caption tasks, the VQA tasks (the MCQ is neither) and all of them
    for k in (0, 1):
        cap = next(
            e for e in entries if e["task"] == "mm1_average" and e["shots"] == k and e["subset"] == "caption_tasks"
        )
        assert cap["tasks"] == ["caption", "world_caption"]
        assert cap["value"] == pytest.approx(
            (get("caption", k, "cider")["value"] + get("world_caption", k, "cider")["value"]) / 2
        )
        vqa = next(e for e in entries if e["task"] == "mm1_average" and e["shots"] == k and e["subset"] == "vqa_tasks")
        assert vqa["tasks"] == ["vqa", "world_vqa"] and vqa["metric"] == "vqa_mean"
        allt = next(e for e in entries if e["task"] == "mm1_average" and e["shots"] == k and e["subset"] == "all_tasks")
        assert allt["metric"] == "task_mean" and len(allt["tasks"]) == 4 and not math.isnan(allt["value"])
    textcore = [e for e in entries if e["task"] == "textcore" or e.get("suite") == "textcore"]
    if lm_eval_available():
        assert {(e["task"], e["subset"], e["metric"]) for e in textcore} == {
            ("world_textmc", "all", "acc"),
            ("world_textmc", "all", "acc_norm"),
            ("textcore", "all", "textcore_average"),
        }
        assert all(e["n"] == 4 for e in textcore if e["task"] == "world_textmc")
        assert (tmp_path / "run" / "predictions" / "textcore_world_textmc_0shot.jsonl").is_file()
    else:  # skipped visibly: NaN with the install hint, never 0
        (task, avg) = textcore
        assert task["status"] == "skipped" and "pip install" in task["reason"] and math.isnan(avg["value"])


def test_a_row_whose_image_does_not_decode_is_skipped_and_counted(world, tiny_vlm, tmp_path):
    """One corrupt image in a benchmark costs that row, not the benchmark: the other rows score as in the intact
    file, the bad row is never shown as a demonstration, and the entry names it."""
    from harness.config.schema import EvalCfg
    from harness.eval.runner import Evaluator

    root = tmp_path / "lmu"
    export_world_benchmarks(world, root, max_images=6)
    with open(root / "WORLD_VQA_TEST.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    by_index = {r["index"]: r["image"] for r in rows if len(r["image"]) > 64}
    for r in rows:  # every row its own base64 image (the export refers repeated images to an earlier row)
        r["image"] = by_index.get(r["image"], r["image"])
    write_tsv(tmp_path / "intact" / "bench.tsv", rows)
    bad = 2
    png = base64.b64decode(rows[bad]["image"])
    rows[bad]["image"] = base64.b64encode(png[: len(png) // 3]).decode()  # a PNG cut short, as by a failed copy
    write_tsv(tmp_path / "broken" / "bench.tsv", rows)  # same task name, so the same demonstration draws
    run = lambda which: {e["shots"]: e for e in Evaluator(
        tiny_vlm, world, EvalCfg(name="t", tasks=[], shots=[0, 2], max_new_tokens_vqa=3, text_tasks=[],
                                 benchmarks=[f"{tmp_path / which / 'bench.tsv'}:vqa"]),
        tmp_path / which / "run", seed=0).run() if e["task"] == "bench"}
    clean, broken = run("intact"), run("broken")
    for k in (0, 2):
        assert broken[k]["status"] == "ok" and broken[k]["n"] == clean[k]["n"] - 1
        assert broken[k]["skipped_rows"] == 1 and broken[k]["skipped_index"] == [rows[bad]["index"]]
        assert broken[k]["skip_reason"] == "undecodable_image" and "skipped_rows" not in clean[k]
    pred_dir = lambda which: tmp_path / which / "run" / "predictions"
    preds = lambda which, k: [r for r in read_jsonl(pred_dir(which) / f"bench_{k}shot_t0.jsonl")
                              if r["index"] != rows[bad]["index"]]
    assert [r["raw"] for r in preds("broken", 0)] == [r["raw"] for r in preds("intact", 0)]
    shown = [r["demos"] for r in preds("broken", 2)]
    assert all(len(d) == 2 and bad not in d for d in shown)
    # a demonstration drawn on the bad row moves on; the others are the intact file's draws
    moved = 0
    for mine, theirs in zip(shown, [r["demos"] for r in preds("intact", 2)]):
        moved += bad in theirs
        assert [m for m, t in zip(mine, theirs) if t != bad] == [t for t in theirs if t != bad]
    assert moved > 0  # the case was exercised


def test_image_path_column_reads_files_beside_the_tsv(world, tiny_vlm, tmp_path):
    """VLMEvalKit's other layout: images as files named by ``image_path`` (relative to the TSV's folder); the
    scores equal those of the same images inlined as base64, and a missing file costs its row only."""
    from PIL import Image

    from harness.config.schema import EvalCfg
    from harness.eval.runner import Evaluator

    imgs = world.images("test")[:4]
    (tmp_path / "files" / "img").mkdir(parents=True)
    inline, files = [], []
    for i, img in enumerate(imgs):
        Image.fromarray(np.asarray(img)).save(tmp_path / "files" / "img" / f"{i}.png")
        row = {"index": i, "question": "what colour is the shape?", "answer": ["red"] * 10}
        inline.append(row | {"image": encode_image(np.asarray(img))})
        files.append(row | {"image_path": f"img/{i}.png"})
    files.append({"index": 4, "question": "what colour is the shape?", "answer": ["red"] * 10,
                  "image_path": "img/missing.png"})
    write_tsv(tmp_path / "inline" / "q.tsv", inline)
    with open(tmp_path / "files" / "q.tsv", "w", newline="") as f:  # write_tsv writes an image column
        w = csv.DictWriter(f, fieldnames=["index", "image_path", "question", "answer"], delimiter="\t")
        w.writeheader()
        w.writerows({**r, "answer": json.dumps(r["answer"])} for r in files)
    items = read_tsv(tmp_path / "files" / "q.tsv")
    assert items[0].image == "" and items[0].image_file == str(tmp_path / "files" / "img" / "0.png")
    assert np.array_equal(items[2].decode_image(), np.asarray(imgs[2]))
    run = lambda which: {e["shots"]: e for e in Evaluator(
        tiny_vlm, world, EvalCfg(name="t", tasks=[], shots=[0], max_new_tokens_vqa=3, text_tasks=[],
                                 benchmarks=[str(tmp_path / which / "q.tsv")]),
        tmp_path / which / "run", seed=0).run() if e["task"] == "q"}
    a, b = run("inline")[0], run("files")[0]
    assert a["status"] == b["status"] == "ok" and a["n"] == b["n"] == 4 and a["value"] == b["value"]
    assert b["skipped_rows"] == 1 and b["skip_reason"] == "missing_file" and b["skipped_index"] == ["4"]
