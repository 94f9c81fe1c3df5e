"""Evaluation as a step of its own: score a trained point on any benchmark set without training it again.

    python -m harness.evaluate RUN [eval overrides ...]
    python -m harness.evaluate results/runs/3f2a9c0e1b7d4a55 eval=mm1
    python -m harness.evaluate 3f2a9c0e eval.benchmarks=[/data/my_vqa.tsv:vqa] eval.shots=[0,4]

RUN is a run folder or a (prefix of a) config hash under ``$MM_ABLATE_RESULTS/runs``. Overrides may touch only
``eval`` (its fields, ``eval.x=...``, applied to the eval config the point was scored with; or a group option,
``eval=mm1``, that replaces it), ``runtime.device``, ``runtime.threads`` and the feature settings
(``runtime.feature_cache_gb``, ``runtime.feature_chunk``): anything else would describe another trained point, which
is ``sweep.py``'s job.

Why a step of its own: the config hash covers what a point *trains* (``harness.config.hashing.config_hash`` leaves ``eval``
out), so adding a benchmark to a 1B model must not retrain it. Trained weights are kept by default
(``runtime.save_weights``), and the record's metrics are a set of evaluation *units* (``caption@0``, ``vqa@4``,
``bench:<name>@0``, ``text:<task>``). A unit is done when the record holds it under the same protocol (the eval
settings that change its numbers: prompts, image limits, generation budgets, and for k > 0 the trials and the
format of the demonstrations; for a benchmark its row limit; not which units are asked for).
Evaluating runs only the units that are not done, merges them into the record and appends an entry to
``Record.evaluations``; running it again does nothing. Units re-run under another protocol replace the old
entries, which are kept under ``Record.superseded_metrics``: a finished score is never thrown away.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.eval.aggregates import TEXTCORE_TASK, is_derived, unit_of
from harness.eval.tasks import CAPTION_DEMO_BEFORE, shows_caption_demos
from harness.records import RECORD, WEIGHTS, Record, git_info, read_record

# Eval fields that choose *which* units run, or how fast, rather than what a unit's numbers are.
SELECTION_KEYS = ("name", "tasks", "shots", "benchmarks", "text_tasks", "batch_size", "text_batch_size",
                  "benchmark_root")
ALLOWED_PREFIXES = ("eval.", "eval=", "runtime.device=", "runtime.threads=", "runtime.feature_cache_gb=",
                    "runtime.feature_chunk=", "+eval.", "~eval.")


class EvaluateError(RuntimeError):
    """Why a run cannot be evaluated, in one line with the fix."""


# Eval fields that change only how caption demonstrations read: a unit's numbers depend on them only if it is a
# captioning unit (scored by CIDEr: the world's caption task, caption benchmarks) with k > 0, so every other unit's
# protocol leaves them out (its scores stay valid when such a field is added or changed).
DEMO_KEYS = ("caption_demo",)
# Eval fields added after points were recorded, with the value that reproduces what those points ran: left out at that
# value, so a setting spelled out and the same setting from before the field existed are one protocol.
PROTOCOL_ADDED_LATER = {"caption_demo": CAPTION_DEMO_BEFORE}


# Eval fields that change only some units' numbers (the rest leave them out of their protocol, since 2026-12-07):
# trials, the draws of demonstrations, only k-shot image units; benchmark_limit only TSV benchmark units.
UNIT_KEYS = {
    "trials": lambda unit, shots: not unit.startswith("text:") and shots > 0,
    "benchmark_limit": lambda unit, shots: unit.startswith("bench:"),
}


def protocol(eval_cfg: dict, demos: bool = True, drop: tuple[str, ...] = ()) -> str:
    """Short hash of the eval settings that change a unit's numbers (see the module docstring). ``demos=False``
    leaves out what only caption demonstrations read (:data:`DEMO_KEYS`), for a unit they cannot change; ``drop``
    leaves out other fields the unit does not read (:data:`UNIT_KEYS`)."""
    keyed = {k: v for k, v in eval_cfg.items() if k not in SELECTION_KEYS and k not in drop
             and (demos or k not in DEMO_KEYS) and not (k in PROTOCOL_ADDED_LATER and PROTOCOL_ADDED_LATER[k] == v)}
    return hashlib.sha1(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:10]


def reads_caption_demos(entry: dict) -> bool:
    """Whether an entry's unit shows caption demonstrations: a captioning score (CIDEr) at k > 0."""
    return shows_caption_demos(entry.get("metric"), int(entry.get("shots") or 0))


