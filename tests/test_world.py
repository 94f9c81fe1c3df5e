"""Tests for the procedural world: determinism, the build cache, well-formed data, the resolution guard and the
controls.

The resolution guard is the scientific one: the glyph must need resolution (read at 128 px, not at 32 px) *because of*
jitter, ink and noise. A noiseless world leaks the digit at 32 px, which is what the prototype found. The controls are
guarded by construction: the pattern leaves the encoders' 32 px input unchanged and the 64 px input visibly changed;
the dot's column cannot be told apart within a 2x2 token pooling; the pair's two dots share one token of 2x2 pooling
whatever the answer, and one or two tokens of 4x4 pooling by the answer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.models.encoders.base import resize
from harness.world import (
    QA_TEMPLATE,
    QUESTION_TYPES,
    SPLITS,
    StaleWorldError,
    World,
    WorldCfg,
    build,
    glyph_box,
    qa_line,
    split_sizes,
    world_dir,
    world_hash,
)
from harness.world.render import pattern_field, render_scene
from harness.world.scene import (
    COLUMN_WORDS,
    DOT_CELLS,
    DOT_GRID,
    DOT_RADIUS,
    PAIR_GRID,
    PAIR_RADIUS,
    PATTERNS,
    QUADRANT_WORDS,
    SIZES,
    Scene,
    pair_candidates,
    sample_scene,
    split_candidates,
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


# What the default world generates, per version: a digest of its first items' pixels and texts. A change to sampling,
# rendering or wording changes it; the fix is a WorldCfg.version bump (caches are keyed by the config alone, so
# without one every cached world, backbone and feature bank silently stays at the old content) and a new entry here.
CONTENT_DIGESTS = {3: "e22419c6de92b7a7"}


def _content_digest(cfg: WorldCfg) -> str:
    h = hashlib.sha1()
    for split in ("train", "test"):
        for i in range(4):
            image, sample = build._item(cfg, split, i)
            h.update(image.tobytes())
            h.update(json.dumps(sample, sort_keys=True).encode())
    return h.hexdigest()[:16]


def test_world_content_is_pinned_to_its_version() -> None:
    cfg = WorldCfg()
    assert _content_digest(cfg) == CONTENT_DIGESTS.get(cfg.version), (
        f"the default world's content changed but WorldCfg.version is still {cfg.version}: bump it and add "
        f"{{{cfg.version + 1}: '{_content_digest(cfg)}'}} to CONTENT_DIGESTS"
    )


def test_stale_cached_world_is_refused(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache built by other world code under the same config (no version bump) fails loudly on load."""
    real = build.render_scene
    monkeypatch.setattr(build, "render_scene", lambda *a, **k: 255 - real(*a, **k))
    with pytest.raises(StaleWorldError, match="without a version bump"):
        World.build_or_load(SMALL, world.root.parent.parent)
    monkeypatch.setattr(build, "render_scene", real)
    assert World.build_or_load(SMALL, world.root.parent.parent).root == world.root


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
            elif t == "pattern":
                assert a == s["pattern"] and a in PATTERNS
            elif t == "dot":
                assert a == COLUMN_WORDS[s["dot"] % DOT_GRID]
            else:
                assert t == "position"
                (o,) = [o for o in objs if f"the {o['colour']} {o['shape']}?" in q["question"]]
                assert a == o["position"]
    assert 6.5 <= n_questions / len(world.samples("train")) <= 8.5


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
    default_types = [t for t in QUESTION_TYPES if t not in ("pair", "split")]  # opt-in controls
    assert world.question_types() == default_types == sorted(majority, key=QUESTION_TYPES.index)
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


# Without the pattern: a template classifier is not a reader, and the pattern's stripes cross its templates.
RESOLUTION_CFG = WorldCfg(n_train=600, n_val=10, n_test=400, n_docs=10, n_texts=10, pattern=False)


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


# --- the controls ----------------------------------------------------------------------------------------------------


