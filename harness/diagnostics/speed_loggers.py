"""``python -m harness.bench loggers``: what the experiment trackers (``logger=[...]``, harness.tracking) cost a
training step.

Trains one point, the Quickstart's by default (``python sweep.py``'s defaults: the shapes world, 64 px, the default
connector; any Hydra override changes it), for ``--steps`` steps of its first training stage with each logger
configuration in turn:

* ``jsonl``: ``train_log.jsonl`` alone, the baseline (the loop writes it whatever ``logger`` says);
* ``tensorboard``, ``mlflow``, ``wandb``: jsonl and that tracker (W&B offline, MLflow's local file store);
* ``all``: jsonl and the three trackers.

Each configuration runs the sweep's own loop, :func:`harness.train.loop.train`, from the same initial weights, seed
and batches, with its trackers opened by :func:`harness.tracking.open_run` and closed by ``Tracker.finish``, as
``harness.launch.execute`` does, writing into a temporary results folder (nothing of the user's results is touched).
The world, the backbones and the feature bank are built once, and ``--warmup`` untimed steps (jsonl only) run first,
so no configuration pays for encoding features or loading them from disk.

Two figures per configuration:

* ``step_ms``: wall time of :func:`train` / steps. Its difference to the baseline is the trackers' full cost,
  background threads and processes included (W&B's service process, TensorBoard's writer thread), but on a machine
  other jobs share it moves by more than the trackers cost;
* ``in_logger_share``: the time spent inside the trackers' calls during training (``Tracker.log_train``, every
  ``runtime.log_every`` steps: the fan-out to every backend's ``scalars``), timed with ``time.perf_counter`` around
  the calls, as a share of the training time. It counts only what the training thread waits for, and is what other
  jobs on the machine barely move.

Besides: the process CPU time per step (all its threads; W&B's service is a process of its own and not in it);
per-backend time inside ``scalars`` during training; the one-off costs per point (opening the trackers: ``start``
and ``params``; ``finish``: the final scalars and closing, without evaluation metrics or sample predictions, since
no evaluation runs here); bytes each configuration wrote. A tracker's first run in a process costs more than later
ones (importing its package, W&B starting its service process): before the configurations, each tracker's package is
imported in a fresh interpreter (``import_s``) and one run of it is opened and finished (``first_use``), so the
configurations compare like for like, and ``point_share_estimate`` adds those first-run costs to a point of the
config's full step budget in a process of its own (the Quickstart's ``hydra/launcher=local``, SLURM).
``--rounds`` repeats every configuration (in the same order) to average over a drifting machine load; the load
average before and after is recorded, and ``--note`` keeps what else the machine was running.
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import importlib.util
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

# configuration name -> the logger list it runs with
CONFIGS = {
    "jsonl": ["jsonl"],
    "tensorboard": ["jsonl", "tensorboard"],
    "mlflow": ["jsonl", "mlflow"],
    "wandb": ["jsonl", "wandb"],
    "all": ["jsonl", "tensorboard", "mlflow", "wandb"],
}
# the modules a tracker's first use imports (timed once, before any configuration runs)
IMPORTS = {"tensorboard": ["torch.utils.tensorboard"], "mlflow": ["mlflow", "mlflow.tracking", "mlflow.entities"],
           "wandb": ["wandb"]}
BACKEND_METHODS = ("start", "params", "scalars", "samples", "close")


class _Clock:
    """Seconds and calls per (phase, method), from wrappers that :meth:`patched` puts around class methods."""

    def __init__(self):
        self.phase = "idle"
        self.s: dict[tuple[str, str], float] = defaultdict(float)
        self.n: dict[tuple[str, str], int] = defaultdict(int)

    @contextmanager
    def patched(self, targets: list[tuple[type, str, str]]):
        """``targets``: (class, method name, label); the class's method is timed while the context is open."""
        saved = []
        for owner, meth, label in targets:
            orig = owner.__dict__[meth]

            def timed(*a, _orig=orig, _label=label, **k):
                t = time.perf_counter()
                try:
                    return _orig(*a, **k)
                finally:
                    self.s[(self.phase, _label)] += time.perf_counter() - t
                    self.n[(self.phase, _label)] += 1

            setattr(owner, meth, timed)
            saved.append((owner, meth, orig))
        try:
            yield self
        finally:
            for owner, meth, orig in saved:
                setattr(owner, meth, orig)

    def take(self) -> tuple[dict, dict]:
        s, n = dict(self.s), dict(self.n)
        self.s.clear()
        self.n.clear()
        return s, n


def _targets() -> list[tuple[type, str, str]]:
    from harness.tracking import BACKENDS
    from harness.tracking.base import Tracker

    out = [(Tracker, "log_train", "tracker.log_train")]
    for name, (path, pkg) in BACKENDS.items():
        if path is None or importlib.util.find_spec(pkg) is None:
            continue
        module, cls = path.rsplit(".", 1)
        klass = getattr(importlib.import_module(module), cls)
        out += [(klass, m, f"{name}.{m}") for m in BACKEND_METHODS]
    return out


