"""``run_point(cfg)``: one sweep point, as two halves of readable steps.

prepare: resolve -> hash what the point trains (``eval`` excluded) -> if a successful record exists, score only the
eval units it lacks (harness.evaluate) and return.
execute: validate -> data (world, corpus) -> build (LLM, encoders, connector, VLM) -> train (resuming from the run
folder's checkpoint if one is there) -> keep the trained weights (``weights.pt``; ``runtime.save_weights=false``
drops them) -> evaluate -> write ``results/runs/<hash>/record.json`` (and delete the checkpoint once the record
says ok).

A failing point writes a record with ``status: failed``, the error and NaN metrics, and returns normally, so the rest
of a multirun goes on: an invalid configuration prints one line, any other error its traceback. A config that cannot
be resolved (a value nobody set) has no hash to record under and stops the job. A stop signal during training
(preemption) checkpoints, records the point as ``preempted`` with the resume instructions, and ends the process. Hydra
composes each job's config when the job starts, so the resolved config is hashed and stored per run (editing YAML
mid-sweep cannot go unnoticed).
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness.config.hashing import point_identity, run_folder
from harness.config.schema import ConfigError
from harness.config.validate import label_choices, validate
from harness.models.build import build_vlm
from harness.records import (
    RECORD,
    WEIGHTS,
    Record,
    git_info,
    is_done,
    library_versions,
    machine_info,
    read_record,
    write_json_atomic,
)
from harness.runtime import pick_device, seed_everything, set_offline, set_threads

CHOICE_GROUPS = ("world", "encoder", "hr_encoder", "connector", "llm", "data", "train", "eval")


def hydra_choices() -> dict[str, str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        choices = HydraConfig.get().runtime.choices
        return {k: v for k, v in choices.items() if k in CHOICE_GROUPS or k == "experiment"}
    except (ValueError, ImportError):  # not running under Hydra (tests calling run_point directly)
        return {}


def model_summary(vlm, llm, encoder_meta: dict, hr_meta: dict | None) -> dict[str, Any]:
    return {
        "params": vlm.param_counts(),
        "visual_tokens_emitted": vlm.num_visual_tokens,
        "encoder_patches": vlm.encoder.spec.num_patches,
        "encoder_grid": list(vlm.encoder.spec.grid),
        "connector_flops_per_image": vlm.connector.flops_per_image(),
        # retrieval: CLIP-style encoders; next-patch / mean-prediction MSE: AIM-style (held-out probes of each)
        "encoder_pretraining": {k: encoder_meta.get(k) for k in ("artifact", "init", "objective", "final_loss",
                                                                  "retrieval_top1_256_after", "next_patch_mse_val",
                                                                  "mean_prediction_mse_val", "images_seen",
                                                                  "build_wall_s")},
        "hr_encoder_pretraining": None if hr_meta is None else {k: hr_meta.get(k) for k in (
            "artifact", "init", "final_loss", "retrieval_top1_256_after", "build_wall_s")},
        "llm_pretraining": {k: llm.meta.get(k) for k in ("artifact", "init", "first_loss", "final_loss", "tokens_seen",
                                                         "build_wall_s")},
    }


def run_point(cfg: DictConfig) -> Record:
    """One sweep point: :func:`prepare` (resolve, hash, skip or evaluate if trained), then :func:`execute`."""
    t0 = time.time()
    point = prepare(cfg)
    if isinstance(point, Record):  # trained already: the record, evaluated on any units it lacked
        return point
    return execute(cfg, *point, t0=t0)


def prepare(cfg: DictConfig) -> Record | tuple[str, Path, dict[str, Any], int]:
    """Resolve and hash the point. A point already trained returns its record (after scoring the eval units the
    record does not hold yet); otherwise ``(hash, run folder, resolved config, threads)`` for :func:`execute`."""
    set_offline()
    threads = set_threads(cfg.runtime.threads)
    # 1. resolve and 2. hash: the rules are harness.config.hashing's
    resolved, needs_hr, _ = point_identity(cfg)
    h, run_dir = run_folder(Path(cfg.paths.runs_dir).expanduser(), resolved, needs_hr)
    _write_ref(h, run_dir)
    if is_done(run_dir) and not cfg.runtime.rerun:  # 3. trained: skip, or evaluate what the record lacks
        return _evaluate_trained(cfg, h, run_dir)
    return h, run_dir, resolved, threads


def _evaluate_trained(cfg: DictConfig, h: str, run_dir: Path) -> Record:
    from harness.evaluate import EvaluateError, evaluate_units, missing_units
    from harness.train import distributed

    record = read_record(run_dir)
    try:
        _, todo, _ = missing_units(record, cfg.eval)
    except ConfigError as err:
        todo, record = [], _eval_failed(run_dir, record, f"invalid eval config: {err}")
    if not todo:
        print(f"[run] {h}: a successful record exists, skipping ({run_dir / RECORD}); runtime.rerun=true retrains")
        return record
    if distributed.launched_world()[0] != 0:  # evaluation is rank 0's
        return record
    print(f"[run] {h}: trained already; scoring the eval units its record lacks ({', '.join(todo)})", flush=True)
    try:
        return evaluate_units(run_dir, record, cfg.eval, cfg.runtime, cfg.paths.cache_dir, {"by": "sweep.py"},
                              log=lambda m: print(m, flush=True))
    except EvaluateError as err:
        print(f"[run] {h}: cannot evaluate: {err}", flush=True)
        return _eval_failed(run_dir, record, str(err), todo)


def _eval_failed(run_dir: Path, record: Record, error: str, units: list[str] | None = None) -> Record:
    """Note in the record that asked-for units could not be scored (the sweep then exits non-zero); the trained
    point and its scores stay as they were."""
    record.evaluations.append({
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "by": "sweep.py", "units": units or [],
        "failed": units or ["eval"], "error": error})
    record.write(run_dir)
    return record


def execute(cfg: DictConfig, h: str, run_dir: Path, resolved: dict[str, Any], threads: int,
            t0: float) -> Record:
    """Build, train, evaluate and record a point that has no successful record (resuming a checkpoint if any)."""
    # Imported only past the skip: a finished point should cost a rerun of the sweep as little as possible.
    from harness import tracking
    from harness.data import locations
    from harness.data.preflight import check_sources
    from harness.eval.preflight import preflight
    from harness.evaluate import entry_protocol, protocol
    from harness.models.weights import save_trained
    from harness.train import distributed
    from harness.train.checkpoint import Checkpointer, Preempted
    from harness.train.loop import DivergenceError

    # Under torchrun / SLURM tasks every process runs this function; only rank 0 writes the record and evaluates.
    main = distributed.launched_world()[0] == 0
    ckpt = Checkpointer(run_dir, cfg.runtime.checkpoint_every, h)
    if cfg.runtime.rerun and main:
        ckpt.remove()  # recompute from scratch: an old checkpoint must not be resumed
        (run_dir / WEIGHTS).unlink(missing_ok=True)  # nor old weights outlive the record they belonged to

    choices = hydra_choices()
    choices.setdefault("connector", cfg.connector.name)
    choices.setdefault("encoder", cfg.encoder.name)
    record = Record(
        cfg_hash=h, status="running", choices=label_choices(choices, cfg),  # "<option> (random init)" if random
        resolution=cfg.resolution, visual_tokens=cfg.visual_tokens, seed=cfg.seed, tags=list(cfg.tags),
        config=resolved, git=git_info(), versions=library_versions(),
        # host and pid: a 'running' record whose process is gone reads as interrupted (records.effective_status)
        host=socket.gethostname(), pid=os.getpid(), threads=threads, machine=machine_info(),
        started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        step_budget=sum(s.steps for s in cfg.train.stages),
    )
    if main:
        record.write(run_dir)
    preempted, env, tracker = None, None, None
    try:
        validate(cfg)  # 4. validate: one impossible point of a grid (avg_pool x 15 tokens) fails alone
        check_sources(cfg)  # every data path resolves to files, before minutes of pre-training (no image decoded)
        for note in preflight(cfg.eval):  # every benchmark file and task name, before training (notes: skips)
            if main:  # every rank checks; one says it (torchrun shares the console)
                print(f"[run] {h}: {note}", flush=True)
        resume = ckpt.load()
        if resume:
            record.resumed_from_step = resume["global_step"]
            prog = resume["progress"]
            print(f"[run] {h}: resuming from {ckpt.path}: stage {prog['stage'] + 1}/{len(cfg.train.stages)}, "
                  f"step {prog['step']} (global step {resume['global_step']})", flush=True)
        tracker = tracking.open_run(cfg, h, run_dir, record) if main else None  # continues its runs on resume
        device = pick_device(cfg.runtime.device)
        env = distributed.setup(cfg.runtime.strategy, device)
        device = distributed.rank_device(device, env)
        distributed.check_batch(cfg.train.batch_size, env, cfg.runtime.grad_accum)
        record.distributed = {"strategy": env.strategy, "world_size": env.world_size,
                              "grad_accum": cfg.runtime.grad_accum}
        tb = time.time()
        from harness.data.corpus import build_corpus, run_image_size
        from harness.data.features import bank_for, bank_options
        from harness.eval.runner import Evaluator
        from harness.train.loop import train
        from harness.world import World

        # 5. data, then models: every stage's sources read through their formats (the world's export by default)
        # into one corpus, before the backbones are built, so a source with no valid sample fails in seconds, not
        # after their pre-training. Its image store backs the feature bank, so the bank covers every image used.
        cache = Path(cfg.paths.cache_dir).expanduser()
        world = World.build_or_load(OmegaConf.to_object(cfg.world), cache)
        data_cfgs = locations.stage_data(cfg)
        # own photos are stored at the largest input the run's encoders take (the world keeps its native size)
        corpus = build_corpus(locations.used_data(cfg, data_cfgs), world, cache, cfg.paths.data_dir,
                              image_size=run_image_size(cfg))
        record.data = corpus.summary()  # per source: format, files, records read, skipped by reason
        world, vlm, llm = build_vlm(cfg, device, world)
        vlm.set_trainable(list(cfg.train.stages[0].trainable))  # so the build summary counts what stage 1 trains
        model = model_summary(vlm, llm, getattr(vlm.encoder, "meta", {}),
                              getattr(vlm.hr_encoder, "meta", None) if vlm.hr_encoder else None)
        record.world = {"name": world.cfg.name, "hash": world.hash, "root": str(world.root),
                        "generation_s": world.meta.get("generation_seconds")}
        record.build_wall_s = round(time.time() - tb, 2)
        if main:
            print(f"[run] {h}: {record.choices} params {model['params']}", flush=True)

        # The two random steps each start from the point's seed: the connector's init (build_vlm seeds it) and,
        # here, training (dropout, the data stream), whatever building and the model summary drew in between.
        seed_everything(cfg.seed)
        bank = bank_for(vlm, corpus, "train", cache, online=not cfg.runtime.feature_cache,
                        **bank_options(cfg.runtime))
        trained = train(vlm, corpus, data_cfgs, cfg, cfg.seed, device, run_dir / "train_log.jsonl", bank, ckpt,
                        cfg.runtime.log_every, resume, dist_env=env, tracker=tracker)  # 6. train
        # parameter counts as of the last stage (the trainable count changes with the stages)
        record.model = model | {"params": vlm.param_counts()}
        record.train = trained | {"flops_estimate": train_flops(record.model, trained)}
        if env.strategy == "fsdp":  # evaluate an unsharded copy: gather the trained weights (every rank takes part)
            vlm = _unsharded(cfg, vlm, device, env, world)
        if not env.main:  # the other ranks' work ends with training
            distributed.teardown(env)
            return record
        if cfg.runtime.save_weights:  # before evaluation: the weights are what the evaluation scores
            path, parts = save_trained(run_dir, vlm, cfg.train.stages, h)
            record.weights = {"file": path.name, "bytes": path.stat().st_size, "parts": parts}
        te = time.time()
        feature_cache = cache if cfg.runtime.feature_cache else None
        metrics = Evaluator(vlm, world, cfg.eval, run_dir, cfg.seed, feature_cache,  # 7. evaluate
                            bank_options(cfg.runtime)).run()
        proto = protocol(resolved["eval"])
        record.metrics = [e | {"protocol": entry_protocol(resolved["eval"], e)} for e in metrics]
        record.eval_wall_s = round(time.time() - te, 2)
        failed = sorted({e["unit"] for e in metrics if e.get("status") == "failed" and e.get("unit")})
        record.evaluations = [{"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "by": "sweep.py",
                               "protocol": proto, "units": Evaluator.units_for(cfg.eval),
                               "wall_s": record.eval_wall_s, "failed": failed, "git": record.git,
                               "threads": threads, "device": str(device)}]
        record.status = "ok"
    except ConfigError as err:
        print(f"[run] {h}: invalid config: {err}", flush=True)
        _fail(record, err, cfg)
    except Preempted as err:  # checkpoint written; record it, then end the process as the signal asked
        print(f"[run] {h}: {err}", flush=True)
        _fail(record, err, cfg, status="preempted")
        preempted = err
    except Exception as err:  # noqa: BLE001 - a failed point is recorded, and the sweep goes on
        traceback.print_exc()
        _fail(record, err, cfg)
        if isinstance(err, DivergenceError):
            record.divergence = err.info  # the checkpoint it names stays in the run folder
    record.wall_s = round(time.time() - t0, 2)
    record.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if not main:
        if preempted:
            preempted.exit()
        return record
    record.write(run_dir)  # 8. write record
    if tracker is not None:
        tracker.finish(record)  # metrics, sample predictions, status
    if record.status == "ok":
        ckpt.remove()  # a finished point keeps only its small files (and weights.pt, unless save_weights=false)
    print(f"[run] {h}: {record.status} in {record.wall_s:.0f}s -> {run_dir / RECORD}", flush=True)
    if env is not None:
        distributed.teardown(env)
    if preempted:
        preempted.exit()
    return record


def _unsharded(cfg: DictConfig, vlm, device, env, world):
    """Rank 0: a fresh VLM (frozen parts from the cache) holding the FSDP-trained weights; other ranks: None."""
    from harness.models import weights

    last = len(cfg.train.stages) - 1
    trained = weights.weights(vlm, cfg.train.stages, last)
    if not env.main:
        return None
    _, whole, _ = build_vlm(cfg, device, world)
    return weights.restore_finished(whole, cfg.train.stages, trained)


def _fail(record: Record, err: Exception, cfg: DictConfig, status: str = "failed") -> None:
    record.status = status
    record.error = f"{type(err).__name__}: {err}"
    record.metrics = _nan_metrics(cfg)


def train_flops(model: dict, trained: dict) -> float:
    """Approximate training FLOPs, for equal-compute comparisons across sweep points.

    LLM: 6 x params x tokens when it trains, 4 x when frozen but passing gradients to the connector (forward plus
    input-gradient backward, no weight gradients). Connector: 3 x its measured forward FLOPs per image x images.
    Encoder: 0 (features come from the frozen-feature cache). Attention score FLOPs are ignored at these lengths.
    """
    params = model["params"]
    llm_trainable = any("llm" in s["trainable"] for s in trained["stages"])
    llm = (6 if llm_trainable else 4) * params["llm"] * trained["tokens"]
    return float(llm + 3 * model["connector_flops_per_image"] * trained["images"])


def _nan_metrics(cfg) -> list[dict]:
    """Headline metrics of a failed point: present, NaN, so tables show the gap instead of a zero. One per world task
    in ``eval.tasks`` (its own NaN entries, harness.eval.tasks) and k, in registry order."""
    from harness.eval.tasks import world_task, world_tasks

    tasks = [t for t in world_tasks() if t in cfg.eval.tasks]
    return [e for k in cfg.eval.shots for t in tasks for e in world_task(t).nan_entries(k)]


def _write_ref(h: str, run_dir: Path) -> None:
    """Leave a pointer to the record in Hydra's job folder so the end-of-sweep summary can find this point."""
    try:
        from hydra.core.hydra_config import HydraConfig

        out = Path(HydraConfig.get().runtime.output_dir)
    except (ValueError, ImportError):
        return
    write_json_atomic(out / "record_ref.json", {"cfg_hash": h, "record": str((run_dir / RECORD).resolve())})