def entry_protocol(eval_cfg: dict, entry: dict) -> str:
    """The protocol a metric entry is scored under by ``eval_cfg``: the fields its unit reads."""
    unit, shots = unit_of(entry), int(entry.get("shots") or 0)
    drop = tuple(k for k, reads in UNIT_KEYS.items() if not reads(unit, shots))
    return protocol(eval_cfg, demos=reads_caption_demos(entry), drop=drop)


def legacy_protocol(eval_cfg: dict, entry: dict) -> str:
    """The protocol entries were stamped with before :data:`UNIT_KEYS` (every unit read every field)."""
    return protocol(eval_cfg, demos=reads_caption_demos(entry))


def _eval_configs(record: Record) -> list[dict]:
    """The eval configs a record was scored with: the point's own first, then each ``harness.evaluate`` pass's."""
    return [record.config.get("eval") or {}] + [e["eval"] for e in record.evaluations if isinstance(e.get("eval"), dict)]


def scored_under(record: Record, entry: dict, eval_cfg: dict) -> bool:
    """Whether ``entry``'s numbers are what ``eval_cfg`` would give: its stored protocol (none: the point's own
    config's) is ``eval_cfg``'s, or is the legacy stamp of an eval config the record was scored with (its own, or one
    of ``evaluations``) that reads the same for this unit. So a field a unit does not read (0-shot and ``trials``)
    never makes it stale, whether the entry was stamped before or after :data:`UNIT_KEYS`."""
    configs = _eval_configs(record)
    want = entry_protocol(eval_cfg, entry)
    stored = entry.get("protocol")
    if stored is None:
        return entry_protocol(configs[0], entry) == want
    if stored in (want, legacy_protocol(eval_cfg, entry)):
        return True
    return any(stored == legacy_protocol(c, entry) and entry_protocol(c, entry) == want for c in configs)


def caption_demo_of(record: Record, entry: dict) -> str | None:
    """The caption demonstration format an entry was scored with: None for an entry that shows none, else the format
    of the eval config (the point's own, or one ``harness.evaluate`` ran) whose protocol it carries ("unknown" when
    none matches)."""
    if not reads_caption_demos(entry):
        return None
    configs = _eval_configs(record)
    for ev in configs:
        stored = entry.get("protocol")
        if stored is None or stored in (entry_protocol(ev, entry), legacy_protocol(ev, entry)):
            return ev.get("caption_demo", PROTOCOL_ADDED_LATER["caption_demo"])
    return "unknown"


def done_units(record: Record, eval_cfg: dict, retry_skipped: bool = False) -> set[str]:
    """Units the record holds under the protocol of ``eval_cfg`` (a plain dict): scored (status ok, or an old entry
    with a finite value), or skipped because their data was not available (``retry_skipped`` counts those as not
    done, once the data is there). Entries without a protocol were written by the point's own evaluation, under its
    config's protocol."""
    done, bad = set(), set()
    for e in record.metrics:
        if is_derived(e):
            continue
        unit = unit_of(e)
        status = e.get("status") or ("ok" if _finite(e.get("value")) else "failed")
        if not scored_under(record, e, eval_cfg) or status == "failed" or (status == "skipped" and retry_skipped):
            bad.add(unit)
        elif status in ("ok", "skipped"):
            done.add(unit)
    return done - bad


def _finite(v: Any) -> bool:
    try:
        return v is not None and float(v) == float(v) and abs(float(v)) != float("inf")
    except (TypeError, ValueError):
        return False


