"""The README is the first thing a user reads: its option table must name every option file, and its Quickstart must
hold exactly the two commands CI and newcomers run."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
GROUPS = ["encoder", "hr_encoder", "connector", "llm", "data", "train", "eval", "world", "experiment"]


def _table_row(group: str) -> str:
    rows = [line for line in README.splitlines() if re.match(rf"\| `{group}`", line)]
    assert len(rows) == 1, f"README needs exactly one option-table row for `{group}`, found {len(rows)}"
    return rows[0]


@pytest.mark.parametrize("group", GROUPS)
def test_option_table_names_every_option_file(group):
    row = _table_row(group)
    named = set(re.findall(r"`([A-Za-z0-9_\-]+)`", row))
    options = {p.stem for p in (ROOT / "sweeps" / group).glob("*.yaml")}
    # experiment rows may name a range (figure5a-figure5d); expand it before comparing
    named |= {f"figure5{c}" for c in "abcd"} if "figure5a`-`figure5d" in row else set()
    missing = sorted(options - named)
    assert not missing, f"README's `{group}` row does not list {missing}; add them to the table in README.md"


def test_quickstart_is_one_block_of_two_commands():
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the Quickstart holds one fenced block"
    commands = [line for line in blocks[0].splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(commands) == 2, commands
    assert "sweep.py" in commands[0] and "pytest" in commands[1]
