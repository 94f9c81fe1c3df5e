"""``python -m harness.tables ... --html``: one self-contained page per study, an index for ``all``.

The fixture records (tests/analysis_records.py) give every study its tables, figures and verdicts; a page must show
every cell the study's markdown table shows, embed every figure as the PNG bytes written under figures/, and load
nothing from outside itself.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pytest

from harness.analysis.html import write_page
from harness.analysis.load import load_runs
from harness.analysis.report import build
from harness.analysis.studies import STUDIES
from harness.tables import main
from tests.analysis_records import write_fixture_results

IMG = re.compile(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
SEPARATOR = re.compile(r"^\|[-:| ]+\|$")


def outside_refs(page: str) -> list[str]:
    """Every attribute or CSS reference that makes a browser load something beside the page itself."""
    refs = re.findall(r'\b(?:src|href|action|poster|data)\s*=\s*"([^"]*)"', page, flags=re.IGNORECASE)
    refs += re.findall(r"url\(\s*['\"]?([^'\")]*)", page, flags=re.IGNORECASE)
    refs += re.findall(r"@import\s+['\"]?([^'\";]*)", page, flags=re.IGNORECASE)
    return [r for r in refs if not r.startswith(("data:", "#"))]


def markdown_cells(md: str) -> list[str]:
    """The cells of every pipe table in a markdown file (header and body; separator rows skipped)."""
    cells = []
    for line in md.splitlines():
        if line.startswith("|") and not SEPARATOR.match(line):
            cells += [c.strip() for c in line.strip("|").split("|")]
    return [c for c in cells if c]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return write_fixture_results(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def html_all(results, tmp_path_factory) -> tuple[int, Path]:
    out = tmp_path_factory.mktemp("out")
    return main(["all", "--results", str(results), "--out", str(out), "--html"]), out


def test_checks_catch_what_they_look_for():
    """The checks below can fail: they see an outside reference and a table cell."""
    bad = '<img src="figures/a.png"><link href="style.css"><img src="http://x/y.png"><div style="a:url(b.png)">'
    assert outside_refs(bad) == ["figures/a.png", "style.css", "http://x/y.png", "b.png"]
    assert outside_refs('<img src="data:image/png;base64,AAAA"><a href="#v">v</a>') == []
    assert markdown_cells("| a | b |\n|:--|--:|\n| 0.5 ± 0.1 (n=3) | x |\n") == ["a", "b", "0.5 ± 0.1 (n=3)", "x"]


def test_page_per_study_with_every_table_cell_and_figure(results, html_all):
    rc, out = html_all
    assert rc == 0
    runs = load_runs(results)
    reports = {n: build(n, runs) for n in STUDIES.names()}
    with_runs = [n for n, r in reports.items() if not r.empty]
    assert len(with_runs) >= 5  # the fixture covers most studies; one without runs gets no page
    assert sum(not reports[n].verdicts.empty for n in with_runs) >= 4
    assert sorted(p.stem for p in (out / "html").glob("*.html")) == sorted([*with_runs, "index"])
    for name in with_runs:
        page = (out / "html" / f"{name}.html").read_text(encoding="utf-8")
        assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
        assert html.escape(STUDIES.get(name).title, quote=False) in page
        # every cell the markdown tables show, verdicts with their MDE and seeds-to-resolve columns included;
        # the markdown prints a missing delta as "nan", the page as the project's "NaN"
        md = (out / "tables" / f"{name}.md").read_text()
        cells = markdown_cells(md)
        missing = [c for c in cells if html.escape("NaN" if c == "nan" else c, quote=False) not in page]
        assert not missing, f"{name}: cells of {name}.md not on its page: {missing[:5]}"
        for column in ("MDE (80%)", "seeds to resolve", "verdict") if not reports[name].verdicts.empty else ():
            assert f"<th>{column}</th>" in page
        # every figure, embedded byte for byte as write_figures wrote it, and nothing loaded from elsewhere
        embedded = [base64.b64decode(b) for b in IMG.findall(page)]
        written = sorted((out / "figures").glob(f"{name}_vs_*.png"))
        assert len(written) == len(STUDIES.get(name).figures) >= 1
        assert sorted(embedded) == sorted(p.read_bytes() for p in written)
        assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in embedded)
        assert 'src="http' not in page and "<script" not in page and "<link" not in page
        assert outside_refs(page) == [], f"{name}: {outside_refs(page)}"


def test_index_links_only_the_pages_written(html_all):
    _, out = html_all
    index = (out / "html" / "index.html").read_text(encoding="utf-8")
    links = re.findall(r'href="([^"]*)"', index)
    assert sorted(links) == sorted(p.name for p in (out / "html").glob("*.html") if p.name != "index.html")
    assert all((out / "html" / link).is_file() for link in links)
    assert 'src="' not in index and "<script" not in index
    # the study without runs is listed with the command that produces it, not linked
    assert "python sweep.py experiment=figure5d" in index and 'href="figure5d.html"' not in index
    assert "<th>MDE (80%)</th>" in index and "<th>seeds to resolve</th>" in index


def test_one_study_by_name_writes_its_page_and_no_index(results, tmp_path):
    assert main(["figure5b", "--results", str(results), "--out", str(tmp_path), "--html"]) == 0
    assert [p.name for p in (tmp_path / "html").iterdir()] == ["figure5b.html"]
    # without --html, no page
    assert main(["figure5b", "--results", str(results), "--out", str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / "html").exists()


def test_page_renders_figures_in_memory_and_escapes_cell_text(results, tmp_path):
    """Without written PNGs the page renders its figures itself; text from records is never read as markup."""
    report = build("figure5b", load_runs(results))
    report.verdicts = report.verdicts.assign(detail="<script>alert(1)</script>")
    page = write_page(report, tmp_path).read_text(encoding="utf-8")
    assert len(IMG.findall(page)) == len(report.study.figures)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