def _compose(overrides: list[str], loggers: list[str], results: Path, steps: int):
    """The point's config with ``loggers`` on, results in ``results``, and its first training stage cut to
    ``steps`` steps (later stages dropped)."""
    from harness.config.store import compose_sweep

    mine = [f"logger=[{','.join(loggers)}]", "logger.group=bench-loggers"]
    if "wandb" in loggers:
        mine.append("logger.wandb.mode=offline")  # never online, whatever $WANDB_MODE says (an override still can)
    cfg = compose_sweep([*mine, *overrides, f"paths.results_dir={results}"])
    budget = int(sum(s.steps for s in cfg.train.stages))
    while len(cfg.train.stages) > 1:
        cfg.train.stages.pop()
    first = cfg.train.stages[0]
    first.steps, first.warmup_steps = steps, min(int(first.warmup_steps or 0), steps)
    return cfg, budget


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def _run(cfg, name: str, tag: str, vlm, init: dict, corpus, bank, device, clock: _Clock, trackers: bool) -> dict:
    """One configuration: open its trackers, train, finish them; the timings."""
    from harness import tracking
    from harness.config.validate import resolve
    from harness.data import locations
    from harness.runtime import seed_everything
    from harness.train.checkpoint import Checkpointer
    from harness.train.loop import train

    results = Path(cfg.paths.results_dir)
    run_dir = results / "runs" / tag
    run_dir.mkdir(parents=True, exist_ok=True)
    vlm.load_state_dict(init)
    seed_everything(cfg.seed)
    record = {"status": "running", "config": resolve(cfg), "choices": {"logger": name}, "tags": [],
              "resumed_from_step": None, "metrics": []}
    clock.take()
    clock.phase = "open"
    t = time.perf_counter()
    tracker = tracking.open_run(cfg, tag, run_dir, record) if trackers else None
    open_s = time.perf_counter() - t
    ckpt = Checkpointer(run_dir, cfg.runtime.checkpoint_every, tag)
    clock.phase = "train"
    cpu, t = time.process_time(), time.perf_counter()
    summary = train(vlm, corpus, locations.stage_data(cfg), cfg, cfg.seed, device, run_dir / "train_log.jsonl", bank,
                    ckpt, cfg.runtime.log_every, None, tracker=tracker)
    train_s, cpu_s = time.perf_counter() - t, time.process_time() - cpu
    clock.phase = "finish"
    t = time.perf_counter()
    if tracker is not None:
        tracker.finish(record | {"status": "ok", "train": summary, "wall_s": train_s})
    finish_s = time.perf_counter() - t
    clock.phase = "idle"
    s, n = clock.take()
    steps = int(summary["steps"])
    backends = sorted({label.split(".")[0] for _, label in s if not label.startswith("tracker.")})
    return {
        "steps": steps, "train_s": train_s, "cpu_s": cpu_s, "open_s": open_s, "finish_s": finish_s,
        "log_calls": n.get(("train", "tracker.log_train"), 0), "in_logger_s": s.get(("train", "tracker.log_train"), 0.0),
        "scalars_s": {b: s.get(("train", f"{b}.scalars"), 0.0) for b in backends},
        "one_off_s": {f"{b}.{m}": round(s[(p, f"{b}.{m}")], 4) for b in backends for m in BACKEND_METHODS
                      for p in ("open", "finish") if (p, f"{b}.{m}") in s},
        "bytes": {d: _dir_bytes(results / d) for d in ("tensorboard", "mlruns", "wandb") if (results / d).is_dir()},
        "images_encoded": summary.get("images_encoded", 0),
        "final_loss": summary.get("final_loss"),
    }


