"""Regenerate the analysis of a study from its run records: tables, figures and the MM1 verdicts.

    python -m harness.tables figure4                        # results/tables/figure4.{md,csv,tex}, results/figures/
    python -m harness.tables all --results ~/team-results  # every study, plus tables/verdicts.{md,csv}
    python -m harness.tables all --html                     # also results/html/<study>.html and index.html
    python -m harness.tables calibration                    # controls and A/A false-positive rate (calibration.md)
    python -m harness.tables all --results results/reference --out /tmp/reference  # the shipped records, elsewhere

Records are read from ``--results`` (default ``$MM_ABLATE_RESULTS``, else ``results``) and never modified; output
goes under ``--out`` (default: the results folder). A study without records says which sweep command produces
them; that is an error (exit 1) only when the study was asked for by name. ``all`` rewrites ``<out>`` for these
records, so what an earlier run wrote there for a study that now has none (its tables, figures and page: they
describe other records) is moved aside to ``<name>.stale`` (nothing is deleted) and each file is named; a study
asked for by name only says such files are there.
Unknown names list the valid ones.
``--html`` adds one self-contained page per study (tables, figures embedded, verdicts; opens offline) under
``<out>/html/``, and for ``all`` an ``index.html`` linking them.

A user's results and the shipped ones are kept apart (``harness.analysis.reference``): reading ``results/`` leaves
the shipped records of ``results/reference/`` out and says how many (``--with-reference`` adds them;
``--results results/reference`` reads only them). Nothing is written into ``results/reference`` (exit 2, one line
saying why) unless a maintainer regenerates the shipped tables on purpose, from the shipped records::

    python -m harness.tables all --results results/reference --out results/reference --update-reference
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.analysis import calibration
from harness.analysis.findings import verdicts
from harness.analysis.html import write_index, write_page
from harness.analysis.reference import UPDATE_FLAG, left_out_note, read_runs, write_refusal
from harness.analysis.report import build, study_counts, write
from harness.analysis.studies import STUDIES, why_no_members
from harness.analysis.tables import POWER_NOTE, verdict_display


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m harness.tables", description=__doc__.split("\n")[0])
    p.add_argument("study", help=f"one of: {', '.join(STUDIES.names())}, {calibration.NAME}, or all")
    p.add_argument(
        "--results",
        type=Path,
        default=Path(os.environ.get("MM_ABLATE_RESULTS", "results")),
        help="folder searched (recursively) for record.json files; the shipped results/reference inside it is left out",
    )
    p.add_argument("--out", type=Path, default=None, help="where tables/ and figures/ go (default: --results)")
    p.add_argument("--with-reference", action="store_true",
                   help="also read the shipped records of results/reference when --results contains them")
    p.add_argument(UPDATE_FLAG, action="store_true",
                   help="allow writing into results/reference: regenerate the shipped tables from its own records")
    p.add_argument("--html", action="store_true",
                   help="also write html/<study>.html (self-contained: figures embedded) and, for all, html/index.html")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.study not in ("all", calibration.NAME) and args.study not in STUDIES:
        print(STUDIES.unknown_message(args.study) + f", {calibration.NAME}, all", file=sys.stderr)
        return 2
    out = args.out or args.results
    refusal = write_refusal(out, args.results, args.update_reference)
    if refusal:
        print(f"[tables] {refusal}", file=sys.stderr)
        return 2
    if args.study == calibration.NAME:
        rc = write_calibration(args.results, out, args.with_reference)
        if rc:
            _stale(calibration.NAME, out, remove=False)
        return rc
    runs = user_runs(args.results, with_reference=args.with_reference)
    names = STUDIES.names() if args.study == "all" else [args.study]
    missing, pages = [], {}
    for name in names:
        report = build(name, runs)
        if report.empty:
            missing.append(name)
            why = why_no_members(runs, report.study)
            print(f"[tables] {name}: no records under {args.results} belong to it ({why}); produce them with "
                  f"`{report.study.command}`")
            _stale(name, out, remove=args.study == "all")
            continue
        paths = write(report, out)
        if args.html:
            pages[name] = write_page(report, out, [p for p in paths if p.suffix == ".png"])
            paths.append(pages[name])
        print(f"[tables] {name}: {report.provenance()}")
        for p in paths:
            print(f"  {p}")
        print(verdict_display(report.verdicts).to_markdown(index=False) if not report.verdicts.empty else "")
    if args.study == "all":
        table = verdicts(runs)
        (out / "tables").mkdir(parents=True, exist_ok=True)
        md = verdict_display(table).to_markdown(index=False)
        (out / "tables" / "verdicts.md").write_text(f"# MM1 lessons on this run\n\n{POWER_NOTE}\n\n{md}\n")
        table.to_csv(out / "tables" / "verdicts.csv", index=False)
        print(f"[tables] all lessons: {out / 'tables' / 'verdicts.md'}")
        if args.html:
            print(f"[tables] html index: {write_index(study_counts(runs), table, pages, out)}")
        if write_calibration(args.results, out, args.with_reference):  # when its runs exist; says how to make them
            _stale(calibration.NAME, out, remove=True)
    return 1 if missing and args.study != "all" else 0


def stale_outputs(name: str, out: Path) -> list[Path]:
    """What this tool writes for study ``name`` under ``out`` and is there now: tables, figures, html page."""
    patterns = [f"tables/{name}{suffix}" for suffix in (".md", ".csv", ".tex", "_paper.csv", "_verdicts.csv",
                                                         "_controls.csv", "_aa.csv")]  # fmt: skip
    patterns += [f"figures/{name}_vs_*.png", f"html/{name}.html"]
    return sorted(p for pattern in patterns for p in out.glob(pattern))


def _stale(name: str, out: Path, *, remove: bool) -> None:
    """A study without records keeps no tables from other records: moved aside under ``all``, else pointed out."""
    old = stale_outputs(name, out)
    if not old:
        return
    files = f"{len(old)} file{'s' if len(old) != 1 else ''}"
    if remove:
        for p in old:
            p.replace(p.with_name(p.name + ".stale"))
        print(f"[tables] {name}: moved aside {files} that an earlier run wrote from other records (to *.stale): "
              + ", ".join(str(p) for p in old))  # fmt: skip
    else:
        print(f"[tables] {name}: {files} under {out} are from an earlier run on other records "
              f"(`all` removes them): " + ", ".join(str(p) for p in old))  # fmt: skip


def user_runs(results: Path, *, switches: bool = False, with_reference: bool = False):
    """The runs under ``results`` (the shipped reference left out when merely inside it), saying what was left out."""
    runs, left_out = read_runs(results, switches=switches, with_reference=with_reference)
    if left_out:
        print(f"[tables] {left_out_note(left_out)} (--with-reference adds them)")
    return runs


def write_calibration(results: Path, out: Path, with_reference: bool = False) -> int:
    """tables/calibration.{md,csv} from the calibration study's runs (its switch runs included); 1 when there are none."""
    report = calibration.build_calibration(user_runs(results, switches=True, with_reference=with_reference))
    if report.empty:
        print(f"[tables] {calibration.NAME}: no records under {results}; produce them with `{calibration.COMMAND}`")
        return 1
    (out / "tables").mkdir(parents=True, exist_ok=True)
    md = out / "tables" / f"{calibration.NAME}.md"
    md.write_text(report.markdown())
    report.controls.to_csv(out / "tables" / f"{calibration.NAME}_controls.csv", index=False)
    report.aa.to_csv(out / "tables" / f"{calibration.NAME}_aa.csv", index=False)
    print(report.markdown())
    print(f"[tables] {calibration.NAME}: {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
