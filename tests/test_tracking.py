"""Experiment trackers (harness.tracking): what a micro point sends to TensorBoard, MLflow and W&B, read back with
each tool's own reader; a resumed point continuing the same tracker runs; a missing package refused before anything
is built; the ``logger`` section kept out of the config hash.

Each backend's test is skipped, with the install line, where its package is missing (``pip install -e '.[tracking]'``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import signal
from pathlib import Path

import pytest

from harness.config.schema import ConfigError
from harness.tracking import base
from tests.test_bad_configs import compose_micro
from tests.test_resume import poisoned_forward  # noqa: F401 - fixture

ALL = "logger=[jsonl,tensorboard,mlflow,wandb]"
MISSING = [p for p in ("tensorboard", "mlflow", "wandb") if importlib.util.find_spec(p) is None]
needs_all = pytest.mark.skipif(bool(MISSING), reason=f"pip install {' '.join(MISSING)} (the tracking extra)")
VQA = "eval/vqa/0shot/all/vqa_accuracy"


@pytest.fixture(autouse=True)
def private_wandb(tmp_path, monkeypatch):
    """W&B's own settings and cache stay inside the test's folder; no account, no network."""
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


# -- readers: each backend's files, through its own library --------------------------------------------------------
def tb_read(log_dir: Path) -> tuple[dict[str, list[tuple[int, float]]], dict[str, str], list[str]]:
    """Scalars (tag -> [(step, value)]), texts (tag -> last text) and image tags of a TensorBoard run folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    texts = {tag.removesuffix("/text_summary"): acc.Tensors(tag)[-1].tensor_proto.string_val[0].decode()
             for tag in acc.Tags()["tensors"]}  # add_text is stored as a tensor summary
    return scalars, texts, acc.Tags()["images"]