def bench_loggers(args) -> dict:
    import torch
    from omegaconf import OmegaConf

    from harness import tracking
    from harness.config.validate import validate
    from harness.data import locations
    from harness.data.corpus import build_corpus, run_image_size
    from harness.data.features import bank_for
    from harness.models.build import build_vlm
    from harness.records import library_versions
    from harness.runtime import pick_device, seed_everything, set_offline, set_threads
    from harness.world import World

    wanted = args.configs.split(",") if args.configs else list(CONFIGS)
    unknown = sorted(set(wanted) - set(CONFIGS))
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; available: {', '.join(CONFIGS)}")
    if "jsonl" not in wanted:
        wanted.insert(0, "jsonl")  # the baseline every share is read against
    set_offline()
    tmp = tempfile.TemporaryDirectory(prefix="mm-ablate-bench-loggers-")
    root = Path(tmp.name)
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):  # W&B's own files stay in the temp folder
        os.environ[var] = str(root / "wandb-home")
    cfgs = {name: _compose(args.overrides, CONFIGS[name], root / f"results-{name}", args.steps) for name in wanted}
    cfgs["warmup"] = _compose(args.overrides, ["jsonl"], root / "results-warmup", max(1, args.warmup))
    cfg, budget = cfgs["jsonl"]
    for c, _ in cfgs.values():
        validate(c)
        tracking.check(c)  # a missing tracker package: the pip install line, before anything is built
    threads = set_threads(cfg.runtime.threads)
    device = pick_device(cfg.runtime.device)
    load_before = os.getloadavg()
    used = sorted({n for name in wanted for n in CONFIGS[name]} & set(IMPORTS))
    imports = {pkg: _import_s(pkg) for pkg in used}
    # data and models as harness.launch.execute builds them, once for every configuration
    t0 = time.time()
    seed_everything(cfg.seed)
    cache = Path(cfg.paths.cache_dir).expanduser()
    world = World.build_or_load(OmegaConf.to_object(cfg.world), cache)
    corpus = build_corpus(locations.used_data(cfg, locations.stage_data(cfg)), world, cache, cfg.paths.data_dir,
                          image_size=run_image_size(cfg))
    world, vlm, _ = build_vlm(cfg, device, world)
    init = copy.deepcopy(vlm.state_dict())
    seed_everything(cfg.seed)
    bank = bank_for(vlm, corpus, "train", cache, online=not cfg.runtime.feature_cache)
    build_s = time.time() - t0
    clock = _Clock()
    runs: dict[str, list[dict]] = {name: [] for name in wanted}
    with clock.patched(_targets()):
        t = time.time()
        warm = _run(cfgs["warmup"][0], "warmup", "warmup", vlm, init, corpus, bank, device, clock, trackers=False)
        print(f"[bench] warm-up: {warm['steps']} steps in {time.time() - t:.1f} s (features encoded: "
              f"{warm['images_encoded']})", flush=True)
        # each tracker's first run in a process starts more than later ones (W&B its service process): paid here,
        # timed apart, so the configurations compare like for like
        first_use = {pkg: _first_use(args.overrides, pkg, root / f"results-first-{pkg}", clock) for pkg in used}
        for pkg, f in first_use.items():
            print(f"[bench] first {pkg} run of the process: open {f['open_s']:.2f} s, finish {f['finish_s']:.2f} s "
                  f"(import {imports[pkg]:.2f} s in a fresh interpreter)", flush=True)
        for r in range(args.rounds):
            for name in wanted:
                c = cfgs[name][0]
                res = _run(c, name, f"{name}-r{r}", vlm, init, corpus, bank, device, clock, trackers=name != "jsonl")
                runs[name].append(res)
                print(f"[bench] round {r + 1}/{args.rounds} {name:12s} {res['train_s'] / res['steps'] * 1000:7.1f} "
                      f"ms/step  in trackers {res['in_logger_s'] * 1000:7.1f} ms in {res['log_calls']} calls "
                      f"({res['in_logger_s'] / res['train_s']:.3%})  open {res['open_s']:.2f} s  finish "
                      f"{res['finish_s']:.2f} s", flush=True)
    rows = _rows(runs, budget, {pkg: imports[pkg] + first_use[pkg]["open_s"] for pkg in used})
    for row in rows:
        print(f"[bench] {row['config']:12s} {row['step_ms']:7.1f} ms/step ({row['step_overhead_vs_jsonl']:+.1%} vs "
              f"jsonl)  in trackers {row['in_logger_share']:.3%} of training ({row['in_logger_ms_per_call']:.1f} ms "
              f"a log line)  one-off {row['one_off_s']:.2f} s a point ({row['fresh_process_s']:.2f} s in a fresh "
              f"process): {row['point_share_estimate']:.2%} of a {budget}-step point", flush=True)
    tmp.cleanup()
    versions = library_versions()
    for pkg in ("tensorboard", "mlflow", "wandb"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    overrides = list(args.overrides)
    return {
        "benchmark": "loggers",
        "command": " ".join(["python -m harness.bench loggers", f"--steps {args.steps}", f"--warmup {args.warmup}",
                             f"--rounds {args.rounds}", *([f"--configs {args.configs}"] if args.configs else []),
                             *map(shlex.quote, overrides)]),
        "overrides": overrides, "configs": {n: CONFIGS[n] for n in wanted}, "steps": args.steps,
        "warmup": args.warmup, "rounds": args.rounds, "log_every": int(cfg.runtime.log_every),
        "checkpoint_every": int(cfg.runtime.checkpoint_every), "step_budget": budget,
        "batch_size": int(cfg.train.batch_size), "threads": threads, "device": str(device),
        "choices": {"world": cfg.world.name, "encoder": cfg.encoder.name, "connector": cfg.connector.name,
                    "llm": cfg.llm.name, "resolution": cfg.resolution, "visual_tokens": cfg.visual_tokens},
        "build_s": round(build_s, 1), "import_s": imports, "first_use": first_use,
        "load_avg_before": [round(x, 2) for x in load_before], "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "note": args.note, "rows": rows, "runs": runs, "versions": versions,
        "torch_threads": torch.get_num_threads(),
    }


def _import_s(pkg: str) -> float:
    """Seconds to import a tracker's modules in a fresh interpreter that has torch loaded already (as a point has
    when it opens its trackers)."""
    code = ("import time, torch, numpy; t = time.perf_counter(); import " + ", ".join(IMPORTS[pkg]) +
            "; print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return round(float(out.stdout.strip().splitlines()[-1]), 3)


def _first_use(overrides: list[str], pkg: str, results: Path, clock: _Clock) -> dict:
    """A tracker's first run in this process, opened and finished at once: its start-up costs."""
    from harness import tracking
    from harness.config.validate import resolve

    cfg, _ = _compose(overrides, ["jsonl", pkg], results, 1)
    run_dir = results / "runs" / f"first-{pkg}"
    record = {"status": "running", "config": resolve(cfg), "choices": {"logger": pkg}, "tags": [],
              "resumed_from_step": None, "metrics": []}
    t = time.perf_counter()
    tracker = tracking.open_run(cfg, f"first-{pkg}", run_dir, record)
    open_s, t = time.perf_counter() - t, time.perf_counter()
    tracker.finish(record | {"status": "ok", "train": {"steps": 0}})
    finish_s = time.perf_counter() - t
    clock.take()
    return {"open_s": round(open_s, 3), "finish_s": round(finish_s, 3)}


def _rows(runs: dict[str, list[dict]], budget: int, fresh: dict[str, float]) -> list[dict]:
    """Per configuration, averaged over its rounds; overheads against the ``jsonl`` baseline. ``fresh``: per
    tracker package, what a fresh process pays before its first run (import and first open)."""
    base = float(np.mean([r["train_s"] / r["steps"] for r in runs["jsonl"]]))
    rows = []
    for name, rs in runs.items():
        train_s, steps = sum(r["train_s"] for r in rs), sum(r["steps"] for r in rs)
        calls, inside = sum(r["log_calls"] for r in rs), sum(r["in_logger_s"] for r in rs)
        step = train_s / steps
        one_off = float(np.mean([r["open_s"] + r["finish_s"] for r in rs]))
        # a point in a process of its own (hydra/launcher=local, SLURM): imports and first opens, then its finish
        fresh_s = sum(fresh.get(p, 0.0) for p in CONFIGS[name]) + float(np.mean([r["finish_s"] for r in rs]))
        per_step_in = inside / steps
        backends = sorted({b for r in rs for b in r["scalars_s"]})
        rows.append({
            "config": name, "step_ms": step * 1000, "step_ms_rounds": [r["train_s"] / r["steps"] * 1000 for r in rs],
            "step_overhead_vs_jsonl": step / base - 1, "cpu_ms_per_step": sum(r["cpu_s"] for r in rs) / steps * 1000,
            "log_calls": calls, "in_logger_s": inside, "in_logger_ms_per_call": inside / calls * 1000 if calls else 0.0,
            "in_logger_share": inside / train_s,
            "scalars_share": {b: sum(r["scalars_s"].get(b, 0.0) for r in rs) / train_s for b in backends},
            "open_s": float(np.mean([r["open_s"] for r in rs])), "finish_s": float(np.mean([r["finish_s"] for r in rs])),
            "one_off_s": one_off, "fresh_process_s": fresh_s,
            # a whole point of the config's step budget in a process of its own (the Quickstart's local launcher):
            # its one-off costs plus the in-loop ones, over its training time
            "point_share_estimate": (fresh_s + per_step_in * budget) / (step * budget) if budget else float("nan"),
        })
    return rows


def add_parser(sub) -> None:
    c = sub.add_parser("loggers", help="what the experiment trackers (tensorboard, mlflow, wandb) cost a step")
    c.add_argument("--steps", type=int, default=200, help="training steps per configuration")
    c.add_argument("--warmup", type=int, default=20, help="untimed steps (jsonl only) before the configurations")
    c.add_argument("--rounds", type=int, default=1, help="times every configuration runs, in the same order")
    c.add_argument("--configs", default="", help=f"comma-separated subset of {', '.join(CONFIGS)} (default: all; "
                                                 "jsonl, the baseline, always runs)")
    c.add_argument("--note", default="", help="free text kept in the JSON (e.g. what else the machine was running)")
    c.add_argument("--out", default="results/bench")
    c.add_argument("overrides", nargs="*", help="Hydra overrides of the point (default: the Quickstart's)")
