"""The end-of-sweep table: one row per sweep point, headline scores beside the majority baseline.

Reads only the records of the points in this sweep (found through the ``record_ref.json`` each job leaves in its
Hydra folder), so points skipped because they were already done appear too. Writes markdown and CSV under
``<results_dir>/sweeps/<sweep-id>/`` and prints the markdown. Failed points show NaN metrics and their status.

Columns: each world task's score under its ``column`` (harness.eval.tasks: ``CIDEr``, ``VQA``; a new task under its
name) and its slices as ``<task>:<subset>`` (``vqa:colour``), the TextCore average, and each TSV benchmark under its
own name.

A per-type VQA score that does not beat its majority baseline by more than ``CHANCE_SE`` standard errors is marked
(a dagger in the markdown, the ``vqa_at_chance`` column in the CSV): at a small step budget some question types stay
at the majority answer, and a difference between two such cells is noise, not a connector effect.

Seeds. Records that differ only in ``seed`` are seeds of one point (grouped on the hash of the recorded config
without ``seed``; records without a config on their labels: axes, resolution, tokens, steps).

- Every point has one seed: the markdown is one row per record, and a line under it says the differences between
  rows are untested.
- Some point has several: the markdown is one row per point. Each score cell is the mean over the point's seeds
  +- the half-width of its 95% t-interval (:func:`harness.analysis.stats.mean_interval`); ``n`` counts the point's
  runs, and a cell with fewer finite values (a failed seed) says ``(n=k)``. On CIDEr and VQA the best row (highest
  mean among the points with two or more finished seeds) is named, and a ``*`` after a mean says Welch's 95% interval for its difference from the best row
  (:func:`harness.analysis.stats.welch_interval`) excludes 0; each comparison is on its own (not corrected for the
  number of rows), and a point with one finished seed is not tested. A per-type VQA mean carries the dagger unless it
  is above chance on both counts: it beats the baseline by ``CHANCE_SE`` times the records' mean evaluation stderr
  (the per-record rule on the mean; every seed scores the same test questions, so averaging seeds does not shrink
  that error), and its seed interval's lower bound is above the baseline (with one seed, only the first applies).

``summary.csv`` keeps one row per record (per seed) in every case, so scripts reading it see the same columns
whatever the seeds. A sweep with several seeds of a point also writes ``summary_seeds.csv``: one row per point with,
for each score column ``c``, the mean ``c``, the interval ``c_lo``/``c_hi``, the finite count ``c_n``, and for
CIDEr and VQA ``c_vs_best_lo``/``c_vs_best_hi`` (Welch interval of the difference from the best row) and
``c_below_best`` (that interval is entirely below 0), ``c_best`` (the row the others are compared with).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.analysis.load import run_fields, switch_of
from harness.analysis.stats import CHANCE_SE, Interval, at_chance, mean_interval, seeds_at_chance, welch_interval
from harness.config.schema import UNHASHED_SECTIONS
from harness.eval.aggregates import text_task_of
from harness.eval.tasks import RESERVED, WORLD_TASKS, is_world_task
from harness.records import Record, effective_status, read_record

AXES = ("connector", "encoder", "llm", "data", "train")
LABELS = (*AXES, "resolution", "tokens", "steps")  # what tells one point from another in the table
RUN_COLUMNS = ("seed", "status", "conn_params", "final_loss", "wall_s", "vqa_at_chance")  # per run, not scores
COMPARED = ("CIDEr", "VQA")  # columns whose rows are tested against the best row
BELOW_BEST_MARK = "*"
ONE_SEED_LINE = "One seed per point: differences between rows are untested; add seed=0,1,2 for intervals."
CHANCE_MARK = "†"


def record_row(rec: Record, shots: int = 0) -> dict:
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
    for e in rec.metrics:
        if e["shots"] != shots:
            continue
        column = world_column(e)
        if column is not None:  # a world task's score in its metric: overall, or one slice (a question type)
            row[column] = e["value"]
            if e["subset"] != "all" and at_chance(e):
                chance.append(e["subset"])
        elif e["task"] == "textcore" and e["metric"] == "textcore_average":
            row["TextCore"] = e["value"]
        elif (not is_world_task(e["task"]) and e["task"] not in RESERVED and e["subset"] == "all"
              and text_task_of(e) is None):
            row[e["task"]] = e["value"]  # a TSV benchmark, under its own name (its metric is in the record)
    row["vqa_at_chance"] = " ".join(sorted(chance))
    return row


def world_column(entry: dict) -> str | None:
    """The summary column of a world task's entry in the task's own metric (harness.eval.tasks): the task's
    ``column`` (CIDEr, VQA; else its name) for ``subset`` all, ``<task>:<subset>`` for a slice; None for anything
    else (TSV benchmarks, TextCore, averages, a world task's other metrics)."""
    task = WORLD_TASKS.get(entry["task"]) if is_world_task(entry["task"]) and text_task_of(entry) is None else None
    if task is None or entry["metric"] != task.metric:
        return None
    return (task.column or task.name) if entry["subset"] == "all" else f"{task.name}:{entry['subset']}"


def baseline_row(rec: Record, shots: int = 0) -> dict:
    row = {"connector": "majority baseline"}
    for e in rec.metrics:
        if e["shots"] == shots and "majority_baseline" in e and world_column(e) is not None:
            row[world_column(e)] = e["majority_baseline"]
    return row


SETTING = "setting"  # the column of what else tells points apart (``hidden_settings``); absent when nothing does


def hidden_settings(records: list[Record]) -> list[str]:
    """Per record, the settings that tell it from the other points and that no label column shows, in override
    syntax (``encoder.layers=2 encoder.pretrain_captions=caption`` for a sweep of keys below a group); all ""
    when the labels tell every point apart. A key counts when it varies between records that share every label
    (connector and the other group choices, resolution, tokens, steps); so ``connector.num_tokens``, which follows
    the tokens column, or ``hr_resolution``, which follows resolution, never shows. A list whose length varies is
    shown whole (``train.stages.0.trainable=[connector]``). The seed, evaluation and what never changes a trained point
    are left out, and so are records without a config (they have nothing to compare); a calibration switch run
    shows as ``switch=<name>``, since the runtime section it changes is one of those left out."""
    from harness.analysis.studies import leaves, override_value  # one override-path spelling for studies and here

    def point(r: Record) -> dict:
        cfg = {k: v for k, v in r.config.items() if k not in (*UNHASHED_SECTIONS, "hydra", "eval", "seed")}
        return cfg | ({"switch": switch_of(r)} if switch_of(r) else {})

    have = [i for i, r in enumerate(records) if r.config]
    labels = {i: json.dumps([record_row(records[i]).get(c) for c in LABELS], default=str) for i in have}
    points = {i: point(records[i]) for i in have}  # once per record: every key below reads them
    flat = {i: leaves(points[i]) for i in have}
    varying = set()
    for key in set().union(*flat.values()) if flat else ():
        seen: dict[str, set[str]] = {}
        for i in have:
            seen.setdefault(labels[i], set()).add(json.dumps(flat[i].get(key), default=str))
        if any(len(values) > 1 for values in seen.values()):
            varying.add(_list_parent(key, list(points.values())))
    out = [""] * len(records)
    for i in have:
        values = {k: _value_at(points[i], k) for k in sorted(varying)}
        out[i] = " ".join(f"{k}={override_value(v)}" for k, v in values.items() if v is not _ABSENT)
    return out


_ABSENT = object()


def _value_at(cfg: Any, path: str) -> Any:
    """The value at an override path (``train.stages.0.trainable``), or ``_ABSENT``."""
    node = cfg
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _ABSENT
    return node


def _list_parent(key: str, configs: list[dict]) -> str:
    """``key`` cut back to the outermost list below it whose length differs between ``configs`` (so a list that
    grew is shown whole), else ``key`` itself."""
    parts = key.split(".")
    for n in range(1, len(parts)):
        if parts[n].isdigit():
            parent = ".".join(parts[:n])
            lengths = {len(v) if isinstance(v := _value_at(c, parent), list) else -1 for c in configs}
            if len(lengths) > 1:
                return parent
    return key


def summary_table(records: list[Record], shots: int = 0) -> pd.DataFrame:
    rows = [record_row(r, shots) for r in records]
    settings = hidden_settings(records)
    if any(settings):  # after the label columns, before the per-run ones (record_row's order otherwise kept)
        rows = [{**{k: v for k, v in row.items() if k in (*AXES, "resolution", "tokens")}, SETTING: s,
                 **{k: v for k, v in row.items() if k not in (*AXES, "resolution", "tokens")}}
                for row, s in zip(rows, settings)]  # fmt: skip
    ok = [r for r in records if r.status == "ok"]
    if ok:
        rows.append(baseline_row(ok[0], shots))
    df = pd.DataFrame(rows)
    drop = [c for c in AXES if c in df and df[c].nunique(dropna=True) <= 1 and c != "connector"]
    df = df.drop(columns=drop)
    for c in ("resolution", "tokens", "seed", "steps", "conn_params"):  # counts, not measurements: no decimals
        if c in df:
            df[c] = df[c].astype("Int64").astype("string").fillna("")
    return df


def point_key(rec: Record) -> str:
    """What a record's seeds share: the hash of its recorded config without ``seed``, else its table labels."""
    cfg = rec.config
    if cfg:
        from harness.config.hashing import (
            config_hash,  # the training hash's own rules (unhashed sections, eval left out)
        )

        return config_hash({k: v for k, v in cfg.items() if k != "seed"}, needs_hr=True)
    row = record_row(rec)
    return json.dumps([row.get(c) for c in LABELS], default=str)


def seed_groups(records: list[Record]) -> list[list[Record]]:
    """Records grouped by point, in sweep order; a cfg_hash listed twice (the same run) counts once. A calibration
    switch run (``switch:<name>`` tag) shares its base's hash but is a run and a point of its own."""
    groups: dict[str, list[Record]] = {}
    seen: set[tuple[str, str]] = set()
    for rec in records:
        key = (rec.cfg_hash, switch_of(rec))
        if rec.cfg_hash is not None and key in seen:
            continue
        seen.add(key)
        groups.setdefault(point_key(rec) + "|" + key[1], []).append(rec)
    return list(groups.values())


def has_seeds(records: list[Record]) -> bool:
    return any(len(g) > 1 for g in seed_groups(records))


def _status_line(statuses: list[str]) -> str:
    counts = pd.Series(statuses).value_counts(sort=False)
    return statuses[0] if len(counts) == 1 else ", ".join(f"{n} {s}" for s, n in counts.items())


def _chance_types(recs: list[Record], shots: int) -> list[str]:
    """Question types whose seed mean is at chance (see the module docstring for the two-part rule)."""
    entries: dict[str, list[dict]] = {}
    for rec in recs:
        for e in rec.metrics:
            if (e["shots"] == shots and e["subset"] != "all" and "majority_baseline" in e
                    and world_column(e) is not None):
                entries.setdefault(e["subset"], []).append(e)
    out = []
    for t, es in entries.items():
        finite = [e for e in es if math.isfinite(float(e["value"]))]
        if not finite:
            continue  # no score at all (failed seeds): its status says why
        values, stderrs = [e["value"] for e in es], [e.get("stderr", math.nan) for e in es]
        if seeds_at_chance(values, stderrs, float(finite[0]["majority_baseline"])):
            out.append(t)
    return sorted(out)


def seed_table(records: list[Record], shots: int = 0) -> pd.DataFrame:
    """One row per point (records differing only in seed), then the majority baseline row.

    Columns: the labels of :func:`summary_table` (axes that vary, resolution, tokens, steps), ``n`` (runs),
    ``seeds``, ``status``, ``conn_params``, mean ``final_loss`` and ``wall_s``, and for every score column ``c``:
    ``c`` (mean over finite values), ``c_lo``/``c_hi`` (95% t-interval; NaN with fewer than two), ``c_n``; for
    CIDEr and VQA also ``c_vs_best_lo``/``c_vs_best_hi`` and ``c_below_best``; ``vqa_at_chance`` per point."""
    groups = seed_groups(records)
    per_rec = [[record_row(r, shots) for r in g] for g in groups]
    flat = pd.DataFrame([row for rows in per_rec for row in rows])
    labels = [c for c in LABELS if c in flat and (c not in AXES or c == "connector" or flat[c].nunique() > 1)]
    settings = hidden_settings([g[0] for g in groups])
    if any(settings):
        labels.append(SETTING)
        for rows, s in zip(per_rec, settings, strict=True):
            for r in rows:
                r[SETTING] = s
    scores = [c for c in flat.columns if c not in (*LABELS, *RUN_COLUMNS)]
    values: dict[str, list[list[float]]] = {c: [] for c in scores}
    out = []
    for g, rows in zip(groups, per_rec):
        ok = [r for r in rows if r["status"] == "ok"] or rows  # labels as the finished runs report them
        row = {c: ok[0].get(c) for c in labels}
        row |= {"n": len(rows), "seeds": " ".join(str(r["seed"]) for r in rows),
                "status": _status_line([r["status"] for r in rows]), "conn_params": ok[0].get("conn_params"),
                "final_loss": mean_interval([r.get("final_loss", math.nan) for r in rows]).mean,
                "wall_s": mean_interval([r.get("wall_s", math.nan) for r in rows]).mean}
        for c in scores:
            vals = [float(r.get(c, math.nan)) for r in rows]
            values[c].append(vals)
            iv = mean_interval(vals)
            row |= {c: iv.mean, f"{c}_lo": iv.lo, f"{c}_hi": iv.hi, f"{c}_n": iv.n}
        row["vqa_at_chance"] = " ".join(_chance_types(g, shots))
        out.append(row)
    for c in (c for c in COMPARED if c in scores):
        # a lucky single seed must not become the yardstick nothing can be tested against
        testable = [r[c] if r[f"{c}_n"] > 1 else math.nan for r in out]
        means = testable if any(math.isfinite(m) for m in testable) else [r[c] for r in out]
        best = int(pd.Series(means, dtype=float).idxmax()) if any(math.isfinite(m) for m in means) else None
        untested = Interval(math.nan, math.nan, math.nan, 0)  # the best row against itself, or no best at all
        for i, r in enumerate(out):
            iv = welch_interval(values[c][i], values[c][best]) if best is not None and i != best else untested
            r |= {f"{c}_vs_best_lo": iv.lo, f"{c}_vs_best_hi": iv.hi, f"{c}_below_best": bool(iv.hi < 0),
                  f"{c}_best": i == best}
    ok_recs = [r for r in records if r.status == "ok"]
    if ok_recs:
        out.append(baseline_row(ok_recs[0], shots))
    df = pd.DataFrame(out)
    for c in ("resolution", "tokens", "steps", "conn_params", "n", *(f"{c}_n" for c in scores)):
        if c in df:
            df[c] = df[c].astype("Int64").astype("string").fillna("")
    return df


def _label(row: pd.Series, df: pd.DataFrame, labels: list[str]) -> str:
    """The row's name by the labels that vary between points (the connector when none does)."""
    points = df[df["n"] != ""]
    varying = [c for c in labels if points[c].nunique(dropna=False) > 1] or ["connector"]
    return ", ".join(f"{c}={row[c]}" for c in varying) if len(varying) > 1 else str(row[varying[0]])


def seed_markdown(df: pd.DataFrame) -> tuple[str, list[str]]:
    """The seed table as markdown (mean +- half-width, marks) and the footnote lines its marks need."""
    labels = [c for c in (*LABELS, SETTING) if c in df]
    scores = [c for c in df.columns if f"{c}_lo" in df]
    shown = df[[*labels, "n", "status", "conn_params", "final_loss", "wall_s", *scores]].astype(object)
    points = df["n"] != ""  # the baseline row has no runs
    for c in (*labels, "n", "status", "conn_params"):  # label columns: a gap stays blank
        shown[c] = ["" if pd.isna(v) else v for v in shown[c]]
    for c in ("final_loss", "wall_s"):
        shown[c] = ["" if not p else "nan" if math.isnan(v) else f"{v:.3f}" for p, v in zip(points, df[c])]
    notes = []
    for c in scores:
        cells = []
        for i, r in df.iterrows():
            if not points[i]:
                cells.append("" if pd.isna(r[c]) else f"{r[c]:.3f}")
                continue
            if math.isnan(r[c]):
                cells.append("nan")
                continue
            cell = f"{r[c]:.3f}"
            below = r.get(f"{c}_below_best")
            if pd.notna(below) and below:
                cell += BELOW_BEST_MARK
            if ":" in c and c.split(":", 1)[1] in str(r["vqa_at_chance"]).split():  # a world task's slice
                cell += CHANCE_MARK
            if not math.isnan(r[f"{c}_lo"]):
                cell += f" ± {(r[f'{c}_hi'] - r[f'{c}_lo']) / 2:.3f}"
            if r[f"{c}_n"] != r["n"]:
                cell += f" (n={r[f'{c}_n']})"
            cells.append(cell)
        shown[c] = cells
        if f"{c}_best" in df and df[f"{c}_best"].eq(True).any():
            best = df[df[f"{c}_best"].eq(True)].iloc[0]
            notes.append(f"{c}: best {_label(best, df, labels)} ({best[c]:.3f})")
    lines = [("Each row is one point: mean ± half-width of the 95% t-interval over its seeds (`n` runs; `(n=k)` "
              "where only k of them have that score). Per-seed rows are in summary.csv.")]
    if notes:
        lines.append(f"A {BELOW_BEST_MARK} after a mean: below the best row of its column ({'; '.join(notes)}), "
                     "Welch's 95% interval for the difference excludes 0 (each comparison on its own, not corrected for the number of rows; "
                     "a point with one finished seed is not tested). An unmarked row is not distinguishable from the "
                     "best at these seeds.")
    return shown.to_markdown(index=False, disable_numparse=True), lines


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


def data_lines(records: list[Record]) -> list[str]:
    """One line per distinct training data source of the sweep: where it read from, records, skipped per reason,
    and the stored image size (own photos are stored at the run's resolution, the world at its native size)."""
    seen: dict[str, str] = {}
    for rec in records:
        data = rec.data or {}
        for name, src in (data.get("sources") or {}).items():
            where = f"{src.get('format')} {src.get('root')}:{src.get('path')}"
            # stored_px per source in records since own photos are stored at the run's size (None: no images)
            size = src["stored_px"] if "stored_px" in src else data.get("image_size")
            seen.setdefault(f"{name} <- {where}", f"{src.get('records')} records, skipped "
                            f"{src.get('skipped') or 'nothing'}" + (f", images stored at {size} px" if size else ""))
    return [f"- {k}: {v}" for k, v in seen.items()]


def fairness_lines(records: list[Record]) -> list[str]:
    """A line per connector that sees more than the table's resolution column says: a high-resolution encoder (its
    parameters are in the record) means a second view of the image, which the other rows do not get."""
    out: dict[str, str] = {}
    for rec in records:
        params = (rec.model or {}).get("params") or {}
        cfg = rec.config
        if (params.get("hr_encoder") or 0) > 0:
            name = (cfg.get("connector") or {}).get("name", "?")
            out.setdefault(name, (
                f"- {name} also sees the image at {cfg.get('hr_resolution')} px through its high-resolution encoder "
                f"({(cfg.get('hr_encoder') or {}).get('name', '?')}), beside its {rec.resolution} px "
                f"low-resolution input; with {rec.visual_tokens} visual tokens its queries are pooled from the "
                "low-resolution grid, where Mini-Gemini uses one query per patch (M = N: set visual_tokens to the "
                "encoder's patch count, e.g. 64 for clip_tiny at 64 px)."))
    return list(out.values())


def write_summary(records: list[Record], out_dir: Path, title: str) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    df = summary_table(records)
    df.to_csv(out_dir / "summary.csv", index=False)
    md = f"## {title}\n\n0-shot scores (world tasks on the world's test split; TSV benchmarks under their own name; "
    md += "VQA accuracy in [0, 1], CIDEr-D on pycocoevalcap's scale).\n\n"
    if has_seeds(records):
        seeds = seed_table(records)
        seeds.to_csv(out_dir / "summary_seeds.csv", index=False)
        table, notes = seed_markdown(seeds)
        md += table + "\n\n" + "\n".join(notes) + "\n"
        chance = seeds["vqa_at_chance"]
        rule = (f"within {CHANCE_SE:g} evaluation standard errors, or the seed interval reaches down to the "
                "baseline")
    else:
        md += marked_markdown(df) + "\n\n" + ONE_SEED_LINE + "\n"
        (out_dir / "summary_seeds.csv").unlink(missing_ok=True)  # a stale one from an earlier write would mislead
        chance = df["vqa_at_chance"]
        rule = f"within {CHANCE_SE:g} standard errors"
    data = data_lines(records)
    if data:
        md += "\nTraining data:\n" + "\n".join(data) + "\n"
    fair = fairness_lines(records)
    if fair:
        md += "\nNot like for like:\n" + "\n".join(fair) + "\n"
    if chance.fillna("").str.len().any():
        md += (f"\n{CHANCE_MARK} not above the majority baseline ({rule}): this question "
               "type was not learned at this budget; differences between such cells are noise.\n")
    (out_dir / "summary.md").write_text(md)
    return md


def sweep_records(sweep_dir: Path) -> list[Record]:
    records = []
    for ref in sorted(
        sweep_dir.glob("*/record_ref.json"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0
    ):
        rec = read_record(Path(json.loads(ref.read_text())["record"]).parent)
        if rec is not None:
            records.append(rec)
    return records


def sweep_problems(records: list[Record]) -> list[str]:
    """One line per point that failed, was interrupted or preempted, or could not score an eval unit."""
    out = []
    for rec in records:
        status, where = effective_status(rec), f"{rec.cfg_hash} ({rec.choices})"
        if status != "ok":
            first = str(rec.error).splitlines()[0] if rec.error else ""
            out.append(f"  {status}: {where}" + (f": {first}" if first else ""))
        elif rec.eval_failures():
            out.append(f"  eval failed: {where}: units {', '.join(rec.eval_failures())} (python -m harness.evaluate "
                       f"{rec.cfg_hash} retries them)")
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
        seeds = " and summary_seeds.csv (one row per point)" if (out / "summary_seeds.csv").is_file() else ""
        print(f"[summary] written to {out}/summary.md and summary.csv{seeds}")
        problems = sweep_problems(records)
        if problems:  # a sweep with failed points must not look like a success to a script or a scheduler
            print(f"[summary] {len(problems)} of {len(records)} points did not finish cleanly:\n" + "\n".join(problems),
                  flush=True)
            sys.exit(1)
