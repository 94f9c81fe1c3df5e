"""Connector probes (harness.diagnostics.probe_connector): the readouts differ where they should, and labels are
right."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from harness.diagnostics.probe_connector import ATTRIBUTES, Readout, probe_labels, run_connector_probes
from harness.models.connectors import CONNECTORS, FeatureSpec, build_connector
from harness.models.vlm import VisualInputs
from tests.conftest import MICRO, ROOT

G, D = 4, 8


def _world(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, list[dict]]:
    """One object per scene in a random cell of a G x G token grid; its cell is marked in channel 0 of that token.
    The label ``position`` is the cell, so only a readout that knows which token is which can answer."""
    feats = torch.from_numpy(rng.normal(size=(n, G * G, D)).astype(np.float32))
    samples = []
    for i in range(n):
        cell = int(rng.integers(G * G))
        feats[i, cell, 0] += 6.0
        samples.append({"objects": [{"position": str(cell), "shape": "circle", "colour": "red"}], "glyph": None})
    return feats, samples


def test_only_the_position_aware_readout_finds_where_the_object_is():
    rng = np.random.default_rng(0)
    (tr_x, tr_s), (te_x, te_s) = _world(1500, rng), _world(300, rng)
    cfg = CONNECTORS.entry("linear").cfg_cls(name="linear", num_tokens=G * G)
    conn = build_connector(cfg, FeatureSpec(D, (G, G)), 16)  # per-token linear map: token k stays at position k
    rows = run_connector_probes(conn, lambda idx: VisualInputs(tr_x[idx]), tr_s, lambda idx: VisualInputs(te_x[idx]),
                                te_s, attributes=("position", "glyph"), steps=400, lr=1e-2, log=lambda _: None)
    by = {(r["attribute"], r["readout"]): r for r in rows}
    flat, mean = by["position", "flat"], by["position", "mean"]
    assert flat["accuracy"] > 0.9 and flat["n_test"] == 300
    # The average of per-token linear maps is the same linear map of the average: the marker's cell is gone.
    assert mean["accuracy"] < mean["majority_baseline"] + 0.1
    assert np.isnan(by["glyph", "mean"]["accuracy"]) and by["glyph", "mean"]["status"] == "no glyph labels in the train split"
    assert next(conn.parameters()).grad is None  # every fit trains a copy; the caller's connector is untouched


def test_labels_use_single_object_scenes_for_object_attributes():
    samples = [{"objects": [{"shape": "circle", "colour": "red", "position": "top left"}], "glyph": "4"},
               {"objects": [{"shape": "cross", "colour": "blue", "position": "middle"}] * 2, "glyph": None}]
    assert probe_labels(samples, "shape") == ([0], ["circle"])
    assert probe_labels(samples, "position") == ([0], ["top left"])
    assert probe_labels(samples, "glyph") == ([0], ["4"])
    assert probe_labels(samples, "count") == ([0, 1], ["1", "2"])
    with pytest.raises(ValueError, match="available: " + ", ".join(ATTRIBUTES)):
        probe_labels(samples, "size")
    with pytest.raises(ValueError, match="available: mean, flat"):
        Readout("max", 4, 8, 3)


def test_probe_connector_command_writes_json(sweep_env, tmp_path):
    over = [o for o in MICRO if not o.startswith("runtime.")]
    res = subprocess.run([sys.executable, "-m", "harness.bench", "probe-connector", "--steps", "3", "--threads", "1",
                          "--out", str(tmp_path), *over, "connector=avg_pool"],
                         env=sweep_env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    (out,) = tmp_path.glob("probe-connector-*.json")
    result = json.loads(out.read_text())
    assert result["connector"] == "avg_pool" and result["steps"] == 3
    assert [(r["attribute"], r["readout"]) for r in result["rows"]] == [(a, k) for a in ATTRIBUTES for k in ("mean", "flat")]
    assert all(0 <= r["accuracy"] <= 1 for r in result["rows"] if "status" not in r)
