"""Render a study report as one self-contained HTML page: ``<out>/html/<study>.html`` (and ``index.html``).

A page holds what ``<out>/tables/<study>.md`` holds, in the same sections (this run, the difference from the base
row, the paper's reference numbers, the verdicts with their MDE and seeds-to-resolve columns), plus the study's
figures. Everything is inside the file: tables are HTML built from the same DataFrames as the markdown
(``pandas.DataFrame.to_html``), figures are base64 PNG ``data:`` URIs and the style sheet is inline, so a page opens
offline and survives being mailed or attached to a ticket on its own. The index links the study pages (siblings
in the same folder) and carries the all-lessons verdict table and the run counts per study.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from harness.analysis.figures import plot
from harness.analysis.tables import POWER_NOTE, SCORES, delta_wide, verdict_display, wide

if TYPE_CHECKING:
    from harness.analysis.report import Report

HTML_DIR = "html"
INDEX = "index.html"
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0 1.6em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f3f3f3; padding: 0 3px; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0 1.5em; }
p.note { font-size: 0.85em; color: #555; max-width: 60em; }
"""


def _text(s: str) -> str:
    """Escaped prose; the markdown's `code` spans become <code> (commands a reader copies)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(s), quote=False))


def _table(df: pd.DataFrame) -> str:
    if df is None or df.empty:
        return "<p>(none)</p>"
    # escape=True: cell text (claims, details, config values) is data, never markup
    return df.to_html(index=False, escape=True, na_rep="NaN", border=0, float_format=lambda x: f"{x:g}")


def _verdicts(v: pd.DataFrame) -> str:
    return _table(verdict_display(v)) if not v.empty else "<p>(none)</p>"


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_pngs(report: Report) -> list[tuple[str, bytes]]:
    """Each of the study's figures as (file stem, PNG bytes), rendered in memory as ``write_figures`` renders it."""
    if report.layout.empty:
        return []
    out = []
    for spec in report.study.figures:
        buf = io.BytesIO()
        plot(report, spec).savefig(buf, format="png", dpi=100)
        out.append((f"{report.study.name}_vs_{spec.x}", buf.getvalue()))
    return out


def _page(title: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def page(report: Report, figures: Sequence[tuple[str, bytes]] | None = None) -> str:
    """The study's page. ``figures``: (name, PNG bytes) pairs already rendered; None renders them here."""
    s = report.study
    figs = figure_pngs(report) if figures is None else figures
    question = s.question if s.question.endswith(("?", ".")) else s.question + "."
    body = [
        f"<h1>{_text(s.title)} ({_text(s.name)})</h1>",
        f"<p>{_text(question)}</p>",
        f"<p>{_text(report.provenance())}</p>",
        "<h2>This run</h2>",
        f'<p class="note">{_text(SCORES)}</p>',
        _table(wide(report)),
    ]
    if s.base is not None:
        base = ", ".join(f"{k}={v}" for k, v in s.base.items())
        body += [
            f"<h2>This run: difference from the base row ({_text(base)})</h2>",
            '<p class="note">Welch 95% interval.</p>',
            _table(delta_wide(report)),
        ]
    if figs:
        body.append("<h2>Figures</h2>")
        body += [f'<img alt="{html.escape(name)}" src="{png_uri(png)}">' for name, png in figs]
    body += [
        "<h2>Paper (MM1), for reference</h2>",
        (
            f'<p class="note">Source: {_text(s.paper.source)}. Only quoted paper wording (P) is confirmed; no number '
            "here has been checked against the paper PDF. MM1 averages eight benchmarks at billion-parameter scale: "
            "compare directions and orderings, not values.</p>"
        ),
    ]
    if s.paper.rows:
        body.append(_table(s.paper.table()))
    body += [
        _table(s.paper.notes_table()),
        "<h2>Verdicts: MM1 lessons on this run</h2>",
        f'<p class="note">{_text(POWER_NOTE)}</p>',
        _verdicts(report.verdicts),
    ]
    return _page(f"{s.title} ({s.name})", body)


def index(counts: pd.DataFrame, lessons: pd.DataFrame, pages: dict[str, Path]) -> str:
    """The overview: one row per study (runs by status, the command that produces them, a link to its page when it
    has one) and every MM1 lesson's verdict on all runs. ``counts`` is ``report.study_counts``; ``lessons`` is
    ``findings.verdicts``; ``pages`` maps study name -> its page (a sibling of the index)."""
    rows = []
    for r in counts.itertuples():
        name = html.escape(r.study)
        link = f'<a href="{html.escape(pages[r.study].name)}">{name}</a>' if r.study in pages else name
        rows.append(
            f"<tr><td>{link}</td><td>{_text(r.title)}</td><td>{r.runs}</td><td>{r.ok}</td><td>{r.failed}</td>"
            f"<td>{r.unfinished}</td><td><code>{html.escape(r.command)}</code></td></tr>"
        )
    head = "".join(f"<th>{c}</th>" for c in ("study", "title", "runs", "ok", "failed", "unfinished", "command"))
    body = [
        "<h1>MM1 ablation studies on this run</h1>",
        "<h2>Studies</h2>",
        '<p class="note">A study without runs has no page; its command produces them.</p>',
        f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>",
        "<h2>MM1 lessons on all runs</h2>",
        f'<p class="note">{_text(POWER_NOTE)}</p>',
        _verdicts(lessons),
    ]
    return _page("MM1 ablation studies", body)


def write_page(report: Report, out_dir: str | Path, figures: Sequence[Path] | None = None) -> Path | None:
    """``<out_dir>/html/<study>.html``; None for a study without runs. ``figures``: PNG files ``write_figures``
    already wrote (read, not re-rendered); None renders them in memory."""
    if report.empty:
        return None
    figs = None if figures is None else [(p.stem, p.read_bytes()) for p in figures]
    path = Path(out_dir) / HTML_DIR / f"{report.study.name}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page(report, figs), encoding="utf-8")
    return path


def write_index(counts: pd.DataFrame, lessons: pd.DataFrame, pages: dict[str, Path], out_dir: str | Path) -> Path:
    path = Path(out_dir) / HTML_DIR / INDEX
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(index(counts, lessons, pages), encoding="utf-8")
    return path
