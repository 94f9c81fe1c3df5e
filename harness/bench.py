"""Benchmarks and diagnostics (never timed unit tests): ``python -m harness.bench <name> [options]``.

Each command lives in ``harness.diagnostics`` (``budget`` in ``harness.analysis``), returns its result as a dict and
has it written to ``<--out>/<name>-<host>-<time>.json`` (default ``results/bench/``) with the machine, the library
versions and the time.

Speed:

``connectors``: training step time, parameters and FLOPs per image of every connector on the embedded default
(``harness.diagnostics.speed_connectors``).
``cache``: a connector sweep with and without the frozen-feature cache (``harness.diagnostics.speed_cache``).
``budget``: per-stage wall times of a finished sweep, read from its records (``harness.analysis.budget``).
``decode``: images per second per core decoded from webdataset shards (``harness.diagnostics.speed_decode``).
``eval``: batched KV-cache generation vs. transformers ``generate`` one prompt at a time
(``harness.diagnostics.speed_eval``).
``train``: samples/s, tokens/s, memory and MFU of a configuration per speed switch
(``harness.diagnostics.speed_train``).
``loggers``: step time and time inside the experiment trackers (tensorboard, mlflow, wandb) against the jsonl log
alone (``harness.diagnostics.speed_loggers``).

``machines``: the same points from two machines, compared within their seed intervals
(``harness.diagnostics.compare_machines``).

What the tiny VLM learns:

``probe``: linear and MLP probes of what the frozen encoder's tokens carry, per attribute
(``harness.diagnostics.probe_encoder``).
``probe-connector``: the run's connector trained with a linear head on each attribute, no LM
(``harness.diagnostics.probe_connector``).
``probe-vlm``: the VLM trained on one question type, from a fresh connector or one that ``probe-connector`` trained
first (``harness.diagnostics.probe_vlm``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
from datetime import datetime, timezone
from importlib import import_module
from pathlib import Path

# name -> (module, the function in it that runs the command and returns its JSON result); each module has an
# ``add_parser(sub)`` that adds the command's options
COMMANDS = {
    "connectors": ("harness.diagnostics.speed_connectors", "bench_connectors"),
    "cache": ("harness.diagnostics.speed_cache", "bench_cache"),
    "budget": ("harness.analysis.budget", "bench_budget"),
    "decode": ("harness.diagnostics.speed_decode", "bench_decode"),
    "eval": ("harness.diagnostics.speed_eval", "bench_eval"),
    "train": ("harness.diagnostics.speed_train", "bench_train"),
    "loggers": ("harness.diagnostics.speed_loggers", "bench_loggers"),
    "probe": ("harness.diagnostics.probe_encoder", "bench_probe"),
    "probe-connector": ("harness.diagnostics.probe_connector", "bench_connector_probe"),
    "probe-vlm": ("harness.diagnostics.probe_vlm", "bench_vlm_probe"),
    "machines": ("harness.diagnostics.compare_machines", "bench_machines"),
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="which", required=True)
    modules = {name: import_module(mod) for name, (mod, _) in COMMANDS.items()}
    for module in dict.fromkeys(modules.values()):
        module.add_parser(sub)
    args = ap.parse_args(argv)
    result = getattr(modules[args.which], COMMANDS[args.which][1])(args)
    result.setdefault("machine", {"host": socket.gethostname(), "processor": platform.processor(),
                                  "cpus": os.cpu_count()})
    result.setdefault("when", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if "versions" not in result:
        from harness.records import library_versions

        result["versions"] = library_versions()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.which}-{socket.gethostname()}-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"[bench] written to {path}")


if __name__ == "__main__":
    main()
