"""One study's report (its runs, seed summary, deltas, verdicts), and the all-runs overview.

``build`` gathers everything the tables, figures and notebooks show for a study from the tidy run frame;
``write`` renders it to ``<out>/tables`` and ``<out>/figures``. The command line (``python -m harness.tables``) and
the notebooks both go through here, so a notebook shows exactly what the committed tables say.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.analysis.figures import write_figures
from harness.analysis.findings import verdicts
from harness.analysis.studies import STUDIES, Study, deltas, headline, layout, missing_points, study_runs
from harness.analysis.tables import write_tables


@dataclass
class Report:
    study: Study
    members: pd.DataFrame  # tidy rows of the study's runs (every metric, every status)
    layout: pd.DataFrame  # seed summary per row x metric x shots x setup
    deltas: pd.DataFrame | None  # each row minus the base row
    verdicts: pd.DataFrame  # the MM1 lessons checked on this study
    missing: list[str]  # grid points of the study's experiment without a finished run

    @property
    def empty(self) -> bool:
        return self.members.empty

    def provenance(self) -> str:
        """Which runs the numbers come from (counts by status, step budget, seeds, command, grid points missing)."""
        per_run = self.members.drop_duplicates("cfg_hash")
        status = per_run["status"].value_counts().to_dict()
        steps = ", ".join(str(s) for s in sorted(per_run["step_budget"].dropna().unique()))
        seeds = self.layout["n"] if not self.layout.empty else pd.Series(dtype=int)
        n = f"{seeds.min()}" if len(seeds) and seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
        setups = per_run["context"].nunique()
        return (
            f"{len(per_run)} runs ({', '.join(f'{v} {k}' for k, v in sorted(status.items()))}); "
            f"step budget {steps or 'unknown'}; finished seeds per cell {n}"
            + (f"; {setups} setups (the context column names each by its settings that differ from the experiment "
               "file, or `as declared`)" if setups > 1 else "")
            + f"; produced by `{self.study.command}`"
            + (", plus those settings for the other setups." if setups > 1 else ".")
            + (f" No finished run yet at: {'; '.join(self.missing)}." if self.missing else "")
            + self._mixed_demos()
        )

    def _mixed_demos(self) -> str:
        """A warning when one setup's k-shot CIDEr averages runs scored with different caption demonstration
        formats (records from before eval.caption_demo existed are bare; today's default is prompted)."""
        shown = self.members.dropna(subset=["caption_demo"])
        out = []
        for ctx, part in shown.groupby("context"):
            runs = part.drop_duplicates(["cfg_hash", "caption_demo"]).groupby("caption_demo")["cfg_hash"].nunique()
            if len(runs) > 1:
                out.append(f" Setup {ctx}: k-shot CIDEr mixes caption demonstration formats "
                           f"({', '.join(f'{k}: {v} runs' for k, v in runs.items())}); score one side again with "
                           "`python -m harness.evaluate <run> eval.caption_demo=<format>` before comparing them.")
        return "".join(out)


def build(study: str | Study, runs: pd.DataFrame) -> Report:
    s = study if isinstance(study, Study) else STUDIES.get(study)
    members = study_runs(runs, s)
    lay, missing = layout(members, s), missing_points(members, s)
    return Report(s, members, lay, deltas(members, s), verdicts(runs, s.name), missing)


def write(report: Report, out_dir: str | Path) -> list[Path]:
    """Tables and figures of one study (under ``tables/`` and ``figures/``); nothing for a study without runs."""
    if report.empty:
        return []
    return write_tables(report, Path(out_dir)) + write_figures(report, Path(out_dir))


def figures(report: Report, out_dir: str | Path) -> list[Path]:
    """Only the figures (what a notebook displays); none for a study without runs."""
    return write_figures(report, Path(out_dir))


def runs_overview(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run: what it varied, its status and step budget, and its headline scores per shot count."""
    cols = [
        "cfg_hash",
        "experiment",
        "status",
        "connector",
        "encoder_arch",
        "encoder_data",
        "data",
        "resolution",
        "visual_tokens",
        "seed",
        "step_budget",
    ]
    per_run = runs.drop_duplicates("cfg_hash")[cols]
    scores = headline(runs)
    if scores.empty:
        return per_run.reset_index(drop=True)
    wide = scores.assign(column=scores["metric"] + " " + scores["shots"].astype(str) + "-shot")
    wide = wide.pivot_table(index="cfg_hash", columns="column", values="value", aggfunc="first", dropna=False)
    return per_run.merge(wide.reset_index(), on="cfg_hash", how="left").rename_axis(columns=None)


def study_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """Per study: runs found (by status) and the command that produces them."""
    rows = []
    for name in STUDIES.names():
        s = STUDIES.get(name)
        per_run = study_runs(runs, s).drop_duplicates("cfg_hash")
        rows.append(
            {
                "study": name,
                "title": s.title,
                "runs": len(per_run),
                "ok": int((per_run["status"] == "ok").sum()),
                "failed": int((per_run["status"] == "failed").sum()),
                # preempted (resumable) or still running: rerunning the study's command finishes them
                "unfinished": int(per_run["status"].isin(["running", "preempted", "interrupted"]).sum()),
                "command": s.command,
            }
        )
    return pd.DataFrame(rows)
