"""``python -m harness.status [RESULTS_DIR | MULTIRUN_DIR] [--watch [SECONDS]]``: where each point of a sweep stands.

One row per point: its choices (only those that differ between points), status, host, step / budget, last loss,
elapsed time, the estimated time left for running points, and the first line of the error for points that did not
finish. A Hydra multirun folder (``multirun/<date>/<time>``) selects its points through the ``record_ref.json``
each job leaves; a results folder (default ``$MM_ABLATE_RESULTS``, else ``results``) shows every run it holds.

It reads only small files: each point's record and train log (one short JSON line per ``runtime.log_every``
steps), and a checkpoint only for a point that has no train log line yet. Nothing here needs the process that
runs a point, so it works for SLURM jobs on other hosts; a ``running`` record from another host cannot be checked
from here and stays ``running`` (the "last log" note tells a stalled job from a live one).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from datetime import datetime
from pathlib import Path

from harness.records import RECORD, Record, effective_status, read_record

TRAIN_LOG = "train_log.jsonl"  # harness.launch writes it into the run folder
CHECKPOINT = "checkpoint.pt"  # harness.train.checkpoint.CHECKPOINT, not imported: that module imports torch
PENDING = "pending"  # a multirun job that has named its run folder but not written the record yet
ACTIVE = ("running", PENDING)
NAN = float("nan")


def log_progress(run_dir: Path) -> dict | None:
    """Global step, last logged loss and s/step of the point's train log, or None when it has no line yet.

    The log restarts its ``step`` at every stage, so the global step adds the last step of each finished stage
    (always logged) to the current one."""
    path = run_dir / TRAIN_LOG
    if not path.is_file():
        return None
    done, last = 0, None
    with open(path) as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # the line the trainer is writing right now
                continue
            if last and (rec.get("stage") != last.get("stage") or rec["step"] <= last["step"]):
                done += last["step"]
            last = rec
    if last is None:
        return None
    return {"step": done + last["step"], "loss": last.get("loss", NAN), "s_per_step": last.get("s_per_step", NAN),
            "mtime": path.stat().st_mtime}


def checkpoint_step(run_dir: Path) -> int | None:
    """The global step a point's checkpoint holds. Cost: importing torch (1-2 s) and reading the pickled index;
    ``mmap=True`` leaves the tensors on disk, so a multi-GB checkpoint is not read."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        return None
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    except Exception:  # noqa: BLE001 - a checkpoint being replaced or from an older format: the step is unknown
        return None


def _epoch(iso: str | None) -> float:
    return datetime.fromisoformat(iso).timestamp() if iso else NAN


def _num(v) -> float:
    return NAN if v is None else float(v)


def point_row(rec: Record | None, run_dir: Path, now: float) -> dict:
    """The status row of one point. Numbers that do not apply or are unknown are NaN."""
    if rec is None:
        return {"point": run_dir.name, "choices": {}, "status": PENDING, "host": "", "step": NAN, "budget": NAN,
                "loss": NAN, "elapsed": NAN, "eta": NAN, "note": f"no {RECORD} yet"}
    status, train = effective_status(rec), rec.train or {}
    row = {"point": rec.cfg_hash or run_dir.name, "choices": rec.choices, "status": status,
           "host": rec.host or "", "step": NAN, "budget": _num(rec.step_budget), "loss": NAN,
           "elapsed": _num(rec.wall_s), "eta": NAN, "note": ""}
    started = _epoch(rec.started_at)
    prog = None if train.get("steps") is not None else log_progress(run_dir)
    if train.get("steps") is not None:  # training finished: the record's totals are exact
        row["step"], row["loss"] = train["steps"], _num(train.get("final_loss"))
    elif prog and prog["mtime"] < started and not (run_dir / CHECKPOINT).is_file():
        row["step"], prog = 0, None  # the log is an earlier attempt's, and this one starts over (nothing to resume)
    elif prog:
        row["step"], row["loss"] = prog["step"], _num(prog["loss"])
    else:
        row["step"] = checkpoint_step(run_dir) or 0
    if status == "running":
        row["elapsed"] = now - started
        if prog:  # training only: the estimate leaves out the evaluation that follows it
            row["eta"] = max(0.0, row["budget"] - row["step"]) * _num(prog["s_per_step"])
            row["note"] = f"last log {_duration(now - prog['mtime'])} ago"
        else:
            row["note"] = "no train log line yet (building, or in its first log_every steps)"
    elif status == "interrupted" and math.isnan(row["elapsed"]):  # until its last sign of life
        seen = max([(run_dir / RECORD).stat().st_mtime] + ([prog["mtime"]] if prog else []))
        row["elapsed"] = seen - started
    error = str(rec.error or "").strip()
    if error:
        row["note"] = error.splitlines()[0]
    elif status == "interrupted":
        row["note"] = f"process {rec.pid} is gone; run the same command again to resume"
    elif status == "ok" and rec.eval_failures():
        row["note"] = f"eval units failed: {', '.join(rec.eval_failures())} (python -m harness.evaluate retries them)"
    return row


