"""``python -m harness.bench machines``: the same points (config hashes) from two results folders, compared per
setup within their seed intervals. Written records, no training."""

from __future__ import annotations

import pytest

from harness.diagnostics.compare_machines import compare, markdown
from tests.analysis_records import Writer, scores

SEEDS = {"avg_pool": (0.50, 0.52, 0.48), "mining": (0.60, 0.66, 0.63)}


def _folder(root, shift: dict[str, float]):
    w = Writer(root)
    for conn, values in SEEDS.items():
        for seed, v in enumerate(values):
            w.record(cfg_hash=f"{conn}-{seed}", connector=conn, seed=seed, scores=scores({0: v + shift.get(conn, 0.0)}))
    return root


def test_same_points_elsewhere_within_noise_and_a_real_shift_found(tmp_path):
    a = _folder(tmp_path / "a", {})
    b = _folder(tmp_path / "b", {"avg_pool": 0.003, "mining": 0.2})  # mining moved well beyond its seed spread
    result = compare(a, b, shots=0)
    assert result["points"] == 6 and result["comparisons"] == 4  # 2 setups x (caption, vqa); averages left out
    by = {(r["connector"], r["task"]): r for r in result["rows"]}
    assert by["avg_pool", "vqa"]["zero_in_welch"] and by["avg_pool", "vqa"]["b_mean_within_a"]
    assert by["avg_pool", "vqa"]["n_a"] == by["avg_pool", "vqa"]["n_b"] == 3
    assert not by["mining", "vqa"]["zero_in_welch"] and not by["mining", "vqa"]["b_mean_within_a"]
    assert by["mining", "vqa"]["b_minus_a"] == pytest.approx(0.2)
    assert result["zero_in_welch"] == 2 and "(excludes 0)" in markdown(result)


def test_no_shared_point_says_so(tmp_path):
    a = _folder(tmp_path / "a", {})
    Writer(tmp_path / "b", start=100).record(connector="avg_pool", scores=scores(0.5))
    with pytest.raises(SystemExit, match="no finished point is in both"):
        compare(a, tmp_path / "b")
