"""``python -m harness.bench budget``: where a sweep's CPU time went, read from its records (issue 9, CPU budget).

A sweep's wall time on the embedded default mixes one-off costs (generating the world, pre-training the tiny encoders
and LLM: paid once per cache, by whichever job got there first) with per-point costs (building, encoding the split
into the feature cache, training, evaluating). Regressions in either show only if both are written down per stage.
This reads the records of one sweep (a results folder, or a sweep summary's folder) and writes one JSON under
``results/bench/`` with:

- ``one_off``: each artifact's build time as stored in its metadata (world generation, encoder / high-res encoder /
  LLM pre-training), once per distinct artifact, with whether any point of this sweep waited for it;
- ``points``: per point, build (artifacts loaded or built), feature encoding, training (feature encoding included),
  evaluation and total wall seconds, the step budget and the threads it ran with;
- ``totals``: sums per stage, and the sweep's span from the first start to the last finish.

Like all analysis, it only reads records; nothing is timed here.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from harness.records import PRETRAINED_PARTS, RECORD, Record, read_record


def _records(root: Path) -> list[Record]:
    """The records under ``root``; the shipped reference inside ``results/`` is left out (its points ran on other
    days and machines, so their times would blur the sweep's own), unless ``root`` is the reference itself."""
    from harness.analysis.reference import holds_reference, within

    skip_reference = holds_reference(root)
    recs = [rec for p in sorted(Path(root).rglob(RECORD))
            if not (skip_reference and within(p)) and (rec := read_record(p.parent)) is not None]
    if not recs:
        raise FileNotFoundError(f"no {RECORD} under {root}; pass the results folder of a finished sweep")
    return recs


def budget(root: Path) -> dict:
    points, one_off = [], {}
    recs = _records(root)
    for r in recs:
        model, train = r.model or {}, r.train or {}
        for part in PRETRAINED_PARTS:
            meta = model.get(part) or {}
            if meta.get("artifact"):
                one_off[Path(meta["artifact"]).name] = {"stage": part.removesuffix("_pretraining") + " pre-training",
                                                        "wall_s": meta.get("build_wall_s")}
        world = r.world or {}
        if world.get("hash"):
            one_off[f"world-{world['hash']}"] = {"stage": "world generation", "wall_s": world.get("generation_s")}
        points.append({
            "cfg_hash": r.cfg_hash, "choices": r.choices, "status": r.status, "threads": r.threads,
            "step_budget": r.step_budget, "build_s": r.build_wall_s, "features_encode_s": train.get("features_encode_s"),
            "train_s": train.get("wall_s"), "eval_s": r.eval_wall_s, "total_s": r.wall_s,
        })
    totals = {k: round(sum(p[k] or 0.0 for p in points), 1)
              for k in ("build_s", "features_encode_s", "train_s", "eval_s", "total_s")}
    starts = [datetime.fromisoformat(r.started_at) for r in recs if r.started_at]
    ends = [datetime.fromisoformat(r.finished_at) for r in recs if r.finished_at]
    totals["sweep_span_s"] = (max(ends) - min(starts)).total_seconds() if starts and ends else float("nan")
    return {"benchmark": "budget", "source": str(root), "points": points, "one_off": one_off, "totals": totals}


def bench_budget(args) -> dict:
    out = budget(Path(args.results))
    t = out["totals"]
    print(f"[budget] {len(out['points'])} points, span {t['sweep_span_s']:.0f} s; summed per point: build "
          f"{t['build_s']:.0f} s, feature encoding {t['features_encode_s']:.0f} s (inside training), training "
          f"{t['train_s']:.0f} s, evaluation {t['eval_s']:.0f} s")
    for name, o in sorted(out["one_off"].items()):
        print(f"[budget] one-off {o['stage']:24s} {name}: {o['wall_s']} s")
    return out


def add_parser(sub) -> None:
    c = sub.add_parser("budget", help="per-stage wall times of a finished sweep, read from its records")
    c.add_argument("results", help="folder searched recursively for record.json (e.g. a sweep's MM_ABLATE_RESULTS)")
    c.add_argument("--out", default="results/bench")
