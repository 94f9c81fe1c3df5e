"""MLflow: one run per point in experiment ``<sweep id>`` (``mm-ablate`` outside a multirun).

The default store is a file store at ``<results_dir>/mlruns``: parallel points (``hydra/launcher=local``, SLURM
arrays) each write their own run folder, where a fresh SQLite store makes every process race to create its tables
(MLflow 3 fails the losers with "duplicate column"). MLflow 3 keeps the file store in maintenance mode and refuses it
unless ``MLFLOW_ALLOW_FILE_STORE=true``, which is set for this default only; any other ``tracking_uri``
(``sqlite:///mlflow.db``, an ``http://`` server) is used as given.
"""

from __future__ import annotations

import os
import time
from typing import Any

from harness.tracking.base import Backend, RunContext, sample_markdown, scalar_key

DEFAULT_EXPERIMENT = "mm-ablate"
BATCH = 100  # MLflow's limit of params (and of metrics: 1000) per log_batch call
MAX_PARAM = 6000  # characters of a param value MLflow accepts


class MlflowBackend(Backend):
    name = "mlflow"

    def __init__(self, cfg):
        self.uri, self.experiment = cfg.tracking_uri, cfg.experiment

    def start(self, ctx: RunContext, state: dict | None) -> dict:
        from mlflow.tracking import MlflowClient

        uri = self.uri or (ctx.results_dir / "mlruns").resolve().as_uri()
        if not self.uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = client = MlflowClient(tracking_uri=uri)
        if state and state.get("tracking_uri") == uri:
            self.run_id = state["run_id"]
            client.update_run(self.run_id, status="RUNNING")
            return state
        name = self.experiment or ctx.group or DEFAULT_EXPERIMENT
        tags = {"mm_ablate.cfg_hash": ctx.cfg_hash, "mm_ablate.run_dir": str(ctx.run_dir)}
        tags |= {f"mm_ablate.tag.{t}": "1" for t in ctx.tags}
        run = client.create_run(_experiment_id(client, name), run_name=ctx.cfg_hash, tags=tags)
        self.run_id = run.info.run_id
        return {"tracking_uri": uri, "experiment": name, "run_id": self.run_id}

    def params(self, flat: dict[str, Any], choices: dict[str, str]) -> None:
        from mlflow.entities import Param, RunTag

        params = [Param(scalar_key(k), str(v)[:MAX_PARAM]) for k, v in flat.items()]
        for i in range(0, len(params), BATCH):
            self.client.log_batch(self.run_id, params=params[i : i + BATCH])
        self.client.log_batch(self.run_id, tags=[RunTag(f"choice.{k}", str(v)) for k, v in choices.items()])

    def scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ms = int(time.time() * 1000)
        metrics = [Metric(k, v, ms, step) for k, v in values.items()]
        for i in range(0, len(metrics), BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + BATCH])

    def samples(self, name: str, rows: list[dict], step: int) -> None:
        self.client.log_text(self.run_id, sample_markdown(rows), f"samples/{name}.md")
        for i, r in enumerate(rows):
            if r.get("pixels") is not None:
                self.client.log_image(self.run_id, r["pixels"], f"samples/{name}/{i}.png")

    def close(self, status: str) -> None:
        self.client.set_tag(self.run_id, "mm_ablate.status", status)
        end = {"ok": "FINISHED", "preempted": "KILLED"}.get(status, "FAILED")
        self.client.set_terminated(self.run_id, status=end)


def _experiment_id(client, name: str) -> str:
    """The experiment's id, created if missing; parallel points may race to create it, so a loser looks it up."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:  # RESOURCE_ALREADY_EXISTS: a parallel point created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id
