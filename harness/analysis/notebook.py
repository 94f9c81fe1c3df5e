"""What a study notebook shows, in one place: every ``notebooks/<study>.py`` keeps only its own introduction.

The sections mirror ``python -m harness.tables <study>``: provenance, this run laid out as the paper does, the
difference from the base row, figures, the paper's numbers (reference only, never mixed with ours) and the verdicts.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from harness.analysis import report, tables
from harness.analysis.reference import left_out_note, read_runs, within


def show_study(name: str, results: str | Path) -> report.Report:
    """Display study ``name`` built from the records under ``results``; returns the report for further digging."""
    from IPython.display import Image, Markdown, display

    runs, left_out = read_runs(results)
    rep = report.build(name, runs)
    display(Markdown(rep.provenance() if not rep.empty else f"No records yet: run `{rep.study.command}`."))
    if left_out:
        display(Markdown(f"{left_out_note(left_out)}."))
    display(Markdown("## This run, laid out as the paper does\nMean ± half-width of the 95% t-interval over "
                     "finished seeds; NaN where no run finished."))
    display(tables.wide(rep))
    display(Markdown("## Difference from the base row (Welch 95% interval)"))
    display(tables.delta_wide(rep))
    display(Markdown("## Figures"))
    with tempfile.TemporaryDirectory() as scratch:  # never drawn over the shipped reference's own figures
        for path in report.figures(rep, scratch if within(results) else results):
            display(Image(filename=str(path)))
    display(Markdown("## Paper (MM1), for reference only\nEvery number carries its confidence tag from "
                     "`docs/mm1_reference.md`; none has been checked against the PDF."))
    display(Markdown(rep.study.paper.source))
    display(rep.study.paper.table())
    display(rep.study.paper.notes_table())
    display(Markdown("## Verdicts: does the MM1 lesson hold here?"))
    display(tables.verdict_display(rep.verdicts))
    return rep
