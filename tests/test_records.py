import json
import math

from harness.records import SCHEMA_VERSION, is_done, metric_value, read_record, write_json_atomic


def test_round_trip_keeps_nan(tmp_path):
    rec = {"schema_version": SCHEMA_VERSION, "status": "failed",
           "metrics": [{"task": "vqa", "shots": 0, "metric": "vqa_accuracy", "subset": "all", "value": float("nan"),
                        "stderr": float("nan"), "n": 0}]}
    write_json_atomic(tmp_path / "r" / "record.json", rec)
    back = read_record(tmp_path / "r")
    assert back["status"] == "failed"
    assert math.isnan(metric_value(back, "vqa", 0, "vqa_accuracy"))
    assert not is_done(tmp_path / "r")
    assert list((tmp_path / "r").iterdir()) == [tmp_path / "r" / "record.json"]  # no temp files left


def test_is_done_only_for_ok(tmp_path):
    write_json_atomic(tmp_path / "record.json", {"schema_version": SCHEMA_VERSION, "status": "ok", "metrics": []})
    assert is_done(tmp_path)
    (tmp_path / "record.json").write_text('{"schema_version": 1, "status": "ok"')  # truncated file
    assert not is_done(tmp_path)


def test_missing_metric_is_nan_not_zero(tmp_path):
    assert math.isnan(metric_value({"metrics": []}, "caption", 0, "cider"))
    assert json.loads('{"a": NaN}')["a"] != 0


def test_train_flops_hand_computed():
    from harness.launch import train_flops

    rec = {"model": {"params": {"llm": 1000}, "connector_flops_per_image": 50},
           "train": {"tokens": 10, "images": 4, "stages": [{"trainable": ["connector", "llm"]}]}}
    assert train_flops(rec) == 6 * 1000 * 10 + 3 * 50 * 4
    rec["train"]["stages"] = [{"trainable": ["connector"]}]
    assert train_flops(rec) == 4 * 1000 * 10 + 3 * 50 * 4
