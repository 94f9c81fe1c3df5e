"""``run_point(cfg)``: one sweep point, as readable steps.

resolve -> hash the resolved config -> skip if a successful record exists -> validate -> build (world, LLM,
encoders, connector, VLM) -> train (resuming from the run folder's checkpoint if one is there) -> evaluate -> write
``results/runs/<hash>/record.json`` (and delete the checkpoint once the record says ok; ``runtime.save_weights=true``
keeps the trained parts' weights as ``weights.pt`` for :func:`harness.models.load.load_vlm`).

A failing point writes a record with ``status: failed``, the error and NaN metrics, and returns normally, so the rest
of a multirun goes on: an invalid configuration prints one line, any other error its traceback. A config that cannot
be resolved (a value nobody set) has no hash to record under and stops the job. A stop signal during training
(preemption) checkpoints, records the point as ``preempted`` with the resume instructions, and ends the process. Hydra
composes each job's config when the job starts, so the resolved config is hashed and stored per run (editing YAML
mid-sweep cannot go unnoticed).
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness.config.schema import UNHASHED_SECTIONS, ConfigError
from harness.config.validate import resolve, validate
from harness.records import RECORD, SCHEMA_VERSION, WEIGHTS, git_info, is_done, library_versions, write_json_atomic
from harness.runtime import pick_device, seed_everything, set_offline, set_threads

CHOICE_GROUPS = ("world", "encoder", "hr_encoder", "connector", "llm", "data", "train", "eval")


# -- 2. hash --------------------------------------------------------------------------------------------------------
# Settings added to the schema after points were recorded, with the default those points ran with. At that default
# the key is left out of the recorded and hashed config, so the shipped reference records keep their hashes (a run
# is skipped, not recomputed); any other value is hashed and recorded like every other setting. A path is the keys
# down to the setting; "*" stands for every item of a list (each training stage).
ADDED_LATER: dict[tuple[str, ...], Any] = {
    ("train", "precision"): "fp32",
    ("train", "stages", "*", "encoder_lr"): None,
}


def _drop_default(node: Any, path: tuple[str, ...], default: Any) -> Any:
    """``node`` with the setting at ``path`` removed where it equals ``default`` (copies; never edits ``node``)."""
    head, rest = path[0], path[1:]
    if head == "*":
        return [_drop_default(item, rest, default) for item in node] if isinstance(node, list) else node
    if not isinstance(node, dict) or head not in node:
        return node
    if not rest:
        return {k: v for k, v in node.items() if k != head} if node[head] == default else node
    return {**node, head: _drop_default(node[head], rest, default)}


def without_added_defaults(resolved: dict[str, Any]) -> dict[str, Any]:
    for path, default in ADDED_LATER.items():
        resolved = _drop_default(resolved, path, default)
    return resolved


def config_hash(resolved: dict[str, Any], needs_hr: bool) -> str:
    """sha1 of the canonical JSON of what determines the result (paths/runtime/tags excluded)."""
    keyed = {k: v for k, v in resolved.items() if k not in UNHASHED_SECTIONS and k != "hydra"}
    if not needs_hr:  # the high-res branch is unused: changing it must not orphan other points
        keyed.pop("hr_encoder", None)
        keyed.pop("hr_resolution", None)
    return hashlib.sha1(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]


def hydra_choices() -> dict[str, str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        choices = HydraConfig.get().runtime.choices
        return {k: v for k, v in choices.items() if k in CHOICE_GROUPS or k == "experiment"}
    except (ValueError, ImportError):  # not running under Hydra (tests calling run_point directly)
        return {}


# -- 5..8 -----------------------------------------------------------------------------------------------------------
def build(cfg: DictConfig, device):
    """World -> tokenizer -> LLM and encoder(s), pre-trained or loaded from the cache -> connector -> VLM.

    The backbones are independent cache artifacts. Jobs of a parallel sweep start with different ones (even job
    numbers the LLM, odd ones the encoder, mining jobs the high-res encoder), so on a cold cache the three are
    pre-trained side by side instead of every job queueing on one lock.
    """
    from harness.models.connectors import CONNECTORS, build_connector
    from harness.models.encoders import build_encoder
    from harness.models.llm import build_llm, build_tokenizer
    from harness.models.vlm import VLM
    from harness.world import World

    cache = Path(cfg.paths.cache_dir).expanduser()
    world = World.build_or_load(OmegaConf.to_object(cfg.world), cache)
    llm_cfg = OmegaConf.to_object(cfg.llm)
    tok = build_tokenizer(llm_cfg, world, cache)
    conn_cfg = OmegaConf.to_object(cfg.connector)
    steps = {
        "llm": lambda: build_llm(llm_cfg, world, cache),
        "encoder": lambda: build_encoder(OmegaConf.to_object(cfg.encoder), cfg.resolution, world, tok, cache),
        "hr_encoder": lambda: build_encoder(OmegaConf.to_object(cfg.hr_encoder), cfg.hr_resolution, world, tok,
                                            cache),
    }
    order = ["llm", "encoder"] if _job_number() % 2 == 0 else ["encoder", "llm"]
    if CONNECTORS.get(conn_cfg.name).needs_hr:
        order.insert(0, "hr_encoder")  # only mining jobs need it: they build it first
    built = {n: steps[n]() for n in order}
    llm, encoder, hr_encoder = built["llm"], built["encoder"], built.get("hr_encoder")
    # Pre-training a backbone (cold cache) reseeds and consumes the global RNG; seed again so the connector's init,
    # and with it the result, is the same whether this job pre-trained something, waited, or loaded from the cache.
    seed_everything(cfg.seed)
    connector = build_connector(conn_cfg, encoder.spec, llm.d_model, hr_encoder.map_spec if hr_encoder else None)
    vlm = VLM(encoder, connector, llm, hr_encoder).to(device)
    return world, vlm, llm


def _job_number() -> int:
    try:
        from hydra.core.hydra_config import HydraConfig

        return int(HydraConfig.get().job.get("num", 0) or 0)
    except (ValueError, ImportError):  # not running under Hydra
        return 0


def model_summary(vlm, llm, encoder_meta: dict, hr_meta: dict | None) -> dict[str, Any]:
    return {
        "params": vlm.param_counts(),
        "visual_tokens_emitted": vlm.num_visual_tokens,
        "encoder_patches": vlm.encoder.spec.num_patches,
        "encoder_grid": list(vlm.encoder.spec.grid),
        "connector_flops_per_image": vlm.connector.flops_per_image(),
        # retrieval: CLIP-style encoders; next-patch / mean-prediction MSE: AIM-style (held-out probes of each)
        "encoder_pretraining": {k: encoder_meta.get(k) for k in ("artifact", "objective", "final_loss",
                                                                  "retrieval_top1_256_after", "next_patch_mse_val",
                                                                  "mean_prediction_mse_val", "images_seen",
                                                                  "build_wall_s")},
        "hr_encoder_pretraining": None if hr_meta is None else {k: hr_meta.get(k) for k in (
            "artifact", "final_loss", "retrieval_top1_256_after", "build_wall_s")},
        "llm_pretraining": {k: llm.meta.get(k) for k in ("artifact", "first_loss", "final_loss", "tokens_seen",
                                                         "build_wall_s")},
    }


def run_point(cfg: DictConfig) -> dict[str, Any]:
    from harness.data import locations
    from harness.models.connectors import CONNECTORS

    t0 = time.time()
    set_offline()
    threads = set_threads(cfg.runtime.threads)
    # 1. resolve (data rules: see hashed_config; settings at the default they had before they existed are dropped)
    resolved = without_added_defaults(locations.hashed_config(resolve(cfg), cfg))
    needs_hr = CONNECTORS.get(cfg.connector.name).needs_hr
    h = config_hash(resolved, needs_hr)  # 2. hash
    run_dir = Path(cfg.paths.runs_dir).expanduser() / h
    _write_ref(h, run_dir)
    if is_done(run_dir) and not cfg.runtime.rerun:  # 3. skip if done
        print(f"[run] {h}: a successful record exists, skipping ({run_dir / RECORD}); runtime.rerun=true recomputes")
        if cfg.runtime.save_weights and not (run_dir / WEIGHTS).is_file():  # the weights went with the checkpoint
            print(f"[run] {h}: no {WEIGHTS} in {run_dir}: add runtime.rerun=true to train again and keep them")
        return json.loads((run_dir / RECORD).read_text())
    # Imported only past the skip: a finished point should cost a rerun of the sweep as little as possible.
    from harness.train import distributed
    from harness.train.checkpoint import Checkpointer, Preempted, save_trained
    from harness.train.loop import DivergenceError

    # Under torchrun / SLURM tasks every process runs this function; only rank 0 writes the record and evaluates.
    main = distributed.launched_world()[0] == 0
    ckpt = Checkpointer(run_dir, cfg.runtime.checkpoint_every, h)
    if cfg.runtime.rerun and main:
        ckpt.remove()  # recompute from scratch: an old checkpoint must not be resumed
        (run_dir / WEIGHTS).unlink(missing_ok=True)  # nor old weights outlive the record they belonged to

    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "cfg_hash": h, "status": "running", "error": None,
        "choices": hydra_choices(), "resolution": cfg.resolution, "visual_tokens": cfg.visual_tokens,
        "seed": cfg.seed, "tags": list(cfg.tags), "config": resolved, "git": git_info(), "versions": library_versions(),
        "host": socket.gethostname(), "threads": threads,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "step_budget": sum(s.steps for s in cfg.train.stages), "resumed_from_step": None, "metrics": [],
    }
    record["choices"].setdefault("connector", cfg.connector.name)
    record["choices"].setdefault("encoder", cfg.encoder.name)
    if main:
        write_json_atomic(run_dir / RECORD, record)
    preempted, env = None, None
    try:
        validate(cfg)  # 4. validate: one impossible point of a grid (avg_pool x 15 tokens) fails alone
        resume = ckpt.load()
        if resume:
            record["resumed_from_step"] = resume["global_step"]
            prog = resume["progress"]
            print(f"[run] {h}: resuming from {ckpt.path}: stage {prog['stage'] + 1}/{len(cfg.train.stages)}, "
                  f"step {prog['step']} (global step {resume['global_step']})", flush=True)
        device = pick_device(cfg.runtime.device)
        env = distributed.setup(cfg.runtime.strategy, device)
        device = distributed.rank_device(device, env)
        distributed.check_batch(cfg.train.batch_size, env, cfg.runtime.grad_accum)
        record["distributed"] = {"strategy": env.strategy, "world_size": env.world_size,
                                 "grad_accum": cfg.runtime.grad_accum}
        seed_everything(cfg.seed)
        tb = time.time()
        world, vlm, llm = build(cfg, device)  # 5. build
        vlm.set_trainable(list(cfg.train.stages[0].trainable))  # so the build summary counts what stage 1 trains
        record["model"] = model_summary(vlm, llm, getattr(vlm.encoder, "meta", {}),
                                        getattr(vlm.hr_encoder, "meta", None) if vlm.hr_encoder else None)
        record["world"] = {"name": world.cfg.name, "hash": world.hash, "root": str(world.root),
                           "generation_s": world.meta.get("generation_seconds")}
        record["build_wall_s"] = round(time.time() - tb, 2)
        print(f"[run] {h}: {record['choices']} params {record['model']['params']}", flush=True)

        from harness.data.corpus import build_corpus
        from harness.eval.runner import Evaluator
        from harness.train.features import bank_for
        from harness.train.loop import train

        # The training data: every stage's sources read through their formats (the world's export by default) into
        # one corpus; its image store backs the feature bank, so the bank covers every image any stage uses.
        data_cfgs = locations.stage_data(cfg)
        cache = Path(cfg.paths.cache_dir).expanduser()
        corpus = build_corpus(locations.used_data(cfg, data_cfgs), world, cache, cfg.paths.data_dir)
        record["data"] = corpus.summary()  # per source: format, files, records read, skipped by reason
        seed_everything(cfg.seed)
        bank = bank_for(vlm, corpus, "train", cache, online=not cfg.runtime.feature_cache)
        record["train"] = train(vlm, corpus, data_cfgs, cfg, cfg.seed, device, run_dir / "train_log.jsonl", bank,
                                ckpt, cfg.runtime.log_every, resume, dist_env=env)  # 6. train
        record["model"]["params"] = vlm.param_counts()  # trainable count as of the last stage
        record["train"]["flops_estimate"] = train_flops(record)
        if env.strategy == "fsdp":  # evaluate an unsharded copy: gather the trained weights (every rank takes part)
            vlm = _unsharded(cfg, vlm, device, env)
        if not env.main:  # the other ranks' work ends with training
            distributed.teardown(env)
            return record
        if cfg.runtime.save_weights:  # before evaluation: the weights are what the evaluation scores
            path, parts = save_trained(run_dir, vlm, cfg.train.stages, h)
            record["weights"] = {"file": path.name, "bytes": path.stat().st_size, "parts": parts}
        te = time.time()
        feature_cache = cache if cfg.runtime.feature_cache else None
        record["metrics"] = Evaluator(vlm, world, cfg.eval, run_dir, cfg.seed, feature_cache).run()  # 7. evaluate
        record["eval_wall_s"] = round(time.time() - te, 2)
        record["status"] = "ok"
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
            record["divergence"] = err.info  # the checkpoint it names stays in the run folder
    record["wall_s"] = round(time.time() - t0, 2)
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if not main:
        if preempted:
            preempted.exit()
        return record
    write_json_atomic(run_dir / RECORD, record)  # 8. write record
    if record["status"] == "ok":
        ckpt.remove()  # a finished point keeps only its small files
    print(f"[run] {h}: {record['status']} in {record['wall_s']:.0f}s -> {run_dir / RECORD}", flush=True)
    if env is not None:
        distributed.teardown(env)
    if preempted:
        preempted.exit()
    return record


def _unsharded(cfg: DictConfig, vlm, device, env):
    """Rank 0: a fresh VLM (frozen parts from the cache) holding the FSDP-trained weights; other ranks: None."""
    from harness.train import checkpoint

    last = len(cfg.train.stages) - 1
    trained = checkpoint.weights(vlm, cfg.train.stages, last)
    if not env.main:
        return None
    _, whole, _ = build(cfg, device)
    checkpoint.load_weights(whole, cfg.train.stages, last, trained)
    return whole.eval()


def _fail(record: dict, err: Exception, cfg: DictConfig, status: str = "failed") -> None:
    record["status"] = status
    record["error"] = f"{type(err).__name__}: {err}"
    record["metrics"] = _nan_metrics(cfg)


def train_flops(record: dict) -> float:
    """Approximate training FLOPs, for equal-compute comparisons across sweep points.

    LLM: 6 x params x tokens when it trains, 4 x when frozen but passing gradients to the connector (forward plus
    input-gradient backward, no weight gradients). Connector: 3 x its measured forward FLOPs per image x images.
    Encoder: 0 (features come from the frozen-feature cache). Attention score FLOPs are ignored at these lengths.
    """
    params, tr = record["model"]["params"], record["train"]
    llm_trainable = any("llm" in s["trainable"] for s in tr["stages"])
    llm = (6 if llm_trainable else 4) * params["llm"] * tr["tokens"]
    return float(llm + 3 * record["model"]["connector_flops_per_image"] * tr["images"])


def _nan_metrics(cfg) -> list[dict]:
    """Headline metrics of a failed point: present, NaN, so tables show the gap instead of a zero."""
    nan = float("nan")
    out = []
    for k in cfg.eval.shots:
        if "caption" in cfg.eval.tasks:
            out.append({"task": "caption", "shots": k, "metric": "cider", "subset": "all", "value": nan,
                        "stderr": nan, "n": 0})
        if "vqa" in cfg.eval.tasks:
            out.append({"task": "vqa", "shots": k, "metric": "vqa_accuracy", "subset": "all", "value": nan,
                        "stderr": nan, "n": 0})
    return out


def _write_ref(h: str, run_dir: Path) -> None:
    """Leave a pointer to the record in Hydra's job folder so the end-of-sweep summary can find this point."""
    try:
        from hydra.core.hydra_config import HydraConfig

        out = Path(HydraConfig.get().runtime.output_dir)
    except (ValueError, ImportError):
        return
    write_json_atomic(out / "record_ref.json", {"cfg_hash": h, "record": str((run_dir / RECORD).resolve())})
