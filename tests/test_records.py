import json
import math
from pathlib import Path

import pytest

from harness.records import SCHEMA_VERSION, Record, is_done, metric_value, read_record, write_json_atomic

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"


def test_round_trip_keeps_nan(tmp_path):
    rec = {"schema_version": SCHEMA_VERSION, "cfg_hash": "a", "status": "failed",
           "metrics": [{"task": "vqa", "shots": 0, "metric": "vqa_accuracy", "subset": "all", "value": float("nan"),
                        "stderr": float("nan"), "n": 0}]}
    write_json_atomic(tmp_path / "r" / "record.json", rec)
    back = read_record(tmp_path / "r")
    assert back.status == "failed" and back.model is None and back.evaluations == []
    assert math.isnan(metric_value(back, "vqa", 0, "vqa_accuracy"))
    assert not is_done(tmp_path / "r")
    assert list((tmp_path / "r").iterdir()) == [tmp_path / "r" / "record.json"]  # no temp files left


def test_is_done_only_for_ok(tmp_path):
    write_json_atomic(tmp_path / "record.json", {"schema_version": SCHEMA_VERSION, "cfg_hash": "a", "status": "ok"})
    assert is_done(tmp_path)
    (tmp_path / "record.json").write_text('{"schema_version": 1, "status": "ok"')  # truncated file
    assert not is_done(tmp_path)


def test_missing_metric_is_nan_not_zero(tmp_path):
    assert math.isnan(metric_value(Record(cfg_hash="a", status="ok"), "caption", 0, "cider"))
    assert json.loads('{"a": NaN}')["a"] != 0


def test_train_flops_hand_computed():
    from harness.launch import train_flops

    model = {"params": {"llm": 1000}, "connector_flops_per_image": 50}
    trained = {"tokens": 10, "images": 4, "stages": [{"trainable": ["connector", "llm"]}]}
    assert train_flops(model, trained) == 6 * 1000 * 10 + 3 * 50 * 4
    trained["stages"] = [{"trainable": ["connector"]}]
    assert train_flops(model, trained) == 4 * 1000 * 10 + 3 * 50 * 4


def test_running_record_of_a_dead_process_reads_as_interrupted():
    import os
    import socket
    import subprocess
    import sys

    from harness.records import effective_status

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid no longer exists
    here = socket.gethostname()
    def rec(status, **kw):
        return Record(cfg_hash="a", status=status, **kw)

    assert effective_status(rec("running", host=here, pid=gone.pid)) == "interrupted"
    assert effective_status(rec("running", host=here, pid=os.getpid())) == "running"
    # another host (a SLURM node) cannot be checked from here; finished statuses are never reinterpreted
    assert effective_status(rec("running", host=here + "-other", pid=gone.pid)) == "running"
    assert effective_status(rec("ok", host=here, pid=gone.pid)) == "ok"
    assert effective_status(rec("running")) == "running"  # records written before pids were kept


def test_summary_lists_interrupted_failed_and_eval_failures():
    from harness.analysis.summary import sweep_problems

    recs = [Record(cfg_hash="a", status="ok", evaluations=[{"failed": []}]),
            Record(cfg_hash="b", status="failed", error="ConfigError: bad\nmore"),
            Record(cfg_hash="c", status="ok", evaluations=[{"failed": ["text:arc_easy"]}]),
            Record(cfg_hash="d", status="preempted")]
    lines = sweep_problems(recs)
    assert len(lines) == 3
    assert "failed: b" in lines[0] and lines[0].endswith("ConfigError: bad")
    assert "eval failed: c" in lines[1] and "text:arc_easy" in lines[1] and "harness.evaluate c" in lines[1]
    assert "preempted: d" in lines[2]


def test_summary_shows_tsv_benchmarks_and_data_sources(tmp_path):
    from harness.analysis.summary import write_summary

    base = {"cfg_hash": "a", "status": "ok", "choices": {"connector": "avg_pool"}, "resolution": 224,
            "visual_tokens": 16, "seed": 0, "step_budget": 8, "config": {}, "model": {}, "train": {},
            "data": {"image_size": 128, "sources": {"caption": {"format": "webdataset", "root": "data",
                                                                "path": "photos/{0..1}.tar", "records": 23,
                                                                "skipped": {"undecodable_image": 1},
                                                                "stored_px": 224},
                                         "text": {"format": "text_jsonl", "root": "world", "path": "t.jsonl",
                                                  "records": 5, "skipped": {}, "stored_px": None}}},
            "metrics": [{"task": "caption", "shots": 0, "metric": "cider", "subset": "all", "value": 0.5},
                        {"task": "my_photos", "shots": 0, "metric": "vqa_accuracy", "subset": "all", "value": 0.25},
                        {"task": "my_photos", "shots": 4, "metric": "vqa_accuracy", "subset": "all", "value": 0.75}]}
    md = write_summary([Record(**base)], tmp_path, "t")
    header = md.splitlines()[4]
    assert "my_photos" in header and "0.25 " in md and "0.75" not in md  # the 0-shot table
    assert "caption <- webdataset data:photos/{0..1}.tar: 23 records, skipped {'undecodable_image': 1}" in md
    assert "stored at 224 px" in md
    assert "text <- text_jsonl world:t.jsonl: 5 records, skipped nothing\n" in md  # no images, no size


def test_machine_info_names_what_decides_bitwise_reproducibility():
    import torch

    from harness.records import ISA_FLAGS, machine_info

    info = machine_info()
    assert info["cpu"] and info["cores"] >= 1 and info["torch_threads"] == torch.get_num_threads()
    assert set(info["isa"]) <= set(ISA_FLAGS) and info["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_every_shipped_record_loads_into_the_typed_record():
    """Old layouts (no machine, pid, weights or evaluations yet) read with those sections empty, never guessed."""
    paths = sorted(REFERENCE.rglob("record.json"))
    assert len(paths) >= 70
    for p in paths:
        rec = read_record(p.parent)
        assert rec.cfg_hash == p.parent.name and rec.status == "ok" and rec.metrics
        assert Record.from_json(json.loads(json.dumps(rec.to_json())), p) == rec  # to_json round-trips


def test_unknown_fields_and_versions_fail_with_the_file_named(tmp_path):
    base = {"schema_version": SCHEMA_VERSION, "cfg_hash": "a", "status": "ok"}
    for bad, msg in (({**base, "scores": []}, "unknown record fields scores"),
                     ({**base, "schema_version": 99}, "record schema 99"),
                     ({"schema_version": SCHEMA_VERSION, "status": "ok"}, "lacks cfg_hash")):
        write_json_atomic(tmp_path / "record.json", bad)
        with pytest.raises(ValueError, match=msg) as err:
            read_record(tmp_path)
        assert str(tmp_path) in str(err.value)
        assert not is_done(tmp_path)
