"""``python -m harness.bench machines``: do the same points, run on another machine, give the same answers within
their seed intervals?

A fresh clone reproduces a record to the last digit only on the machine type that wrote it: another CPU's vector
instructions (AVX-512 against AVX2, say) change the last bits of training's sums, and 600 steps turn those into
another sample of the seed noise. So the claim that can hold across machines is the statistical one, and this
command measures it: point sets ``--a`` (the reference, e.g. ``results/reference``) and ``--b`` (your results
folder), matched by config hash (the same points; a machine's hardware is not hashed), grouped into setups by their
config without the seed, and for every setup with two or more seeds on both sides and every score at ``--shots``:

- ``b_mean_within_a``: is b's seed mean inside a's 95% t-interval (what a reader of a's table would expect);
- ``welch``: b minus a with Welch's 95% interval; 0 outside it is a difference between the machines at 95%, which
  about 1 in 20 comparisons shows by chance when there is none (the calibration study measures the rate).

Shapes: two tidy frames (``harness.analysis.load.load_runs``) -> one row per (setup, metric), and the counts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from harness.analysis.load import load_runs, read_records
from harness.analysis.stats import mean_interval, welch_interval
from harness.config.schema import UNHASHED_SECTIONS

METRIC = ["task", "subset", "shots"]


def _setups(df):
    """Setup key per run: what its config hash covers, less the seed (runs that differ only in seed are one setup's
    replicates; where results and caches lie, runtime settings and evaluation are no part of a setup)."""
    def key(config_json: str) -> str:
        cfg = json.loads(config_json)
        for section in (*UNHASHED_SECTIONS, "hydra", "eval", "seed"):
            cfg.pop(section, None)
        return json.dumps(cfg, sort_keys=True)
    return df.assign(setup=df["config_json"].map(key))


def _machines(results: Path, hashes: set[str]) -> list[dict]:
    seen = []
    for _, rec in read_records(results):
        if rec.cfg_hash in hashes and rec.machine and rec.machine not in seen:
            seen.append(rec.machine)
    return seen


def compare(a: Path, b: Path, shots: int = 0) -> dict:
    """The rows and counts of the module docstring for the points (config hashes) both folders finished."""
    runs_a, runs_b = (load_runs(p) for p in (a, b))
    # MM1's averages over tasks repeat their tasks' scores: counted once, as the tasks
    runs_a, runs_b = (r[(r["status"] == "ok") & (r["shots"] == shots) & (r["task"] != "mm1_average")]
                      for r in (runs_a, runs_b))
    shared = set(runs_a["cfg_hash"]) & set(runs_b["cfg_hash"])
    if not shared:
        raise SystemExit(f"no finished point is in both {a} and {b} (points are matched by config hash)")
    runs_a, runs_b = (_setups(r[r["cfg_hash"].isin(shared)]) for r in (runs_a, runs_b))
    rows = []
    for (setup, *metric), part_a in runs_a.groupby(["setup", *METRIC], sort=True):
        part_b = runs_b[(runs_b["setup"] == setup) & (runs_b[METRIC] == metric).all(axis=1)]
        if part_a["seed"].nunique() < 2 or part_b["seed"].nunique() < 2:
            continue
        ia, ib = mean_interval(part_a["value"]), mean_interval(part_b["value"])
        w = welch_interval(part_b["value"], part_a["value"])
        if not all(math.isfinite(x) for x in (ia.lo, ib.mean, w.lo)):
            continue
        rows.append({"connector": part_a["connector"].iloc[0], "setup_hashes": sorted(set(part_a["cfg_hash"])),
                     **dict(zip(METRIC, metric, strict=True)), "n_a": ia.n, "n_b": ib.n,
                     "a_mean": ia.mean, "a_lo": ia.lo, "a_hi": ia.hi, "b_mean": ib.mean,
                     "b_minus_a": w.mean, "welch_lo": w.lo, "welch_hi": w.hi,
                     "b_mean_within_a": bool(ia.lo <= ib.mean <= ia.hi), "zero_in_welch": bool(w.lo <= 0 <= w.hi)})
    return {"a": str(a), "b": str(b), "shots": shots, "points": len(shared),
            "machines_a": _machines(a, shared), "machines_b": _machines(b, shared), "rows": rows,
            "comparisons": len(rows), "b_mean_within_a": sum(r["b_mean_within_a"] for r in rows),
            "zero_in_welch": sum(r["zero_in_welch"] for r in rows)}


def markdown(result: dict) -> str:
    """The rows as a markdown table, then the counts."""
    lines = ["| connector | metric | shots | a: mean [95%] | b: mean | b - a [95% Welch] |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        metric = r["task"] if r["subset"] in ("all", None) else f"{r['task']}:{r['subset']}"
        lines.append(f"| {r['connector']} | {metric} | {r['shots']} | {r['a_mean']:.3f} [{r['a_lo']:.3f}, "
                     f"{r['a_hi']:.3f}] | {r['b_mean']:.3f}{'' if r['b_mean_within_a'] else ' (outside)'} | "
                     f"{r['b_minus_a']:+.3f} [{r['welch_lo']:+.3f}, {r['welch_hi']:+.3f}]"
                     f"{'' if r['zero_in_welch'] else ' (excludes 0)'} |")
    n = result["comparisons"]
    lines.append(f"\n{result['points']} points in both; {n} comparisons: b's mean inside a's interval in "
                 f"{result['b_mean_within_a']}, 0 inside the Welch interval in {result['zero_in_welch']} "
                 "(about 1 in 20 excludes 0 by chance).")
    return "\n".join(lines)


def add_parser(sub) -> None:
    p = sub.add_parser("machines", help="the same points from two machines: differences within seed intervals?")
    p.add_argument("--a", required=True, type=Path, help="reference results folder (e.g. results/reference)")
    p.add_argument("--b", required=True, type=Path, help="results folder from the other machine")
    p.add_argument("--shots", type=int, default=0)
    p.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    p.add_argument("--out", default="results/bench")


def bench_machines(args) -> dict:
    result = compare(args.a, args.b, args.shots)
    table = markdown(result)
    print(table)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n")
    return result
