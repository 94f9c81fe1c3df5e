"""Feature probes (harness.diagnostics.probe_encoder): they find an attribute the tokens carry, and only that one."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from harness.diagnostics.probe_encoder import glyph_cells, probe_inputs, run_probes
from harness.world.scene import COLOURS, SHAPES
from tests.conftest import MICRO, ROOT

G, D = 8, 12


def _scenes(n: int, rng: np.random.Generator) -> list[dict]:
    out = []
    for _ in range(n):
        objs = [{"shape": SHAPES[rng.integers(len(SHAPES))], "colour": list(COLOURS)[rng.integers(len(COLOURS))],
                 "x": float(rng.uniform(0.05, 0.8)), "y": float(rng.uniform(0.05, 0.8))}
                for _ in range(int(rng.integers(1, 4)))]
        out.append({"objects": objs, "glyph": str(rng.integers(10))})
    return out


def _features(scenes: list[dict], rng: np.random.Generator, write_shape: bool) -> torch.Tensor:
    """Noise tokens; with ``write_shape``, each object's own cell also holds its shape one-hot (scaled up)."""
    feats = torch.from_numpy(rng.normal(size=(len(scenes), G, G, D)).astype(np.float32))
    if write_shape:
        for i, s in enumerate(scenes):
            for o in s["objects"]:
                r, c = min(G - 1, int(o["y"] * G)), min(G - 1, int(o["x"] * G))
                feats[i, r, c, SHAPES.index(o["shape"])] += 4.0
    return feats.reshape(len(scenes), G * G, D)


def test_probe_reads_an_attribute_that_is_there_and_not_one_that_is_not():
    rng = np.random.default_rng(0)
    train, test = _scenes(600, rng), _scenes(200, rng)
    rows = run_probes(_features(train, rng, True), train, _features(test, rng, True), test,
                      attributes=("shape", "glyph"), hidden=(0,), epochs=40)
    by = {r["attribute"]: r for r in rows}
    assert by["shape"]["accuracy"] > 0.8 > by["shape"]["majority_baseline"]  # written into the object's tokens
    assert by["glyph"]["accuracy"] < by["glyph"]["majority_baseline"] + 0.12  # never written: chance
    assert by["shape"]["n_test"] == sum(len(s["objects"]) for s in test)


def test_probe_without_labels_reports_nan_and_why():
    rng = np.random.default_rng(0)
    train, test = _scenes(50, rng), _scenes(20, rng)
    for s in train + test:
        s["glyph"] = None  # a world drawn without the glyph
    (row,) = run_probes(_features(train, rng, False), train, _features(test, rng, False), test, attributes=("glyph",),
                        hidden=(0,), epochs=1)
    assert np.isnan(row["accuracy"]) and row["status"] == "no glyph labels in the train split"


def test_probe_inputs_take_the_window_around_each_object_and_the_glyph_zone():
    assert glyph_cells(8) == [(6, 7), (7, 7)]  # GLYPH_ZONE: x 0.875-1, y 0.84-1 of the side
    scenes = [{"objects": [{"shape": "circle", "colour": "red", "x": 0.01, "y": 0.01}], "glyph": "3"}]
    feats = torch.arange(G * G, dtype=torch.float32).reshape(1, G * G, 1)
    x, y = probe_inputs(feats, scenes, "shape", window=3)
    assert y == ["circle"] and x.tolist() == [[0, 0, 0, 0, 0, 1, 0, 8, 9]]  # zero-padded at the top-left border
    x, y = probe_inputs(feats, scenes, "glyph")
    assert y == ["3"] and x.tolist() == [[55, 63]]


def test_probe_rejects_unknown_attributes_and_even_windows():
    feats, scenes = torch.zeros(1, G * G, 2), [{"objects": [], "glyph": None}]
    with pytest.raises(ValueError, match="available: colour, shape, glyph, count"):
        probe_inputs(feats, scenes, "size")
    with pytest.raises(ValueError, match="odd number"):
        probe_inputs(feats, scenes, "shape", window=2)


def test_probe_command_writes_json(sweep_env, tmp_path):
    over = [o for o in MICRO if not o.startswith("runtime.")]
    res = subprocess.run([sys.executable, "-m", "harness.bench", "probe", "--n-train", "200", "--epochs", "1",
                          "--hidden", "0", "--threads", "1", "--out", str(tmp_path), *over],
                         env=sweep_env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    (out,) = tmp_path.glob("probe-*.json")
    rows = json.loads(out.read_text())["rows"]
    assert [r["attribute"] for r in rows] == ["colour", "shape", "glyph", "count", "pattern", "dot"]
    assert all(0 <= r["accuracy"] <= 1 and r["n_test"] > 0 for r in rows)


def test_control_probes_read_the_scene_record():
    """pattern: mean of all tokens, one row per image; dot: all tokens side by side, labelled with its column."""
    feats = torch.arange(2 * G * G * 3, dtype=torch.float32).reshape(2, G * G, 3)
    scenes = [{"objects": [], "glyph": "1", "pattern": "checked", "dot": 6},
              {"objects": [], "glyph": "2", "pattern": None, "dot": None}]  # fmt: skip
    x, y = probe_inputs(feats, scenes, "pattern")
    assert y == ["checked"] and torch.equal(x, feats[:1].mean(1))
    x, y = probe_inputs(feats, scenes, "dot")
    assert y == ["2"] and x.shape == (1, G * G * 3)


def test_set_probe_reads_a_per_token_property_that_pooling_to_fewer_tokens_erases():
    """The token controls' logic on synthetic tokens: "yes" puts two units of a feature into one token of a 4x4
    grid, "no" one unit into each of two neighbouring tokens of the same 2x2 quadrant, so the mean over tokens is
    the same. The set probe (a per-token MLP, then the mean) reads it at 4x4; pooled to 2x2 nothing is left."""
    from harness.diagnostics.probe_encoder import pool_grid

    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[torch.Tensor, list[dict]]:
        feats = rng.normal(scale=0.3, size=(n, 4, 4, 3)).astype(np.float32)
        samples = []
        for i in range(n):
            qr, qc, together = 2 * rng.integers(2), 2 * rng.integers(2), bool(rng.random() < 0.5)
            if together:
                feats[i, qr + rng.integers(2), qc + rng.integers(2), 0] += 2.0
            else:
                r = qr + rng.integers(2)
                feats[i, r, qc, 0] += 1.0
                feats[i, r, qc + 1, 0] += 1.0
            # a scene record whose pair is together iff `together` (rows/cols of the 8x8 pair grid)
            samples.append({"objects": [], "glyph": None, "pattern": None, "dot": None,
                            "pair": [[0, 0], [0, 1]] if together else [[0, 1], [0, 2]]})
        return torch.from_numpy(feats.reshape(n, 16, 3)), samples

    (xtr, tr), (xte, te) = split(1500), split(400)
    (lin, st) = run_probes(xtr, tr, xte, te, attributes=("pair",), hidden=(0, 32), epochs=30)
    assert lin["probe"] == "linear" and st["probe"] == "set32"
    assert st["accuracy"] > 0.9 and lin["accuracy"] < 0.7  # linear over flat tokens cannot threshold one token
    (_, pooled) = run_probes(pool_grid(xtr, 2), tr, pool_grid(xte, 2), te, attributes=("pair",), hidden=(0, 32),
                             epochs=30)
    assert pooled["accuracy"] < 0.62  # 2x2: both units land in one token either way
