"""Tests for the procedural world: determinism, the build cache, well-formed data, and the resolution guard.

The resolution guard is the scientific one: the glyph must need resolution (read at 128 px, not at 32 px) *because of*
jitter, ink and noise. A noiseless world leaks the digit at 32 px, which is what the prototype found.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.world import (
    QA_TEMPLATE,
    QUESTION_TYPES,
    SPLITS,
    World,
    WorldCfg,
    build,
    glyph_box,
    qa_line,
    split_sizes,
    world_dir,
    world_hash,
)

SMALL = WorldCfg(n_train=200, n_val=50, n_test=50, n_docs=40, n_texts=40)
ANSWER = re.compile(r"^[a-z0-9]+( [a-z0-9]+)*$")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World.build_or_load(SMALL, tmp_path_factory.mktemp("cache"))


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.name != "world.json"}


# --- determinism and cache -------------------------------------------------------------------------------------------


def test_same_cfg_gives_identical_files(world: World, tmp_path: Path) -> None:
    again = World.build_or_load(SMALL, tmp_path)
    assert again.root != world.root and again.hash == world.hash
    assert _file_bytes(again.root) == _file_bytes(world.root)
    strip = lambda m: {k: v for k, v in m.items() if k != "generation_seconds"}
    assert strip(again.meta) == strip(world.meta)


def test_seed_changes_output(world: World, tmp_path: Path) -> None:
    other = World.build_or_load(dataclasses.replace(SMALL, seed=1, n_train=20, n_val=5, n_test=5), tmp_path)
    assert not np.array_equal(other.images("train")[:5], world.images("train")[:5])


def test_cache_is_reused(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> None:
        raise AssertionError("regenerated a world that was already cached")

    monkeypatch.setattr(build, "_generate", boom)
    cache_root = world.root.parent.parent
    assert World.build_or_load(SMALL, cache_root).root == world.root


def _entries(folder: Path) -> list[str]:
    """What a build left in the cache folder, minus the (empty, reusable) lock files parallel builders share."""
    return [p.name for p in folder.iterdir() if not p.name.endswith(".lock")]


def test_folder_without_done_is_rebuilt_not_read(tmp_path: Path) -> None:
    cfg = dataclasses.replace(SMALL, n_train=20, n_val=5, n_test=5)
    final = world_dir(cfg, tmp_path)
    final.mkdir(parents=True)
    (final / "world.json").write_text("{not json")
    (final / "junk").write_text("left by a crashed job")
    with pytest.raises(FileNotFoundError, match="DONE"):
        World(final)
    w = World.build_or_load(cfg, tmp_path)
    assert w.root == final and (final / "DONE").exists() and not (final / "junk").exists()
    assert len(w.samples("train")) == 20
    assert _entries(final.parent) == [final.name]  # no tmp / stale leftovers


def test_race_loser_uses_winners_world(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another job finishes the same world while we generate: our rename fails and we must use theirs."""
    real = build._generate

    def generate_then_lose(cfg: WorldCfg, h: str, out: Path) -> None:
        real(cfg, h, out)
        shutil.copytree(world.root, world_dir(cfg, tmp_path))
        (world_dir(cfg, tmp_path) / "winner").write_text("")

    monkeypatch.setattr(build, "_generate", generate_then_lose)
    w = World.build_or_load(SMALL, tmp_path)
    assert (w.root / "winner").exists()
    assert _entries(w.root.parent) == [w.root.name]


def test_hash_is_canonical() -> None:
    assert world_hash(SMALL) == world_hash(dataclasses.replace(SMALL, pixel_noise=12))
    assert world_hash(SMALL) == world_hash(dataclasses.asdict(SMALL))  # a plain mapping (e.g. from Hydra) works
    assert world_hash(SMALL) != world_hash(dataclasses.replace(SMALL, version=SMALL.version + 1))
    assert re.fullmatch(r"[0-9a-f]{12}", world_hash(SMALL))
    with pytest.raises(TypeError):
        world_hash({**dataclasses.asdict(SMALL), "colour_count": 3})