def _encoder_view(image: np.ndarray, res: int) -> np.ndarray:
    """What an encoder gets at ``res`` px: the harness's own antialiased resize, in grey levels."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    return resize(x, res)[0].numpy()


@pytest.mark.parametrize("pattern", [p for p in PATTERNS if p != "plain"])
def test_pattern_is_averaged_out_at_32_px_and_legible_at_64(pattern: str) -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        scene = sample_scene(rng, 1, 4, glyph=True, pattern=True, dot=True)
        seed = int(rng.integers(1 << 30))
        plain = render_scene(dataclasses.replace(scene, pattern="plain"), np.random.default_rng(seed), 128)
        patterned = render_scene(dataclasses.replace(scene, pattern=pattern), np.random.default_rng(seed), 128)
        diff = {r: np.abs(_encoder_view(patterned, r) - _encoder_view(plain, r)) for r in (32, 64)}
        # At 32 px only rounding to uint8 and the noise's clipping remain (well under one grey level).
        assert diff[32].max() < 1.0 and diff[32].mean() < 0.05, (pattern, diff[32].max(), diff[32].mean())
        assert diff[64].mean() > 3.0, (pattern, diff[64].mean())  # the noise's std at 64 px is about 2.2


def test_pattern_classes_differ_at_64_px() -> None:
    """The three patterns are told apart at 64 px by where their energy sits (rows, columns or both)."""
    fields = {p: _encoder_view(np.repeat(pattern_field(p, 128)[..., None], 3, -1) * 50 + 128, 64)[0] - 128
              for p in PATTERNS}  # fmt: skip
    def signature(f: np.ndarray) -> tuple[bool, bool]:
        return bool(np.abs(np.diff(f, axis=0)).mean() > 5), bool(np.abs(np.diff(f, axis=1)).mean() > 5)
    assert {p: signature(f) for p, f in fields.items()} == {
        "plain": (False, False), "horizontal": (True, False), "vertical": (False, True), "checked": (True, True)
    }  # fmt: skip


def test_dot_column_is_one_token_of_four_but_two_columns_share_a_token_of_two() -> None:
    """At 64 px the 8x8 patch grid pooled to 4x4 tokens gives each dot column its own token column; pooled to 2x2,
    columns one and two (three and four) fall entirely inside the same token, so a pooling connector sees only the
    half. Checked on the rendered pixels: the dot's dark disc never crosses a 16 px band edge."""
    assert set(DOT_CELLS) == set(range(DOT_GRID * DOT_GRID)) - {DOT_GRID * DOT_GRID - 1}
    assert len(COLUMN_WORDS) == DOT_GRID
    for cell in DOT_CELLS:
        scene = dataclasses.replace(sample_scene(np.random.default_rng(cell), 1, 1, glyph=False, dot=True), dot=cell)
        clean = render_scene(dataclasses.replace(scene, objects=()), np.random.default_rng(0), 128, pixel_noise=0.0)
        dark = _encoder_view(clean, 64).mean(0) < 150
        cols = np.flatnonzero(dark.any(0))
        assert cols.size and cols.min() // 16 == cols.max() // 16 == cell % DOT_GRID, (cell, cols)
    assert DOT_RADIUS * 64 < 16 / 2 - 1  # the disc (plus the resize's 1 px spread) stays inside its band


def test_the_dot_never_covers_an_object(world: World) -> None:
    covered = 0
    for s in world.samples("train"):
        row, col = divmod(s["dot"], DOT_GRID)
        cx, cy = (col + 0.5) / DOT_GRID, (row + 0.5) / DOT_GRID
        covered += any((cx - o["x"]) ** 2 + (cy - o["y"]) ** 2 < (DOT_RADIUS + SIZES[o["size"]]) ** 2
                       for o in s["objects"])  # fmt: skip
    assert covered <= len(world.samples("train")) // 100, covered  # only scenes without a free cell


# --- the pair (opt-in second token control) ---------------------------------------------------------------------------


def test_the_opt_in_controls_leave_worlds_without_them_unchanged() -> None:
    """``pair=False`` and ``split=False`` hash as before the fields existed (the v3 caches and records keep their
    keys) and draw nothing, so the pinned v3 content digest above still holds; either switched on is another world."""
    legacy = {k: v for k, v in dataclasses.asdict(SMALL).items() if k not in ("pair", "split")}
    canonical = json.dumps(legacy, sort_keys=True, separators=(",", ":"))
    assert world_hash(SMALL) == hashlib.sha1(canonical.encode()).hexdigest()[:12]
    switched = ({}, {"pair": True}, {"split": True, "dot": False})
    hashes = {world_hash(dataclasses.replace(SMALL, **on)) for on in switched}
    assert len(hashes) == 3
    scene = sample_scene(np.random.default_rng(0), 1, 4, glyph=True, pattern=True, dot=True)
    assert scene.pair is None and scene.split is None and not {"pair", "split"} & set(scene.to_dict())