def find_run(spec: str, runs_dir: Path) -> Path:
    """A run folder from a path or a (prefix of a) config hash under ``runs_dir``."""
    p = Path(spec).expanduser()
    if (p / RECORD).is_file():
        return p
    if p.name == RECORD and p.is_file():
        return p.parent
    matches = sorted(d for d in runs_dir.glob(f"{spec}*") if (d / RECORD).is_file()) if runs_dir.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise EvaluateError(f"'{spec}' matches {len(matches)} runs under {runs_dir} "
                            f"({', '.join(m.name for m in matches[:5])}); give more of the hash")
    raise EvaluateError(f"no run '{spec}': give a run folder (holding {RECORD}) or a config hash under {runs_dir} "
                        "(set MM_ABLATE_RESULTS to the results folder the sweep wrote to)")


def check_overrides(overrides: list[str]) -> None:
    bad = [o for o in overrides if not o.startswith(ALLOWED_PREFIXES)]
    if bad:
        raise EvaluateError(f"override(s) {bad} change what was trained; harness.evaluate accepts eval=<option>, "
                            "eval.<field>=..., runtime.device=..., runtime.threads=..., runtime.feature_cache_gb=... "
                            "and runtime.feature_chunk=... (train another point with sweep.py)")


def eval_config(record: Record, overrides: list[str]):
    """The eval config to run and the runtime settings, as DictConfigs.

    Without ``eval=<option>``: the record's own eval config with the ``eval.<field>`` overrides applied (so
    ``eval.benchmarks=[x]`` adds x to what the point was scored on, and changes nothing else). With it: that option
    from ``sweeps/eval/`` with the overrides applied. Overrides are parsed by Hydra, as on ``sweep.py``'s command
    line."""
    from omegaconf import OmegaConf

    from harness.config.schema import EvalCfg
    from harness.config.store import compose_sweep

    cfg = compose_sweep(list(overrides))
    if any(o.startswith("eval=") for o in overrides):
        return cfg.eval, cfg.runtime
    known = set(EvalCfg.__dataclass_fields__)  # a field a later schema dropped must not fail the merge
    own = {k: v for k, v in record.config["eval"].items() if k in known}
    # a field added after the point was scored: the value it was scored with, not today's default
    own = {k: v for k, v in PROTOCOL_ADDED_LATER.items() if k not in record.config["eval"]} | own
    ev = OmegaConf.merge(OmegaConf.structured(EvalCfg), own)
    for o in overrides:
        key = o.lstrip("+~").split("=", 1)[0]
        if key.startswith("eval."):
            field = key.split(".")[1]
            ev[field] = cfg.eval[field]  # the value as Hydra parsed it
    return ev, cfg.runtime


def evaluate_run(run_dir: Path, overrides: list[str] | None = None, cache_dir: str | Path | None = None,
                 log=print, retry_skipped: bool = False) -> Record:
    """Evaluate the units of the (overridden) eval config that ``run_dir``'s record does not hold; returns the
    updated record (also written to ``run_dir``). See the module docstring."""
    overrides = list(overrides or [])
    check_overrides(overrides)
    try:
        record = read_record(run_dir)
    except ValueError as err:  # not JSON, or a layout this harness does not read
        raise EvaluateError(str(err)) from None
    if record is None or record.status != "ok":
        status = None if record is None else record.status
        raise EvaluateError(f"{run_dir}: {'no record' if record is None else f'status {status}'}; only a point that "
                            "finished training can be evaluated: run it with sweep.py first")
    ev, runtime = eval_config(record, overrides)
    for key in ("feature_cache_gb", "feature_chunk"):  # unless overridden, encode as the run's evaluation did
        if not any(o.startswith(f"runtime.{key}=") for o in overrides):
            runtime[key] = (record.config.get("runtime") or {}).get(key, runtime[key])
    return evaluate_units(run_dir, record, ev, runtime, cache_dir, {"by": "harness.evaluate", "overrides": overrides},
                          log, retry_skipped)


