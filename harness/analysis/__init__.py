"""Analysis reads run records (never writes them) and turns them into tables, figures and MM1 verdicts.

- ``load``: every ``record.json`` under a results folder -> one tidy DataFrame (run x task x shots x metric x subset)
- ``stats``: seed means with 95% t-intervals, Welch intervals of differences, paired effects
- ``studies``: the MM1 study registry (membership, paper layout, base rows); ``paper``: MM1's reference numbers
- ``findings``: the MM1 lessons as claims with holds / does not hold / inconclusive verdicts
- ``tables`` / ``figures``: markdown, CSV, LaTeX and PNG renderings; ``report``: one study's report, the overview
- ``summary``: the end-of-sweep table printed by the Hydra callback
- ``reference``: the shipped ``results/reference`` kept apart from a user's ``results/`` (``read_runs``)

Command line: ``python -m harness.tables <study|all>``. Notebooks in ``notebooks/`` call only this package.
"""

from harness.analysis.findings import verdicts
from harness.analysis.load import load_runs
from harness.analysis.reference import left_out_note, read_runs
from harness.analysis.studies import STUDIES

__all__ = ["STUDIES", "left_out_note", "load_runs", "read_runs", "verdicts"]
