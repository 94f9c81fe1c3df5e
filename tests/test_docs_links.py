"""The README and docs/ are what a user reads first: every relative link in them must lead to a file of the
repository, nothing in the repository may send the reader to notes that only exist beside it, and the README stays
short enough to read in five minutes with its two-command Quickstart intact."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.conftest import ROOT

README = ROOT / "README.md"
DOCS = sorted([README, *(ROOT / "docs").rglob("*.md")])
MAX_README_LINES = 200

# Built from parts so that this file does not contain the strings it forbids.
OUTSIDE = ("shared" + "/docs", "shared" + "/tools")
# Folders that are not the repository's own text: environments, caches, build and run outputs, test fixtures.
SKIP_DIRS = {".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".cache", "outputs", "multirun"}

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
# [text](target "title") and ![alt](target); the text may hold one level of brackets and span lines
INLINE_LINK = re.compile(r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # http:, https:, mailto:, ...


def link_targets(text: str) -> list[str]:
    """Relative link targets of a markdown text, without their #fragment. Code is not markdown: links are looked for
    outside fenced blocks and inline code spans only."""
    prose = INLINE_CODE.sub("", FENCE.sub("", text))
    out = []
    for target in [*INLINE_LINK.findall(prose), *REF_LINK.findall(prose)]:
        if target.startswith("#") or SCHEME.match(target):
            continue
        path = unquote(target.split("#", 1)[0].split("?", 1)[0])
        if path:
            out.append(path)
    return out


def broken_links(md: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for target in link_targets(md.read_text(encoding="utf-8")):
        dest = (md.parent / target).resolve()
        if not dest.is_relative_to(root):
            problems.append(f"{target} (points outside the repository)")
        elif not dest.exists():
            problems.append(target)
    return problems


def repo_text_files() -> list[Path]:
    files = []
    for here, dirs, names in os.walk(ROOT):
        rel = Path(here).relative_to(ROOT)
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")
                   and not (rel == Path("tests") and d == "fixtures")]
        files += [Path(here) / n for n in names if n.endswith((".py", ".md"))]
    return files


def quickstart_blocks(readme: str) -> tuple[str, list[str]]:
    """The Quickstart section's first non-blank line and the fenced blocks of that section."""
    assert "\n## Quickstart\n" in readme, "README.md needs a '## Quickstart' heading"
    section = readme.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    first = next((line for line in section.splitlines() if line.strip()), "")
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```[ \t]*$", section, flags=re.MULTILINE | re.DOTALL)
    return first, blocks


@pytest.mark.parametrize("md", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_exist(md: Path) -> None:
    broken = broken_links(md)
    assert not broken, f"{md.relative_to(ROOT)} links to missing files: {broken}"


def test_link_finder_sees_links_and_skips_urls_anchors_and_code() -> None:
    text = ("See [a](docs/a.md#part), ![img](img/x.png \"t\"), [web](https://x.org/y.md), [mail](mailto:a@b.c), "
            "[here](#anchor), `[code](not/a/link.md)` and [two\nlines](b.md).\n\n[ref]: c.md\n\n"
            "```python\nx = [y](z.md)\n```\n")
    assert link_targets(text) == ["docs/a.md", "img/x.png", "b.md", "c.md"]


def test_a_broken_link_is_reported(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("x")
    (tmp_path / "docs").mkdir()
    md = tmp_path / "docs" / "page.md"
    md.write_text("[ok](../there.md) [gone](missing.md#x) [away](../../elsewhere.md)")
    assert broken_links(md, root=tmp_path.resolve()) == ["missing.md", "../../elsewhere.md (points outside the repository)"]


def test_nothing_points_outside_the_repository() -> None:
    hits = []
    for path in repo_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            if any(s in line for s in OUTSIDE):
                hits.append(f"{path.relative_to(ROOT)}:{n}")
    assert not hits, f"references to files outside the repository (move what they cite into docs/): {hits}"


def test_readme_is_short() -> None:
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; keep it <= {MAX_README_LINES} and move detail to docs/"


def test_quickstart_is_one_block_of_exactly_two_commands() -> None:
    first, blocks = quickstart_blocks(README.read_text(encoding="utf-8"))
    assert first.startswith("```"), f"'## Quickstart' must be followed by its fenced block, found {first!r}"
    assert len(blocks) == 1, f"the Quickstart holds exactly one fenced block, found {len(blocks)}"
    lines = [line for line in blocks[0].splitlines() if line.strip()]
    assert len(lines) == 2, f"the Quickstart block holds exactly two commands, found {lines}"
    assert not any(line.lstrip().startswith("#") for line in lines), lines
