"""``python -m harness.bench cache``: a connector sweep with and without the frozen-feature cache, in one run.

Peer harnesses re-encode every image of every batch in every sweep point (docs/mm1_reference.md §6, point 4). This
benchmark measures what the cache saves on the same machine: the same sweep (default: the Quickstart's four
connectors) runs twice through ``sweep.py -m`` as subprocesses, first with ``runtime.feature_cache=false`` (every
batch encoded afresh), then with the cache, starting *cold* (an empty ``features/`` folder, so the cached sweep pays
for encoding the split once). Pre-trained backbones and the world are shared with ``MM_ABLATE_CACHE`` through
symlinks, so neither sweep pays for pre-training (backbone keys hash the tokenizer's content, not the folder it was
read from, which differs in each shadow). Each sweep writes to its own temporary results folder; nothing of
the user's results is touched or skipped.

Reported: each sweep's wall time, the ratio cached / uncached (issue goal <= 0.35 where encoding dominates), the
per-point train wall times and encoding times read from the records, and the disk size of the feature cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.records import RECORD, Record, read_record

ROOT = Path(__file__).resolve().parents[2]


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _shadow_cache(src: Path, dst: Path) -> None:
    """``dst`` sees every artifact of ``src`` except the feature cache, which starts empty."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir() if src.is_dir() else []:
        if entry.name != "features":
            (dst / entry.name).symlink_to(entry.resolve())


def _sweep(overrides: list[str], cache: Path, results: Path) -> tuple[float, list[dict]]:
    env = dict(os.environ, MM_ABLATE_CACHE=str(cache), MM_ABLATE_RESULTS=str(results), PYTHONUNBUFFERED="1")
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(ROOT / "sweep.py"), "-m", *overrides], env=env, cwd=results,
                          capture_output=True, text=True, check=False)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"sweep {' '.join(overrides)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    records = [read_record(p) for p in sorted(results.glob("runs/*")) if (p / RECORD).is_file()]
    bad = [r.cfg_hash for r in records if r.status != "ok"]
    if bad:
        raise RuntimeError(f"points {bad} did not finish ok; see {results}/runs")
    return wall, records


def _points(records: list[Record]) -> list[dict]:
    return [{"connector": r.choices.get("connector"), "wall_s": r.wall_s, "build_wall_s": r.build_wall_s,
             "train_wall_s": r.train["wall_s"], "eval_wall_s": r.eval_wall_s,
             "images_encoded": r.train["images_encoded"], "features_encode_s": r.train.get("features_encode_s"),
             "features_from_cache": r.train["features_from_cache"]} for r in records]


def bench_cache(args) -> dict:
    """Run the uncached sweep, then the cold-cached one; returns the benchmark's JSON result."""
    cache = Path(args.cache or os.environ.get("MM_ABLATE_CACHE") or Path.home() / ".cache/mm-ablate").expanduser()
    connectors = args.connectors
    overrides = [f"connector={connectors}", f"train.stages.0.steps={args.steps}", *args.overrides]
    if args.launcher:
        overrides.insert(0, f"hydra/launcher={args.launcher}")
    out: dict = {"benchmark": "cache", "connectors": connectors.split(","), "steps": args.steps,
                 "overrides": overrides, "cache_source": str(cache)}
    with tempfile.TemporaryDirectory(prefix="mm-ablate-bench-cache-") as tmp:
        tmp = Path(tmp)
        for mode, flag in (("uncached", "false"), ("cached", "true")):
            shadow = tmp / f"cache-{mode}"
            _shadow_cache(cache, shadow)
            results = tmp / f"results-{mode}"
            results.mkdir()
            print(f"[bench] {mode} sweep: {' '.join(overrides)} runtime.feature_cache={flag}", flush=True)
            wall, records = _sweep([*overrides, f"runtime.feature_cache={flag}"], shadow, results)
            out[mode] = {"wall_s": round(wall, 1), "points": _points(records)}
            if mode == "cached":
                feats = shadow / "features"
                out["feature_cache_bytes"] = _dir_bytes(feats) if feats.is_dir() else 0
                out["feature_cache_entries"] = len(list(feats.glob("*/DONE"))) if feats.is_dir() else 0
            print(f"[bench] {mode}: {wall:.0f} s", flush=True)
    out["ratio_cached_over_uncached"] = out["cached"]["wall_s"] / out["uncached"]["wall_s"]
    print(f"[bench] cached / uncached wall time = {out['ratio_cached_over_uncached']:.2f} "
          f"(feature cache {out['feature_cache_bytes'] / 2**20:.1f} MiB in {out['feature_cache_entries']} entries)")
    return out


def add_parser(sub) -> None:
    c = sub.add_parser("cache", help="a connector sweep with and without the frozen-feature cache")
    c.add_argument("--connectors", default="avg_pool,attn_pool,c_abstractor,mining")
    c.add_argument("--steps", type=int, default=600, help="training steps per point (the default sweep's budget)")
    c.add_argument("--launcher", default="local", help="hydra launcher ('' = the basic sequential one)")
    c.add_argument("--cache", default="", help="artifact cache to borrow backbones from (default: MM_ABLATE_CACHE)")
    c.add_argument("--out", default="results/bench")
    c.add_argument("overrides", nargs="*", help="more Hydra overrides for both sweeps")
