"""What a study notebook shows, in one place: every ``notebooks/<study>.py`` keeps only its own introduction.

The sections mirror ``python -m harness.tables <study>``: provenance, this run laid out as the paper does, the
difference from the base row, figures, the paper's numbers (reference only, never mixed with ours) and the verdicts.
"""

from __future__ import annotations

from pathlib import Path

from harness.analysis import report, tables
from harness.analysis.load import load_runs


def show_study(name: str, results: str | Path) -> report.Report:
    """Display study ``name`` built from the records under ``results``; returns the report for further digging."""
    from IPython.display import Image, Markdown, display

    rep = report.build(name, load_runs(results))
    display(Markdown(rep.provenance() if not rep.empty else f"No records yet: run `{rep.study.command}`."))
    display(Markdown("## This run, laid out as the paper does\nMean ± half-width of the 95% t-interval over "
                     "finished seeds; NaN where no run finished."))
    display(tables.wide(rep))
    display(Markdown("## Difference from the base row (Welch 95% interval)"))
    display(tables.delta_wide(rep))
    display(Markdown("## Figures"))
    for path in report.figures(rep, results):
        display(Image(filename=str(path)))
    display(Markdown("## Paper (MM1), for reference only\nEvery number carries its confidence tag from "
                     "`docs/mm1_reference.md`; none has been checked against the PDF."))
    display(Markdown(rep.study.paper.source))
    display(rep.study.paper.table())
    display(rep.study.paper.notes_table())
    display(Markdown("## Verdicts: does the MM1 lesson hold here?"))
    display(tables.verdict_display(rep.verdicts))
    return rep