# --- shapes and well-formed data -------------------------------------------------------------------------------------


def test_arrays_and_counts(world: World) -> None:
    r = SMALL.native_resolution
    for split in SPLITS:
        sizes = split_sizes(SMALL)[split]
        images = world.images(split)
        assert images.dtype == np.uint8 and images.shape == (sizes["images"], r, r, 3), images.shape
        assert isinstance(images, np.memmap)
        assert [s["id"] for s in world.samples(split)] == list(range(sizes["images"]))
        assert len(world.docs(split)) == sizes["docs"] and len(world.texts(split)) == sizes["texts"]
    assert split_sizes(SMALL)["val"]["docs"] == 50 and split_sizes(SMALL)["val"]["texts"] == 200  # the minimums
    with pytest.raises(ValueError, match="train, val, test"):
        world.images("validation")


def test_samples_are_consistent(world: World) -> None:
    n_questions = 0
    for s in world.samples("train"):
        objs = s["objects"]
        assert SMALL.min_objects <= len(objs) <= SMALL.max_objects
        caps = s["captions"]
        assert len(caps) == len(set(caps)) == SMALL.captions_per_image
        assert all(c == c.lower() and c.endswith(".") for c in caps + [s["dense_caption"]])
        assert f"the number {s['glyph']} is written" in s["dense_caption"]
        assert all(f"{o['colour']} {o['shape']}" in s["dense_caption"] for o in objs)
        for q in s["qa"]:
            a, t, n_questions = q["answer"], q["type"], n_questions + 1
            assert ANSWER.match(a), a
            assert QA_TEMPLATE.format(question=q["question"], answer=a).startswith("Question: ")
            if t == "count":
                assert a == str(len(objs))
            elif t == "glyph":
                assert a == s["glyph"]
            elif t == "colour":
                (o,) = [o for o in objs if f"the {o['shape']}?" in q["question"]]
                assert a == o["colour"]
            elif t == "shape":
                (o,) = [o for o in objs if f"the {o['colour']} object?" in q["question"]]
                assert a == o["shape"]
            else:
                assert t == "position"
                (o,) = [o for o in objs if f"the {o['colour']} {o['shape']}?" in q["question"]]
                assert a == o["position"]
    assert 4.5 <= n_questions / len(world.samples("train")) <= 6.5


def test_docs_are_well_formed(world: World) -> None:
    for split in SPLITS:
        samples = world.samples(split)
        for d in world.docs(split):
            images, texts = d["images"], d["texts"]
            assert len(images) == len(texts)
            assert all((i is None) != (t is None) for i, t in zip(images, texts, strict=True))
            assert all(images[k] is not None and texts[k + 1] is not None for k in range(0, len(images), 2)), d
            ids = [i for i in images if i is not None]
            assert SMALL.doc_min_images <= len(ids) <= SMALL.doc_max_images and len(set(ids)) == len(ids)
            qtype = d["theme"]
            for k in range(0, len(images), 2):
                s = samples[images[k]]
                own = [qa_line(q["question"], q["answer"]) for q in s["qa"] if q["type"] == qtype]
                assert own, (qtype, s["qa"])
                assert texts[k + 1] in s["captions"] or texts[k + 1] in own


def test_text_passages(world: World) -> None:
    for t in world.texts("train"):
        assert 1 <= t.count("Question: ") <= 3 and t == t.strip()


def test_majority_answers_cover_every_question_type(world: World) -> None:
    majority = world.majority_answers()
    assert world.question_types() == list(QUESTION_TYPES) == sorted(majority, key=QUESTION_TYPES.index)
    for t, a in majority.items():
        assert any(q["type"] == t and q["answer"] == a for s in world.samples("train") for q in s["qa"])


