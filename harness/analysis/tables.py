"""Render a study report as markdown, CSV and LaTeX: ``<out>/tables/<study>.{md,csv,tex}``.

The markdown and LaTeX files hold, in separate sections, "this run" (our numbers laid out as the paper lays its
own: one row per setting, one column per metric x shot count), the difference of each row from the study's base
row, the paper's reference numbers, and the lesson verdicts. The paper's values never share a column with ours.
The CSV is the tidy seed summary of this run (numbers only); ``<study>_paper.csv`` and ``<study>_verdicts.csv``
hold the other two tables in machine-readable form.

A cell reads ``mean ± half-width (n=k)``: the 95% t-interval over k finished seeds. With one seed there is no
interval; with none the cell is ``NaN`` and names the failed runs, never 0.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from harness.analysis.report import Report

SCORES = (
    "CIDEr-D on pycocoevalcap's scale and VQA accuracy in [0, 1], on the world's test split. "
    "Cells: mean ± half-width of the 95% t-interval over n finished seeds; NaN = no finished run, never 0."
)
POWER_NOTE = (
    "MDE (80%): the smallest true effect these blocks detect with 80% power at two-sided 5% "
    "((t_0.975 + t_0.8) x standard error, Welch's for a comparison of two effects). Seeds to resolve: for an "
    "inconclusive verdict, the seeds per cell at which the observed effect, if it were the true one with the "
    "observed spread, would be detected with 80% power (noncentral t); an estimate from few seeds, so an order "
    "of magnitude."
)
_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "`": "",  # markdown code quotes around commands; LaTeX would render them as opening quotes
}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def cell(mean: float, lo: float, hi: float, n: int, failed: int = 0) -> str:
    if not math.isfinite(mean):
        text = "NaN"
    elif math.isfinite(lo) and math.isfinite(hi):
        text = f"{mean:.3f} ± {(hi - lo) / 2:.3f} (n={n})"
    else:
        text = f"{mean:.3f} (n={n})"
    return text + (f" [{failed} failed]" if failed else "")


def _row_columns(report: Report, df: pd.DataFrame) -> list[str]:
    """The study's row columns, plus the step budget, plus the setup name when runs of several setups are shown."""
    cols = [*report.study.rows, "step_budget"]
    return cols + (["context"] if df["context"].nunique() > 1 else [])


def wide(report: Report) -> pd.DataFrame:
    """This run, paper layout: one row per setting, one column per metric x shot count."""
    lay = report.layout
    if lay.empty:
        return pd.DataFrame()
    lay = lay.assign(
        column=lay["metric"] + " " + lay["shots"].astype(str) + "-shot",
        text=[cell(r.mean, r.ci_lo, r.ci_hi, r.n, r.failed) for r in lay.itertuples()],
    )
    order = lay.sort_values(["metric", "shots"])["column"].unique()
    out = lay.set_index([*_row_columns(report, lay), "column"])["text"].unstack("column")
    return out[order].reset_index().rename_axis(columns=None)


def delta_wide(report: Report) -> pd.DataFrame:
    d = report.deltas
    if d is None or d.empty:
        return pd.DataFrame()
    d = d.assign(
        column="Δ " + d["metric"] + " " + d["shots"].astype(str) + "-shot",
        text=[cell(r.delta, r.ci_lo, r.ci_hi, r.n) for r in d.itertuples()],
    )
    index = [*report.study.rows] + (["context"] if d["context"].nunique() > 1 else [])
    order = d.sort_values(["metric", "shots"])["column"].unique()
    return d.set_index([*index, "column"])["text"].unstack("column")[order].reset_index().rename_axis(columns=None)


def verdict_display(verdicts: pd.DataFrame) -> pd.DataFrame:
    ci = [
        f"{r.effect:+.3f} [{r.ci_lo:+.3f}, {r.ci_hi:+.3f}]"
        if math.isfinite(r.ci_lo)
        else ("NaN" if not math.isfinite(r.effect) else f"{r.effect:+.3f} (no interval)")
        for r in verdicts.itertuples()
    ]
    out = verdicts.assign(
        **{
            "effect [95% CI]": ci,
            # "±" keeps tabulate from re-parsing the text as a number (which drops trailing zeros: 0.020 -> 0.02)
            "MDE (80%)": [f"±{m:.3f}" if math.isfinite(m) else "NaN" for m in verdicts["mde"]],
            "seeds to resolve": [_seeds_text(r) for r in verdicts.itertuples()],
        }
    )
    # one setup: its name says nothing new ("" is a study with no records, not a setup)
    several = "setup" in verdicts and verdicts.loc[verdicts["setup"] != "", "setup"].nunique() > 1
    cols = ["lesson", "claim", "metric", "shots", "effect [95% CI]", "blocks", "steps", *(["setup"] * several),
            "verdict", "detail"]  # fmt: skip
    return out[cols + ["MDE (80%)", "seeds to resolve"]]