def missing_units(record: Record, ev, retry_skipped: bool = False) -> tuple[list[str], list[str], str]:
    """(units ``ev`` asks for, those the record does not hold under ``ev``'s protocol, that protocol)."""
    from omegaconf import OmegaConf

    from harness.eval.runner import Evaluator

    ev_dict = OmegaConf.to_container(ev, resolve=True)
    proto = protocol(ev_dict)
    wanted = Evaluator.units_for(ev)
    done = done_units(record, ev_dict, retry_skipped)
    return wanted, [u for u in wanted if u not in done], proto


def evaluate_units(run_dir: Path, record: Record, ev, runtime, cache_dir=None, how: dict | None = None,
                   log=print, retry_skipped: bool = False) -> Record:
    """The core of :func:`evaluate_run`, also used by a sweep point whose training is done: preflight ``ev``, load
    the trained VLM, score the missing units, merge them into ``record`` and write it."""
    import torch
    from omegaconf import OmegaConf

    from harness.config.schema import ConfigError
    from harness.data.features import bank_options
    from harness.eval.preflight import preflight
    from harness.eval.runner import Evaluator
    from harness.models.load import RunNotLoadable
    from harness.runtime import pick_device, set_offline, set_threads

    set_offline()
    try:
        for line in preflight(ev):  # before anything is built: one line per problem
            log(f"[evaluate] {line}")
    except ConfigError as err:
        raise EvaluateError(str(err)) from None
    wanted, todo, proto = missing_units(record, ev, retry_skipped)
    skipped = sorted({e.get("unit") for e in record.metrics if e.get("status") == "skipped"} & set(wanted) - set(todo))
    retry = (f"; {len(skipped)} of them skipped before, their data not available here ({', '.join(skipped)}): once "
             "it is, add --retry-skipped to score them") if skipped else ""
    if not todo:
        log(f"[evaluate] {run_dir.name}: all {len(wanted)} units already scored under this protocol; nothing to "
            f"do{retry}")
        return record
    log(f"[evaluate] {run_dir.name}: {len(todo)} of {len(wanted)} units to score: {', '.join(todo)}")
    if not (run_dir / WEIGHTS).is_file():
        raise EvaluateError(f"{run_dir} has no {WEIGHTS} (the point ran with runtime.save_weights=false, or before "
                            "weights were kept by default), so units {todo} cannot be scored: retrain it with "
                            "runtime.rerun=true")
    set_threads(runtime.threads)
    device = pick_device(runtime.device)
    t0 = time.time()
    try:
        world, vlm, cfg = load_trained(run_dir, cache_dir, device)
    except RunNotLoadable as err:
        raise EvaluateError(str(err)) from None
    feature_cache = Path(cfg.paths.cache_dir) if record.config["runtime"].get("feature_cache", True) else None
    ev_dict = OmegaConf.to_container(ev, resolve=True)
    # The code and thread count of this pass, which may differ from the training's (record.git, record.threads):
    # a later pass is a separate computation, and its scores are compared with the first pass's. ``scored`` grows
    # as units finish: a pass that was killed shows which of its ``units`` it kept.
    this_pass = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **(how or {}), "protocol": proto,
                 "units": todo, "scored": [], "wall_s": 0.0, "eval": ev_dict, "failed": [],
                 "git": git_info(), "threads": torch.get_num_threads(), "device": str(device)}
    record.evaluations.append(this_pass)

    def keep(unit: str, entries: list[dict]) -> None:
        """Merge one finished unit into the record and write it, before the next unit starts. Averages over a
        shot count whose units this pass has not all scored yet are left out until it has: a killed pass must not
        leave a caption-only mean labelled as the mean over tasks."""
        for e in entries:
            e["protocol"] = entry_protocol(ev_dict, e)
        merge_into(record, entries)
        this_pass["scored"].append(unit)
        if any(e.get("status") == "failed" for e in entries):
            this_pass["failed"].append(unit)
        this_pass["wall_s"] = round(time.time() - t0, 2)
        pending = [u for u in todo if u not in this_pass["scored"]]
        record.metrics = [e for e in record.metrics if not (is_derived(e) and _waits_on(e, pending))]
        record.write(run_dir)

    with torch.no_grad():
        Evaluator(vlm, world, ev, run_dir, record.seed, feature_cache, bank_options(runtime)).run(
            skip=set(wanted) - set(todo), on_unit=keep)
    record = merge_into(record, [])  # every average, over the whole record
    this_pass["wall_s"] = round(time.time() - t0, 2)
    record.write(run_dir)
    return record