def test_all_text_has_a_small_vocabulary(world: World) -> None:
    texts = list(world.all_text())
    assert any(t.startswith("Question: how many objects are there? Answer: ") for t in texts)
    words = {w for t in texts for w in re.findall(r"[A-Za-z0-9]+", t)}
    assert len(words) < 300, sorted(words)


# --- the resolution guard --------------------------------------------------------------------------------------------


def glyph_features(images: np.ndarray, res: int) -> np.ndarray:
    """Box-downsample the whole image to ``res``, crop the glyph zone, and centre the ink on its centroid.

    Centring by whole pixels is what a reader without sub-pixel precision can do: at 128 px it undoes the jitter, at
    32 px a quarter-pixel of residual jitter smears the 1.5x2.5 px digit.
    """
    n, native = len(images), images.shape[1]
    f = native // res
    grey = np.asarray(images, dtype=np.float32).mean(-1).reshape(n, res, f, res, f).mean((2, 4))
    x0, y0, x1, y1 = glyph_box(res)
    patch = grey[:, y0:y1, x0:x1]
    _, h, w = patch.shape
    ink = np.clip(np.median(patch.reshape(n, -1), axis=1)[:, None, None] - patch, 0, None)
    total = ink.sum((1, 2)) + 1e-6
    cy = (ink.sum(2) * np.arange(h)).sum(1) / total
    cx = (ink.sum(1) * np.arange(w)).sum(1) / total
    shifts = np.stack([np.rint((h - 1) / 2 - cy), np.rint((w - 1) / 2 - cx)], 1).astype(int)
    out = np.stack([np.roll(ink[i], tuple(shifts[i]), (0, 1)) for i in range(n)])
    out = out.reshape(n, -1) - out.reshape(n, -1).mean(1, keepdims=True)
    return out / (np.linalg.norm(out, axis=1, keepdims=True) + 1e-6)


def template_accuracy(world: World, res: int) -> float:
    """Nearest-class-mean digit classifier: templates from train, accuracy on test."""
    labels = {s: np.array([int(x["glyph"]) for x in world.samples(s)]) for s in ("train", "test")}
    train, test = glyph_features(world.images("train"), res), glyph_features(world.images("test"), res)
    means = np.stack([train[labels["train"] == d].mean(0) for d in range(10)])
    pred = (test @ means.T - 0.5 * (means**2).sum(1)).argmax(1)
    return float((pred == labels["test"]).mean())


RESOLUTION_CFG = WorldCfg(n_train=600, n_val=10, n_test=400, n_docs=10, n_texts=10)


def test_glyph_needs_resolution(tmp_path_factory: pytest.TempPathFactory) -> None:
    noisy = World.build_or_load(RESOLUTION_CFG, tmp_path_factory.mktemp("noisy"))
    acc = {r: template_accuracy(noisy, r) for r in (32, 128)}
    print(f"default world glyph template accuracy: {acc}")
    assert acc[128] >= 0.9 and acc[128] - acc[32] >= 0.15, acc


def test_noiseless_glyph_leaks_at_low_resolution(tmp_path_factory: pytest.TempPathFactory) -> None:
    clean_cfg = dataclasses.replace(RESOLUTION_CFG, pixel_noise=0.0, glyph_jitter=False, ink_jitter=False)
    clean = World.build_or_load(clean_cfg, tmp_path_factory.mktemp("clean"))
    acc = template_accuracy(clean, 32)
    print(f"noiseless world glyph template accuracy at 32 px: {acc}")
    assert acc >= 0.95, acc


def test_world_json_records_the_build(world: World) -> None:
    meta = json.loads((world.root / "world.json").read_text())
    assert meta["hash"] == world.hash == world_hash(SMALL) and meta["cfg"] == dataclasses.asdict(SMALL)
    assert meta["counts"] == split_sizes(SMALL) and meta["generation_seconds"] > 0
