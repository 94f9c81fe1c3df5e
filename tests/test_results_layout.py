"""Shipped results and a user's own, kept apart: ``results/reference/`` (records, tables, figures; committed) and
``results/`` (the user's runs, sweeps, tables, figures; gitignored).

- every record under ``results/reference`` loads, and every shipped table regenerates byte for byte from them (a
  CSV's floats to 1e-9: their last digits follow the machine);
- ``python -m harness.tables`` never writes into the reference unless told ``--update-reference`` (and then only from
  the reference's own records), and reading ``results/`` leaves the shipped records out unless ``--with-reference``.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from harness.analysis import reference
from harness.analysis.load import load_runs, read_records
from harness.records import RECORD
from harness.tables import main
from tests.analysis_records import Writer, scores, write_fixture_results

SHIPPED = reference.REFERENCE
SHIPPED_TABLES = sorted(p for p in (SHIPPED / "tables").iterdir() if p.suffix in (".md", ".csv", ".tex"))
# Shipped tables whose records no longer belong to their study under the current code (a world version bump can do
# that: a study takes unlabelled runs only when their config equals its experiment file's). Strict xfail: the test
# fails once such a table regenerates again. Empty since the world v3 Quickstart records were shipped.
NOT_REGENERATED: dict[str, str] = {}


def test_every_shipped_record_loads():
    files = sorted(SHIPPED.rglob(RECORD))
    assert files, f"no {RECORD} under {SHIPPED}"
    assert [p for p, _ in read_records(SHIPPED)] == files
    runs = load_runs(SHIPPED)
    assert set(runs["cfg_hash"]) == {rec.cfg_hash for _, rec in read_records(SHIPPED)}
    assert (runs.drop_duplicates("cfg_hash")["status"] == "ok").all()


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("regenerated")
    assert main(["all", "--results", str(SHIPPED), "--out", str(out)]) == 0
    return out / "tables"


@pytest.mark.parametrize(
    "shipped",
    [pytest.param(p, marks=pytest.mark.xfail(strict=True, reason=NOT_REGENERATED[p.stem.split("_")[0]]))
     if p.stem.split("_")[0] in NOT_REGENERATED else p for p in SHIPPED_TABLES],
    ids=lambda p: p.name,
)
def test_shipped_table_regenerates_identically(shipped, regenerated):
    again = regenerated / shipped.name
    assert again.exists(), f"{shipped.name} is no longer produced from {SHIPPED}"
    if shipped.suffix != ".csv" or again.read_bytes() == shipped.read_bytes():
        assert again.read_bytes() == shipped.read_bytes(), f"{shipped.name} differs when regenerated"
        return
    # A CSV keeps every float's 17 digits, and the power columns (mde) come from quadrature and Newton steps whose
    # last digits follow numpy's build and the CPU's vector instructions (1e-13 apart between two x86 machines,
    # 2026-12-08). Every shown table (.md, .tex) must match byte for byte; a CSV, cell for cell, floats to 1e-9.
    old, new = (pd.read_csv(p, dtype=str, keep_default_na=False) for p in (shipped, again))
    assert list(new.columns) == list(old.columns) and new.shape == old.shape, f"{shipped.name}: other columns or rows"
    for col in old.columns:
        for a, b in zip(old[col], new[col], strict=True):
            try:
                x, y = float(a), float(b)
            except ValueError:
                assert a == b, f"{shipped.name} [{col}]: {a!r} -> {b!r}"
                continue
            assert x == pytest.approx(y, rel=1e-9, abs=1e-12, nan_ok=True), f"{shipped.name} [{col}]: {a} -> {b}"


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """A results folder with a shipped reference inside it (the fixture studies) and one run of the user's own."""
    results = tmp_path / "results"
    ref = write_fixture_results(results / "reference")
    monkeypatch.setattr(reference, "REFERENCE", ref.resolve())
    Writer(results).record(experiment="figure4", cfg_hash="mine", connector="avg_pool", scores=scores(0.5))
    return results, ref


def test_writing_into_the_reference_is_refused_in_one_line(layout, capsys):
    results, ref = layout
    for argv in (["figure4", "--results", str(ref)], ["all", "--results", str(results), "--out", str(ref / "x")],
                 ["calibration", "--results", str(ref)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--update-reference" in err and "--out" in err, err
    assert not (ref / "tables").exists() and not (ref / "x").exists()


def test_update_reference_writes_from_the_reference_records_only(layout, capsys):
    results, ref = layout
    assert main(["all", "--results", str(results), "--out", str(ref), "--update-reference"]) == 2
    assert "from the shipped records only" in capsys.readouterr().err
    assert main(["figure4", "--results", str(ref), "--out", str(ref), "--update-reference"]) == 0
    assert (ref / "tables" / "figure4.md").exists()


def test_reading_results_leaves_the_shipped_records_out_and_says_so(layout, tmp_path, capsys):
    results, ref = layout
    n_shipped = len(read_records(ref))
    runs, left_out = reference.read_runs(results)
    assert set(runs["cfg_hash"]) == {"mine"} and left_out == n_shipped
    both, none_left = reference.read_runs(results, with_reference=True)
    assert "mine" in set(both["cfg_hash"]) and len(set(both["cfg_hash"])) > 1 and none_left == 0
    assert reference.read_runs(ref)[1] == 0  # the reference read on its own is read whole

    assert main(["figure4", "--results", str(results), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"{n_shipped} shipped records under" in out and "--with-reference" in out
    assert "1 runs (1 ok)" in out


def test_a_users_failed_rerun_of_a_shipped_point_is_not_hidden(layout):
    results, ref = layout
    Writer(ref).record(cfg_hash="same", finished_at="2026-01-01T00:00:00+00:00", scores=scores(0.3))
    Writer(results).record(cfg_hash="same", status="failed", finished_at="2026-02-01T00:00:00+00:00")
    runs, _ = reference.read_runs(results)
    assert set(runs.loc[runs["cfg_hash"] == "same", "status"]) == {"failed"}


def test_the_users_view_is_the_loaders_frame_without_the_reference(tmp_path, monkeypatch):
    """Leaving the reference out changes which records are read, nothing about how they are read."""
    results = write_fixture_results(tmp_path / "results")
    expected, expected_switches = load_runs(results), load_runs(results, switches=True)
    shutil.copytree(SHIPPED / "runs", results / "reference" / "runs")
    monkeypatch.setattr(reference, "REFERENCE", (results / "reference").resolve())
    pd.testing.assert_frame_equal(reference.read_runs(results)[0], expected)
    pd.testing.assert_frame_equal(reference.read_runs(results, switches=True)[0], expected_switches)
    shutil.rmtree(results / "runs")
    shutil.rmtree(results / "copied")
    empty, _ = reference.read_runs(results)
    pd.testing.assert_frame_equal(empty, load_runs(tmp_path / "nothing"))