@pytest.mark.parametrize("together", [True, False])
def test_pair_shares_a_token_of_2x2_pooling_always_and_of_4x4_pooling_by_its_answer(together: bool) -> None:
    """Rendered at 128 px and seen at 64 px (the encoders' resize), each dot stays inside its own 8 px patch; both lie
    in one 32 px quadrant (one token of 2x2 pooling); they lie in one 16 px cell (one token of 4x4 pooling) exactly
    when the answer is yes. Both answers have the same geometry: two neighbouring patches."""
    options = pair_candidates(together)
    assert options and all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in options)
    for cells in options:
        scene = Scene((), None, pair=cells)
        assert scene.pair_together is together
        clean = render_scene(scene, np.random.default_rng(0), 128, pixel_noise=0.0)
        dark = _encoder_view(clean, 64).mean(0) < 150
        ys, xs = np.nonzero(dark)
        patches = {(int(y) // 8, int(x) // 8) for y, x in zip(ys, xs, strict=True)}
        assert patches == set(cells), (cells, patches)
        assert len({(r // 4, c // 4) for r, c in patches}) == 1  # one quadrant: one token of 2x2
        assert (len({(r // 2, c // 2) for r, c in patches}) == 1) is together  # one or two tokens of 4x4
    assert PAIR_RADIUS * 64 < 8 / 2 - 1  # each disc (plus the resize's 1 px spread) stays inside its patch


def test_pair_world_asks_it_balanced_and_keeps_it_off_objects(tmp_path_factory: pytest.TempPathFactory) -> None:
    cfg = dataclasses.replace(SMALL, pair=True, dot=False, n_train=400)
    w = World.build_or_load(cfg, tmp_path_factory.mktemp("pair"))
    samples = w.samples("train")
    answers, covered = [], 0
    for s in samples:
        scene = Scene.from_dict(s)
        (q,) = [q for q in s["qa"] if q["type"] == "pair"]
        assert q["answer"] == ("yes" if scene.pair_together else "no")
        answers.append(q["answer"])
        assert QUADRANT_WORDS[scene.pair_quadrant] in s["dense_caption"]
        assert not any("cell" in c for c in s["captions"] + [s["dense_caption"]])  # the answer is never captioned
        for r, c in scene.pair:
            x, y = (c + 0.5) / PAIR_GRID, (r + 0.5) / PAIR_GRID
            covered += any((x - o["x"]) ** 2 + (y - o["y"]) ** 2 < (PAIR_RADIUS + SIZES[o["size"]]) ** 2
                           for o in s["objects"])  # fmt: skip
    assert 0.4 < answers.count("yes") / len(answers) < 0.6
    assert covered <= len(samples) // 100, covered
    assert w.question_types()[-1] == "pair"


@pytest.mark.parametrize("across", [True, False])
def test_split_dot_is_in_one_token_of_2x2_pooling_always_and_of_4x4_pooling_by_its_answer(across: bool) -> None:
    """Seen at 64 px, the black dot lies in one 32 px quadrant (one token of 2x2) wherever it is, and in one 16 px
    cell (one token of 4x4) exactly when the answer is no; across an edge it is cut in two equal halves."""
    for centre in split_candidates(across):
        scene = Scene((), None, split=centre)
        assert scene.split_across is across
        clean = render_scene(scene, np.random.default_rng(0), 128, pixel_noise=0.0, dot_radius=DOT_RADIUS)
        dark = _encoder_view(clean, 64).mean(0) < 150
        ys, xs = np.nonzero(dark)
        assert len({(int(y) // 32, int(x) // 32) for y, x in zip(ys, xs, strict=True)}) == 1, centre
        cells = [(int(y) // 16, int(x) // 16) for y, x in zip(ys, xs, strict=True)]
        assert (len(set(cells)) == 2) is across and len(set(cells)) in (1, 2), (centre, set(cells))
        if across:
            counts = sorted(cells.count(c) for c in set(cells))
            assert counts[0] == counts[1], (centre, counts)


def test_split_world_asks_it_balanced_and_keeps_it_off_objects(tmp_path_factory: pytest.TempPathFactory) -> None:
    cfg = dataclasses.replace(SMALL, split=True, dot=False, n_train=400)
    w = World.build_or_load(cfg, tmp_path_factory.mktemp("split"))
    answers, covered = [], 0
    for s in w.samples("train"):
        scene = Scene.from_dict(s)
        (q,) = [q for q in s["qa"] if q["type"] == "split"]
        assert q["answer"] == ("yes" if scene.split_across else "no")
        answers.append(q["answer"])
        assert QUADRANT_WORDS[scene.split_quadrant] in s["dense_caption"]
        assert not any("cell" in c or "split" in c for c in s["captions"] + [s["dense_caption"]])
        x, y = scene.split
        covered += any((x - o["x"]) ** 2 + (y - o["y"]) ** 2 < (DOT_RADIUS + SIZES[o["size"]]) ** 2
                       for o in s["objects"])  # fmt: skip
    assert 0.4 < answers.count("yes") / len(answers) < 0.6
    assert covered <= len(answers) // 50, covered
    assert w.question_types()[-1] == "split"


@pytest.mark.parametrize(("switch", "question", "said"), [
    ("pair", "small dots in the same cell", "two small dots are at the"),
    ("split", "split between", "a black dot is at the"),
])  # fmt: skip
def test_text_passages_never_ask_what_their_words_do_not_say(tmp_path_factory: pytest.TempPathFactory, switch: str,
                                                             question: str, said: str) -> None:
    """The opt-in controls' answers are never captioned, so a text-only passage cannot ask them."""
    cfg = dataclasses.replace(SMALL, dot=False, n_train=50, n_texts=300, **{switch: True})
    w = World.build_or_load(cfg, tmp_path_factory.mktemp("unsaid"))
    texts = w.texts("train")
    assert texts and not any(question in t for t in texts)
    assert any(said in t for t in texts)  # the passages still describe where it is


def test_the_split_dot_replaces_the_column_dot() -> None:
    with pytest.raises(ValueError, match=r"add world.dot=false"):
        world_hash(dataclasses.replace(SMALL, split=True))


def test_the_pair_and_the_split_dot_are_not_drawn_together() -> None:
    with pytest.raises(ValueError, match="switch on one of them"):
        world_hash(dataclasses.replace(SMALL, split=True, dot=False, pair=True))