def _waits_on(average: dict, pending: list[str]) -> bool:
    """Whether a derived entry averages over units still ``pending``: TextCore's over the ``text:`` units, the MM1
    averages over the image units of their shot count."""
    if average.get("task") == TEXTCORE_TASK:
        return any(u.startswith("text:") for u in pending)
    return any(not u.startswith("text:") and int(u.rpartition("@")[2]) == average.get("shots") for u in pending)


def merge_into(record: Record, new: list[dict]) -> Record:
    """``record`` with ``new`` entries merged into its metrics; replaced entries kept under ``superseded_metrics``."""
    from harness.eval.runner import merge_metrics

    rerun = {unit_of(e) for e in new}
    old = record.metrics
    record.superseded_metrics.extend(e for e in old if not is_derived(e) and unit_of(e) in rerun
                                     and _finite(e.get("value")))
    record.metrics = merge_metrics(old, new)
    return record


def load_trained(run_dir: Path, cache_dir, device):
    """(world, VLM in eval mode, run config) of a finished run: frozen parts from the cache, trained parts from
    ``weights.pt`` (harness.models.load)."""
    from omegaconf import OmegaConf

    from harness.models.load import load_vlm
    from harness.world import World

    loaded = load_vlm(run_dir, cache_dir, device=str(device))
    cfg = loaded.cfg
    world = World.build_or_load(OmegaConf.to_object(cfg.world), Path(cfg.paths.cache_dir))
    return world, loaded.vlm, cfg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="run folder, or a (prefix of a) config hash under $MM_ABLATE_RESULTS/runs")
    p.add_argument("overrides", nargs="*", help="eval=<option>, eval.<field>=..., runtime.device=..., "
                   "runtime.threads=..., runtime.feature_cache_gb=..., runtime.feature_chunk=...")
    p.add_argument("--retry-skipped", action="store_true",
                   help="score again the units recorded as skipped (a text task whose data is now cached)")
    p.add_argument("--cache", default=None, help="the cache the run was built from (default: the record's, else "
                                                  "$MM_ABLATE_CACHE)")
    args = p.parse_args(argv)
    from harness.config.store import compose_sweep

    runs_dir = Path(compose_sweep([]).paths.runs_dir).expanduser()
    try:
        check_overrides(args.overrides)  # before looking for the run: the mistake is in the command itself
        run_dir = find_run(args.run, runs_dir)
        record = evaluate_run(run_dir, args.overrides, args.cache, retry_skipped=args.retry_skipped)
    except EvaluateError as err:
        print(f"[evaluate] error: {err}", file=sys.stderr)
        return 2
    failed = record.eval_failures()
    shown = [e for e in record.metrics if e.get("subset", "all") == "all" or e.get("task") == "textcore"]
    for e in shown:
        v = e.get("value")
        status = e.get("status") or "ok"
        val = f"{float(v):.4f}" if _finite(v) else "nan"
        print(f"{unit_of(e):<28} {e['metric']:<16} {e.get('subset', 'all'):<16} {val:>8}  {status}"
              f"{'  ' + (e.get('reason') or e.get('error') or '') if status != 'ok' else ''}")
    print(f"[evaluate] record: {run_dir / RECORD}")
    if failed:
        print(f"[evaluate] {len(failed)} unit(s) failed: {', '.join(failed)}; run the same command to retry them",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