def _read(run_dir: Path) -> Record | None:
    try:
        return read_record(run_dir)
    except (ValueError, OSError) as err:  # JSONDecodeError is a ValueError; a newer schema; a vanished file
        return Record(cfg_hash=run_dir.name, status="unreadable", error=str(err))


def find_points(folder: Path) -> list[tuple[Record | None, Path]]:
    """(record or None, run folder) per point: a multirun folder's jobs in job order, or a results folder's runs
    in the order they started."""
    refs = list(folder.glob("*/record_ref.json"))
    if refs or (folder / "multirun.yaml").is_file():
        refs.sort(key=lambda p: (0, int(p.parent.name), "") if p.parent.name.isdigit() else (1, 0, p.parent.name))
        return [(_read(d), d) for d in (Path(json.loads(r.read_text())["record"]).parent for r in refs)]
    if (folder / "runs").is_dir():
        points = [(_read(r.parent), r.parent) for r in (folder / "runs").glob(f"*/{RECORD}")]
        return sorted(points, key=lambda p: (str(p[0].started_at or "") if p[0] else "", p[1].name))
    raise SystemExit(f"status: {folder} is neither a results folder (runs/*/{RECORD}) nor a Hydra multirun folder "
                     "(multirun.yaml, */record_ref.json); pass one of them, or set MM_ABLATE_RESULTS")


def _duration(s: float) -> str:
    if math.isnan(s):
        return "-"
    s = int(max(0, s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def render(rows: list[dict], where: str) -> str:
    """The header (counts per status) and the table, as plain aligned text."""
    order = ["ok", "running", PENDING, "failed", "preempted", "interrupted"]
    counts = {s: n for s in order + sorted({r["status"] for r in rows} - set(order))
              if (n := sum(r["status"] == s for r in rows))}
    head = f"{len(rows)} point{'s' * (len(rows) != 1)} in {where}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    if not rows:
        return f"no points in {where} yet"
    keys = list(dict.fromkeys(k for r in rows for k in r["choices"]))
    varying = [k for k in keys if k == "connector" or len({str(r["choices"].get(k)) for r in rows}) > 1]
    table = [["point", *varying, "status", "host", "step", "loss", "elapsed", "eta", "note"]]
    for r in rows:
        step = "-" if math.isnan(r["step"]) else str(int(r["step"]))
        budget = "-" if math.isnan(r["budget"]) else str(int(r["budget"]))
        table.append([r["point"], *(str(r["choices"].get(k, "")) for k in varying), r["status"], r["host"],
                      f"{step}/{budget}", "-" if math.isnan(r["loss"]) else f"{r['loss']:.3f}",
                      _duration(r["elapsed"]), _duration(r["eta"]), r["note"]])
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)) + "  " + line[-1] for line in table]
    return "\n".join([head, *(line.rstrip() for line in lines)])


def status_rows(folder: Path) -> list[dict]:
    now = time.time()
    return [point_row(rec, d, now) for rec, d in find_points(folder)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.status", description="Where each point of a sweep stands: status, step / budget, loss, elapsed, time left, error.")
    p.add_argument("folder", nargs="?", type=Path, default=Path(os.environ.get("MM_ABLATE_RESULTS", "results")),
                   help="a Hydra multirun folder or a results folder (default $MM_ABLATE_RESULTS, else ./results)")
    p.add_argument("--watch", nargs="?", type=float, const=10.0, default=None, metavar="SECONDS",
                   help="refresh every SECONDS (default 10) until no point is running or Ctrl-C")
    args = p.parse_args(argv)
    if args.watch is not None and args.watch <= 0:
        p.error(f"--watch takes a positive number of seconds, got {args.watch:g}")
    folder = args.folder.expanduser()
    if not folder.is_dir():
        p.error(f"{folder} is not a folder: pass a results folder or a Hydra multirun folder (multirun/<date>/<time>)")
    try:
        while True:
            rows = status_rows(folder)
            clear = "\033[H\033[2J" if args.watch is not None and sys.stdout.isatty() else ""
            print(clear + render(rows, str(folder)), flush=True)
            if args.watch is None or not any(r["status"] in ACTIVE for r in rows):
                return 0
            time.sleep(args.watch)
            if not clear:
                print(flush=True)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