def _seeds_text(r) -> str:
    if r.seeds_status == "resolved":
        return "resolved"
    now = f" (now {int(r.seeds)})" if math.isfinite(r.seeds) else ""
    if r.seeds_status == "ok":
        return f"{int(r.seeds_to_resolve)} seeds per cell{now}"
    if r.seeds_status.startswith(">"):
        return f"{r.seeds_status} seeds per cell{now}"
    return f"NaN ({r.seeds_status})"


def _md(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False) if not df.empty else "(none)"


def _tex(df: pd.DataFrame) -> str:
    if df.empty:
        return "(none)\n"
    body = df.map(lambda v: tex_escape(v) if isinstance(v, str) else v)
    body.columns = [tex_escape(c) for c in df.columns]
    return body.to_latex(index=False, escape=False, na_rep="NaN", float_format=lambda x: f"{x:g}")


def markdown(report: Report) -> str:
    s, parts = report.study, []
    question = s.question if s.question.endswith(("?", ".")) else s.question + "."
    parts.append(f"# {s.title} ({s.name})\n\n{question}\n\n{report.provenance()}\n")
    parts.append(f"## This run\n\n{SCORES}\n\n{_md(wide(report))}\n")
    if s.base is not None:
        base = ", ".join(f"{k}={v}" for k, v in s.base.items())
        parts.append(
            f"## This run: difference from the base row ({base})\n\nWelch 95% interval.\n\n{_md(delta_wide(report))}\n"
        )
    parts.append(
        f"## Paper (MM1), for reference\n\nSource: {s.paper.source}. Only quoted paper wording (P) is confirmed; "
        "no number here has been checked against the paper PDF. MM1 averages eight benchmarks at billion-parameter "
        "scale: compare directions and orderings, not values.\n\n"
        + (f"{_md(s.paper.table())}\n\n" if s.paper.rows else "")
        + f"{_md(s.paper.notes_table())}\n"
    )
    parts.append(f"## Verdicts: MM1 lessons on this run\n\n{POWER_NOTE}\n\n{_md(verdict_display(report.verdicts))}\n")
    return "\n".join(parts)


def latex(report: Report) -> str:
    s = report.study
    parts = [
        f"% {s.title} ({s.name}): generated by python -m harness.tables {s.name}",
        rf"\paragraph{{This run.}} {tex_escape(report.provenance())} {tex_escape(SCORES)}",
        _tex(wide(report)),
    ]
    if s.base is not None:
        parts += [r"\paragraph{This run, difference from the base row.}", _tex(delta_wide(report))]
    parts += [rf"\paragraph{{Paper (MM1), for reference.}} {tex_escape(s.paper.source)}."]
    if s.paper.rows:
        parts.append(_tex(s.paper.table()))
    parts += [
        _tex(s.paper.notes_table()),
        rf"\paragraph{{Verdicts.}} {tex_escape(POWER_NOTE)}",
        _tex(verdict_display(report.verdicts)),
    ]
    return "\n".join(parts)


def write_tables(report: Report, out_dir: Path) -> list[Path]:
    out = Path(out_dir) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    name = report.study.name
    paths = {
        "md": out / f"{name}.md",
        "csv": out / f"{name}.csv",
        "tex": out / f"{name}.tex",
        "paper": out / f"{name}_paper.csv",
        "verdicts": out / f"{name}_verdicts.csv",
    }
    paths["md"].write_text(markdown(report))
    report.layout.to_csv(paths["csv"], index=False)
    paths["tex"].write_text(latex(report))
    paper = report.study.paper
    (paper.table() if paper.rows else paper.notes_table()).to_csv(paths["paper"], index=False)
    report.verdicts.to_csv(paths["verdicts"], index=False)
    return list(paths.values())