def wandb_records(path: Path):
    """The protobuf records of an offline ``.wandb`` file (W&B's LevelDB-style log: a 7-byte file header, then
    32 KiB blocks of chunks, each with a 7-byte header: crc32, length, type full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, buf, block = 7, b"", 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full, or the last chunk of a record
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def wandb_run(run_folder: Path) -> dict:
    """id, config and history rows (``_step`` -> values) of one offline run folder."""
    (path,) = run_folder.glob("*.wandb")
    out: dict = {"id": None, "config": {}, "history": {}}
    for rec in wandb_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["id"], out["group"] = rec.run.run_id, rec.run.run_group
        elif kind == "config":
            out["config"] |= {i.key: json.loads(i.value_json) for i in rec.config.update}
        elif kind == "history":
            row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
            out["history"].setdefault(row["_step"], {}).update(row)
    return out


def mlflow_client(state: dict):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=state["tracking_uri"])


def train_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


# -- tests ----------------------------------------------------------------------------------------------------------
@needs_all
def test_every_logger_gets_config_scalars_metrics_and_samples(shared_cache, tmp_path):
    from harness.launch import run_point

    rec = run_point(compose_micro([ALL, "runtime.log_every=2", "logger.group=study1", "logger.samples=3"], tmp_path,
                                  shared_cache))
    assert rec.status == "ok", rec.error
    run_dir = tmp_path / "runs" / rec.cfg_hash
    log = train_log(run_dir)
    assert [r["step"] for r in log] == [2, 4, 6, 8]  # smoke: 8 steps, one stage, so step = global step
    assert set(log[0]) == {"stage", "step", "loss", "lr", "realised_mixture", "realised_window", "padding_fraction",
                           "s_per_step"}  # jsonl: the format the loop always wrote
    losses = [(r["step"], r["loss"]) for r in log]
    vqa = next(m["value"] for m in rec.metrics if base.metric_name(m) == VQA)
    state = json.loads((run_dir / base.STATE_FILE).read_text())["backends"]
    assert set(state) == {"tensorboard", "mlflow", "wandb"}

    # TensorBoard: <results>/tensorboard/<group>/<hash>
    log_dir = Path(state["tensorboard"]["log_dir"])
    assert log_dir == tmp_path / "tensorboard" / "study1" / rec.cfg_hash
    scalars, texts, images = tb_read(log_dir)
    assert [(s, pytest.approx(v)) for s, v in scalars["train/loss"]] == losses
    assert scalars[VQA] == [(8, pytest.approx(vqa))]
    assert {"train/lr/connector_encoder", "train/lr/llm", "train/mixture/caption", "train/tokens_per_s",
            "train/samples_per_s", "train/s_per_step"} <= set(scalars)
    assert all(v > 0 for _, v in scalars["train/tokens_per_s"])
    assert {"config", "choices", "samples/vqa_0shot_t0", "samples/caption_0shot_t0", "status"} <= set(texts)
    first = json.loads((run_dir / "predictions" / "vqa_0shot_t0.jsonl").read_text().splitlines()[0])
    assert first["prompt"] in texts["samples/vqa_0shot_t0"] and texts["status"] == "ok"
    assert '"train.batch_size": 8' in texts["config"]
    assert {f"samples/{f}/{i}" for f in ("vqa_0shot_t0", "caption_0shot_t0") for i in range(3)} == set(images)

    # MLflow: experiment = group, params = the flattened config, metrics with their steps, samples as artifacts
    client = mlflow_client(state["mlflow"])
    run = client.get_run(state["mlflow"]["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == rec.cfg_hash
    assert client.get_experiment(run.info.experiment_id).name == "study1"
    assert run.data.params["train.batch_size"] == "8" and run.data.params["connector.name"] == "c_abstractor"
    assert run.data.params["train.stages.0.lr"] == str(rec.config["train"]["stages"][0]["lr"])
    assert run.data.tags["choice.connector"] == "c_abstractor" and run.data.tags["mm_ablate.status"] == "ok"
    history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert sorted(history) == [(s, pytest.approx(v)) for s, v in losses]
    assert run.data.metrics[VQA] == pytest.approx(vqa)
    assert {m["metric"] for m in rec.metrics} <= {k.rsplit("/", 1)[1] for k in run.data.metrics if
                                                       k.startswith("eval/")}
    sample = Path(client.download_artifacts(run.info.run_id, "samples/vqa_0shot_t0.md", str(tmp_path / "dl")))
    assert sample.read_text().count("\n") == 2 + 3 and first["prompt"] in sample.read_text()
    pngs = [a.path for a in client.list_artifacts(run.info.run_id, "samples/vqa_0shot_t0")]
    assert pngs == [f"samples/vqa_0shot_t0/{i}.png" for i in range(3)]

    # W&B offline: one run folder under <results>/wandb, grouped by the sweep id
    (folder,) = (tmp_path / "wandb").glob("offline-run-*")
    wb = wandb_run(folder)
    assert wb["id"] == state["wandb"]["id"] and folder.name.endswith(wb["id"]) and wb["group"] == "study1"
    assert wb["config"]["train.batch_size"] == 8 and wb["config"]["choice.connector"] == "c_abstractor"
    assert sorted((s, row["train/loss"]) for s, row in wb["history"].items()) == [(s, pytest.approx(v))
                                                                                  for s, v in losses]
    assert wb["history"][8][VQA] == pytest.approx(vqa)
    assert (folder / "files" / "media" / "table" / "samples").is_dir()
    shown = wb["history"][8]
    assert shown["sample_images/vqa_0shot_t0/count"] == 3 and shown["sample_images/caption_0shot_t0/count"] == 3
    assert shown["sample_images/vqa_0shot_t0/captions"][0] == f"{first['prompt']} -> {first['prediction']}"
    assert all((folder / "files" / f).is_file() for f in shown["sample_images/vqa_0shot_t0/filenames"])


@needs_all
def test_resumed_point_continues_the_same_tracker_runs(shared_cache, tmp_path, poisoned_forward):  # noqa: F811
    from harness.launch import run_point

    over = [ALL, "train.stages.0.steps=8", "runtime.checkpoint_every=2", "runtime.log_every=1", "runtime.device=cpu"]
    poisoned_forward(5, "sigterm")  # preempted in step 5: checkpoint after it, record 'preempted', exit
    with pytest.raises(SystemExit) as stop:
        run_point(compose_micro(over, tmp_path, shared_cache))
    assert stop.value.code == 128 + signal.SIGTERM
    (run_dir,) = (tmp_path / "runs").glob("*")
    first = json.loads((run_dir / base.STATE_FILE).read_text())["backends"]
    assert mlflow_client(first["mlflow"]).get_run(first["mlflow"]["run_id"]).info.status == "KILLED"

    poisoned_forward(None)
    rec = run_point(compose_micro(over, tmp_path, shared_cache))
    assert rec.status == "ok" and rec.resumed_from_step == 5
    again = json.loads((run_dir / base.STATE_FILE).read_text())["backends"]
    assert again == first  # the same tracker runs, not new ones
    losses = [(r["step"], r["loss"]) for r in train_log(run_dir)]
    assert [s for s, _ in losses] == list(range(1, 9))

    client = mlflow_client(first["mlflow"])
    run = client.get_run(first["mlflow"]["run_id"])
    assert run.info.status == "FINISHED"
    assert len(client.search_runs([run.info.experiment_id])) == 1
    history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss"))
    assert history == [(s, pytest.approx(v)) for s, v in losses]  # each step once, across the two processes

    scalars, _, _ = tb_read(Path(first["tensorboard"]["log_dir"]))
    assert len(list(Path(first["tensorboard"]["log_dir"]).glob("events.out.tfevents.*"))) == 2
    assert [(s, pytest.approx(v)) for s, v in scalars["train/loss"]] == losses

    folders = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and all(f.name.endswith(first["wandb"]["id"]) for f in folders)
    runs = [wandb_run(f) for f in folders]
    assert {r["id"] for r in runs} == {first["wandb"]["id"]}
    steps = [sorted(s for s, row in r["history"].items() if "train/loss" in row) for r in runs]
    assert steps == [[1, 2, 3, 4, 5], [6, 7, 8]]


def test_missing_tracker_package_fails_validation_with_the_install_line(tmp_path, monkeypatch):
    from harness.config.validate import validate
    from harness.tracking import check

    cfg = compose_micro(["logger=[tensorboard,wandb]"], tmp_path, tmp_path)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    msg = str(err.value)
    assert "\n" not in msg and "logger=wandb" in msg and "pip install wandb" in msg
    check(compose_micro(["logger=[tensorboard]"], tmp_path, tmp_path))  # the others are fine
    check(compose_micro([], tmp_path, tmp_path))  # the default, jsonl, needs nothing


def test_logger_settings_never_change_the_config_hash(tmp_path):
    from harness.config.hashing import point_identity

    def h(over):
        return point_identity(compose_micro(over, tmp_path, tmp_path))[2]

    plain = h([])
    assert h([ALL, "logger.wandb.mode=online", "logger.group=x", "logger.samples=0",
              "logger.mlflow.tracking_uri=sqlite:///x.db", "logger.tensorboard.dir=/elsewhere"]) == plain
    assert h(["logger=[tensorboard]"]) == plain
    assert h(["train.batch_size=4"]) != plain  # the check can fail: a hashed setting moves it


def test_bad_logger_values_are_one_line(tmp_path):
    from harness.config.validate import validate

    for over, part in ((["logger=[wandb]", "logger.wandb.mode=onlin"], "logger.wandb.mode must be one of"),
                       (["logger.samples=-1"], "logger.samples must be >= 0")):
        with pytest.raises(ConfigError, match=part) as err:
            validate(compose_micro(over, tmp_path, tmp_path))
        assert "\n" not in str(err.value)
    with pytest.raises(Exception, match="tensorbord"):  # an unknown backend fails while composing
        compose_micro(["logger=[tensorbord]"], tmp_path, tmp_path)


def test_scalars_from_a_log_line():
    rec = {"stage": "pretrain", "step": 4, "loss": 2.5, "lr": [0.002, 0.001],
           "realised_mixture": {"caption": 0.5, "text": 0.5}, "realised_window": {"caption": 1.0, "text": 0.0},
           "padding_fraction": 0.1, "s_per_step": 0.2}
    delta = {"steps": 2, "sequences": 16, "images": 12, "tokens": 1000, "loss_tokens": 900}
    out = base.train_scalars(rec, ["connector+encoder", "llm"], delta, steps=2, dt=0.5)
    assert out["train/lr/connector+encoder"] == 0.002 and out["train/lr/llm"] == 0.001
    assert (out["train/tokens_per_s"], out["train/samples_per_s"], out["train/images_per_s"]) == (2000, 32, 24)
    assert out["train/mixture/caption"] == 0.5 and out["train/mixture_window/text"] == 0.0
    assert math.isnan(base.train_scalars(rec, ["llm"], delta, steps=0, dt=0.0)["train/tokens_per_s"])
    assert base.scalar_key("train/lr/connector+encoder") == "train/lr/connector_encoder"
    assert base.metric_name({"task": "textcore", "shots": 0, "subset": "world_textqa", "metric": "exact_match"}) == \
        "eval/textcore/0shot/world_textqa/exact_match"  # a record written before TextCore entries had a suite
    assert base.metric_name({"task": "world_textqa", "suite": "textcore", "shots": 0, "subset": "all",
                             "metric": "exact_match"}) == "eval/textcore/0shot/world_textqa/exact_match"
    flat = base.flatten({"train": {"stages": [{"lr": 1e-3, "trainable": ["llm"]}], "x": None}, "tags": []})
    assert flat == {"train.stages.0.lr": 1e-3, "train.stages.0.trainable": '["llm"]', "train.x": "null", "tags": "[]"}


def test_wandb_mode_follows_WANDB_MODE_unless_set(tmp_path, monkeypatch):
    assert compose_micro(["logger=[wandb]"], tmp_path, tmp_path).logger.wandb.mode == "offline"  # no account needed
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert compose_micro(["logger=[wandb]"], tmp_path, tmp_path).logger.wandb.mode == "disabled"
    assert compose_micro(["logger=[wandb]", "logger.wandb.mode=online"], tmp_path, tmp_path).logger.wandb.mode == \
        "online"
