"""Study figures as PNG files: metrics vs one factor, a panel per metric x shot count, a line per other-factor level.

Files are ``<out>/figures/<study>_vs_<x>.png``, readable on their own: the title names the study and the step
budget; rows are the headline metrics, columns the shot counts; axes carry units; error bars are the 95% t-interval
over seeds (no bar where only one seed finished); the legend names every line. Figures are built on ``matplotlib.figure.Figure`` (rendered by
Agg), never through pyplot, so nothing depends on an interactive backend or global state.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from harness.analysis.studies import FigureSpec

if TYPE_CHECKING:
    from harness.analysis.report import Report

AXIS_LABELS = {
    "visual_tokens": "visual tokens per image",
    "resolution": "encoder input resolution (px)",
    "caption_share": "captioned pairs / (captioned + interleaved)",
    "text_share": "text-only share of the mixture",
    "connector": "connector",
    "text_only": "text-only data",
    "synthetic": "synthetic captions",
}
METRIC_LABELS = {"CIDEr": "CIDEr-D (pycocoevalcap scale)", "VQA acc": "VQA accuracy"}


def _lines(df: pd.DataFrame, hue: list[str]):
    if not hue:
        yield "this run", df
        return
    for key, g in df.groupby(hue, dropna=False, sort=True):
        label = ", ".join(map(str, key if isinstance(key, tuple) else (key,)))
        yield label + (" (no finished run)" if g["n"].sum() == 0 else ""), g


def plot(report: Report, spec: FigureSpec) -> Figure:
    study, lay = report.study, report.layout
    several = lay["context"].nunique() > 1  # runs of several setups: tell lines apart by budget and setup name
    hue = [f for f in study.factors if f != spec.x] + (["step_budget", "context"] if several else [])
    metrics, shots = sorted(lay["metric"].unique()), sorted(lay["shots"].unique())
    levels = sorted(lay[spec.x].dropna().unique(), key=str) if spec.categorical else None
    fig = Figure(figsize=(3.6 * len(shots) + 2.8, 3.0 * len(metrics) + 1.0))
    axes = fig.subplots(len(metrics), len(shots), squeeze=False, sharex=True, sharey="row")
    for row, metric in zip(axes, metrics):
        for ax, k in zip(row, shots):
            cell = lay[(lay["metric"] == metric) & (lay["shots"] == k)]
            for label, g in _lines(cell, hue):
                g = g.sort_values(spec.x)
                x = [levels.index(v) for v in g[spec.x]] if levels else g[spec.x].to_numpy(float)
                yerr = np.vstack([g["mean"] - g["ci_lo"], g["ci_hi"] - g["mean"]])  # NaN (one seed): no bar drawn
                # named levels (connectors, on/off) have no order between them: markers only, no connecting line
                ax.errorbar(x, g["mean"], yerr=yerr, marker="o", capsize=3, label=label,
                            linestyle="none" if levels else "-")
            ax.set_title(f"{metric}, {k}-shot", fontsize=9)
            ax.grid(alpha=0.3)
        row[0].set_ylabel(METRIC_LABELS.get(metric, metric))
    for ax in axes[-1]:
        ax.set_xlabel(AXIS_LABELS.get(spec.x, spec.x))
        if levels:
            ax.set_xticks(range(len(levels)), [str(v) for v in levels])
        else:  # the levels that were run, not matplotlib's round numbers
            ax.set_xticks(sorted(lay[spec.x].dropna().unique()))
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize="small", title=", ".join(hue) or None)
    n = lay.loc[lay["n"] > 0, "n"]
    seeds = f"{n.min()}-{n.max()}" if len(n) and n.min() != n.max() else f"{n.max() if len(n) else 0}"
    steps = ", ".join(str(s) for s in sorted(lay["step_budget"].dropna().unique()))
    fig.suptitle(
        f"{study.title} (this run): vs {AXIS_LABELS.get(spec.x, spec.x)}\nstep budget {steps} steps; "
        f"error bars: 95% t-interval over seeds (n={seeds} per point)",
        fontsize=10,
    )
    right = 1 - 2.6 / fig.get_figwidth()  # room for the legend
    fig.subplots_adjust(
        left=0.9 / fig.get_figwidth(),
        right=right,
        bottom=0.6 / fig.get_figheight(),
        top=1 - 0.75 / fig.get_figheight(),
        wspace=0.3,
        hspace=0.35,
    )
    return fig


def write_figures(report: Report, out_dir: Path) -> list[Path]:
    if report.layout.empty:
        return []
    out = Path(out_dir) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in report.study.figures:
        path = out / f"{report.study.name}_vs_{spec.x}.png"
        plot(report, spec).savefig(path, dpi=100)
        paths.append(path)
    return paths
