"""The end-of-sweep table: one row per sweep point, headline scores beside the majority baseline.

Reads only the records of the points in this sweep (found through the ``record_ref.json`` each job leaves in its
Hydra folder), so points skipped because they were already done appear too. Writes markdown and CSV under
``<results_dir>/sweeps/<sweep-id>/`` and prints the markdown. Failed points show NaN metrics and their status.

A per-type VQA score that does not beat its majority baseline by more than ``CHANCE_SE`` standard errors is marked
(a dagger in the markdown, the ``vqa_at_chance`` column in the CSV): at a small step budget some question types stay
at the majority answer, and a difference between two such cells is noise, not a connector effect.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.analysis.load import run_fields
from harness.records import effective_status, eval_failures, read_record

AXES = ("connector", "encoder", "llm", "data", "train")
CHANCE_SE = 2.0  # one-sided, about 98 %: "above the majority baseline" means value - baseline > 2 stderr
CHANCE_MARK = "†"


def at_chance(entry: dict) -> bool:
    """True when a VQA entry with a ``majority_baseline`` does not beat it by ``CHANCE_SE`` standard errors.
    NaN scores (failed points) are not "at chance": they have no score at all, and their status says why."""
    vals = [entry.get(k) for k in ("value", "majority_baseline", "stderr")]
    if any(v is None or math.isnan(float(v)) for v in vals):
        return False
    value, base, se = vals
    return value - base <= CHANCE_SE * se


def record_row(rec: dict, shots: int = 0) -> dict:
    f = run_fields(rec)
    tokens = f["tokens_emitted"] if not math.isnan(f["tokens_emitted"]) else f["visual_tokens"]  # failed: as asked
    row: dict = {c: f[c] for c in AXES}
    row |= {
        "resolution": f["resolution"],
        "tokens": tokens,
        "seed": f["seed"],
        "steps": f["step_budget"],
        "status": f["status"],  # effective: a dead "running" point reads as interrupted
        "conn_params": f["connector_params"],
        "final_loss": f["final_loss"],
        "wall_s": f["wall_s"],
    }
    chance = []
    for e in rec.get("metrics", []):
        if e["shots"] != shots:
            continue
        # the world's own tasks only: TSV benchmarks and TextCore have their own task names
        if e["task"] == "caption" and e["metric"] == "cider" and e["subset"] == "all":
            row["CIDEr"] = e["value"]
        elif e["task"] == "vqa" and e["metric"] == "vqa_accuracy":
            row["VQA" if e["subset"] == "all" else f"vqa:{e['subset']}"] = e["value"]
            if e["subset"] != "all" and at_chance(e):
                chance.append(e["subset"])
        elif e["task"] == "textcore" and e["metric"] == "textcore_average":
            row["TextCore"] = e["value"]
        elif e["task"] not in ("caption", "vqa", "textcore", "mm1_average") and e["subset"] == "all":
            row[e["task"]] = e["value"]  # a TSV benchmark, under its own name (its metric is in the record)
    row["vqa_at_chance"] = " ".join(sorted(chance))
    return row


def baseline_row(rec: dict, shots: int = 0) -> dict:
    row = {"connector": "majority baseline"}
    for e in rec.get("metrics", []):
        if e["shots"] == shots and e["task"] == "vqa" and e["metric"] == "vqa_accuracy" and "majority_baseline" in e:
            row["VQA" if e["subset"] == "all" else f"vqa:{e['subset']}"] = e["majority_baseline"]
    return row


def summary_table(records: list[dict], shots: int = 0) -> pd.DataFrame:
    rows = [record_row(r, shots) for r in records]
    ok = [r for r in records if r.get("status") == "ok"]
    if ok:
        rows.append(baseline_row(ok[0], shots))
    df = pd.DataFrame(rows)
    drop = [c for c in AXES if c in df and df[c].nunique(dropna=True) <= 1 and c != "connector"]
    df = df.drop(columns=drop)
    for c in ("resolution", "tokens", "seed", "steps", "conn_params"):  # counts, not measurements: no decimals
        if c in df:
            df[c] = df[c].astype("Int64").astype("string").fillna("")
    return df


def marked_markdown(df: pd.DataFrame) -> str:
    """The table as markdown, each per-type VQA cell listed in ``vqa_at_chance`` followed by the dagger."""
    shown = df.drop(columns=["vqa_at_chance"]).astype(object)
    for i, types in df["vqa_at_chance"].fillna("").items():
        for t in types.split():
            shown.at[i, f"vqa:{t}"] = f"{df.at[i, f'vqa:{t}']:.3f}{CHANCE_MARK}"
    for c in shown.columns:  # floats as to_markdown's floatfmt=".3f" would; a label column's gaps stay blank
        label = not pd.api.types.is_float_dtype(df[c])
        shown[c] = [("" if label else "nan") if (v is pd.NA or (isinstance(v, float) and math.isnan(v)))
                    else f"{v:.3f}" if isinstance(v, float) else v for v in shown[c]]
    return shown.to_markdown(index=False)


def data_lines(records: list[dict]) -> list[str]:
    """One line per distinct training data source of the sweep: where it read from, records, skipped per reason,
    and the stored image size (own photos are stored at the run's resolution, the world at its native size)."""
    seen: dict[str, str] = {}
    for rec in records:
        data = rec.get("data") or {}
        for name, src in (data.get("sources") or {}).items():
            where = f"{src.get('format')} {src.get('root')}:{src.get('path')}"
            # stored_px per source in records since own photos are stored at the run's size (None: no images)
            size = src["stored_px"] if "stored_px" in src else data.get("image_size")
            seen.setdefault(f"{name} <- {where}", f"{src.get('records')} records, skipped "
                            f"{src.get('skipped') or 'nothing'}" + (f", images stored at {size} px" if size else ""))
    return [f"- {k}: {v}" for k, v in seen.items()]


def write_summary(records: list[dict], out_dir: Path, title: str) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    df = summary_table(records)
    df.to_csv(out_dir / "summary.csv", index=False)
    md = f"## {title}\n\n0-shot scores (world tasks on the world's test split; TSV benchmarks under their own name; "
    md += "VQA accuracy in [0, 1], CIDEr-D on pycocoevalcap's scale).\n\n"
    md += marked_markdown(df) + "\n"
    data = data_lines(records)
    if data:
        md += "\nTraining data:\n" + "\n".join(data) + "\n"
    if df["vqa_at_chance"].fillna("").str.len().any():
        md += (f"\n{CHANCE_MARK} not above the majority baseline (within {CHANCE_SE:g} standard errors): this question "
               "type was not learned at this budget; differences between such cells are noise.\n")
    (out_dir / "summary.md").write_text(md)
    return md


def sweep_records(sweep_dir: Path) -> list[dict]:
    records = []
    for ref in sorted(
        sweep_dir.glob("*/record_ref.json"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0
    ):
        rec = read_record(Path(json.loads(ref.read_text())["record"]).parent)
        if rec is not None:
            records.append(rec)
    return records


def sweep_problems(records: list[dict]) -> list[str]:
    """One line per point that failed, was interrupted or preempted, or could not score an eval unit."""
    out = []
    for rec in records:
        status, where = effective_status(rec), f"{rec.get('cfg_hash')} ({rec.get('choices') or {}})"
        if status != "ok":
            first = str(rec.get("error") or "").splitlines()[0] if rec.get("error") else ""
            out.append(f"  {status}: {where}" + (f": {first}" if first else ""))
        elif eval_failures(rec):
            out.append(f"  eval failed: {where}: units {', '.join(eval_failures(rec))} (python -m harness.evaluate "
                       f"{rec.get('cfg_hash')} retries them)")
    return out


class SweepSummary(Callback):
    """Hydra callback: say where per-point logs go when a multirun starts; print and save the table when it ends."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        launcher = str(config.hydra.launcher.get("_target_", ""))
        if "submitit" in launcher:  # jobs run in subprocesses, so their logs are not on this console
            folder = config.hydra.launcher.get("submitit_folder", f"{config.hydra.sweep.dir}/.submitit/%j")
            print(f"[sweep] points run as parallel jobs; follow them with: tail -f {str(folder).replace('%j', '*')}"
                  f"/*_log.out   (the summary table is printed here when all are done)", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        records = sweep_records(sweep_dir)
        if not records:
            print(f"[summary] no records found under {sweep_dir}")
            return
        out = Path(config.paths.results_dir).expanduser() / "sweeps" / sweep_dir.name.replace(":", "-")
        out = out.parent / f"{sweep_dir.parent.name}_{sweep_dir.name}"
        md = write_summary(records, out, f"Sweep {sweep_dir} ({len(records)} points)")
        print("\n" + md)
        print(f"[summary] written to {out}/summary.md and summary.csv")
        problems = sweep_problems(records)
        if problems:  # a sweep with failed points must not look like a success to a script or a scheduler
            print(f"[summary] {len(problems)} of {len(records)} points did not finish cleanly:\n" + "\n".join(problems),
                  flush=True)
            sys.exit(1)
