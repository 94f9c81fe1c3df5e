"""The sweep budget reader sums per-stage walls from records and lists each one-off artifact once."""

import json

import pytest

from harness.analysis.budget import budget


def _record(root, h, start, end, build, train, enc, ev, llm_art):
    rec = {"schema_version": 1, "cfg_hash": h, "status": "ok", "choices": {"connector": h}, "threads": 1,
           "step_budget": 600,
           "started_at": start, "finished_at": end, "build_wall_s": build, "eval_wall_s": ev,
           "wall_s": build + train + ev, "train": {"wall_s": train, "features_encode_s": enc},
           "world": {"hash": "w1", "generation_s": 70.0},
           "model": {"encoder_pretraining": {"artifact": "/c/encoders/clip_tiny-1", "build_wall_s": 300.0},
                     "hr_encoder_pretraining": None,
                     "llm_pretraining": {"artifact": f"/c/llm/{llm_art}", "build_wall_s": 80.0}}}
    (root / h).mkdir(parents=True)
    (root / h / "record.json").write_text(json.dumps(rec))


def test_budget_sums_stages_and_dedups_artifacts(tmp_path):
    _record(tmp_path, "a", "2026-01-01T10:00:00+00:00", "2026-01-01T10:05:00+00:00", 10.0, 100.0, 20.0, 30.0, "l1")
    _record(tmp_path, "b", "2026-01-01T10:01:00+00:00", "2026-01-01T10:10:00+00:00", 5.0, 200.0, 0.0, 40.0, "l1")
    out = budget(tmp_path)
    assert out["totals"] == {"build_s": 15.0, "features_encode_s": 20.0, "train_s": 300.0, "eval_s": 70.0,
                             "total_s": 385.0, "sweep_span_s": 600.0}
    assert sorted(out["one_off"]) == ["clip_tiny-1", "l1", "world-w1"]
    assert out["one_off"]["world-w1"] == {"stage": "world generation", "wall_s": 70.0}


def test_budget_without_records_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="no record.json under"):
        budget(tmp_path)
