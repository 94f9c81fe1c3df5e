"""The real path as a user runs it (slow): 23 real photos in a webdataset shard with one corrupt sample, a real-size
encoder (open_clip ViT-B/32 at 224 px, random init) and a real-size LLM (Qwen2.5-0.5B's architecture, random init),
connector-only at batch 1 for a few steps, then ``harness.evaluate`` on a TSV of the same photos given by path, twice.

Random weights: this checks that the pipeline runs at real sizes on real files, not what it learns."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from harness.records import read_record
from tests.conftest import ROOT, run_sweep
from tests.photos import photo_shard, real_photos

pytestmark = pytest.mark.slow


def test_real_photos_real_sizes_train_then_evaluate_by_path(tmp_path, sweep_env):
    from PIL import Image

    from harness.eval.benchmarks import encode_image, write_tsv

    photos = real_photos()
    if len(photos) < 23:
        pytest.skip(f"only {len(photos)} photos installed (pip install scikit-image scikit-learn)")
    photo_shard(tmp_path / "data" / "photos" / "00000.tar", photos)
    env = sweep_env | {"MM_ABLATE_DATA": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    point = ["world=shapes_micro", "encoder=openclip_vit_b32_random", "llm=hf_qwen2_5_0_5b_random", "resolution=224",
             "connector=c_abstractor", "visual_tokens=16", "data=caption_only",
             "data.sources.caption.format=webdataset", "data.sources.caption.path='photos/{00000..00000}.tar'",
             "train=smoke", "train.batch_size=1", "train.stages.0.steps=3", "train.stages.0.warmup_steps=1",
             "train.stages.0.trainable=[connector]", "eval.tasks=[]", "eval.text_tasks=[]", "runtime.threads=2",
             "data.max_len=64"]
    res = run_sweep(point, env, tmp_path, timeout=1800)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    (path,) = (tmp_path / "results" / "runs").glob("*/record.json")
    rec = read_record(path.parent)
    src = rec.data["sources"]["caption"]
    assert src["records"] == len(photos) and src["skipped"] == {"undecodable_image": 1}
    assert src["stored_px"] >= 224 and rec.data["input_px"] == 224  # decoded from the originals at 224
    assert rec.model["params"]["llm"] > 400e6 and rec.model["params"]["encoder"] > 80e6
    assert rec.model["params"]["trainable"] == rec.model["params"]["connector"]

    rows = []
    for i, p in enumerate(photos):
        with Image.open(p) as im:
            rows.append({"index": i, "image": encode_image(np.asarray(im.convert("RGB"))), "question": "what is it?",
                         "answer": p.stem.replace("_", " ")})
    tsv = write_tsv(tmp_path / "bench" / "real_photos.tsv", rows)

    def evaluate():
        return subprocess.run([sys.executable, "-m", "harness.evaluate", str(path.parent),
                               f"eval.benchmarks=[{tsv}:vqa]", "eval.max_new_tokens_vqa=2", "runtime.threads=2"],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1800, check=False)

    first = evaluate()
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    rec2 = read_record(path.parent)
    (bench,) = [e for e in rec2.metrics if e["task"] == "real_photos"]
    assert bench["status"] == "ok" and bench["n"] == len(photos) and rec2.train == rec.train
    second = evaluate()
    assert second.returncode == 0 and "nothing to do" in second.stdout
    assert read_record(path.parent) == rec2
