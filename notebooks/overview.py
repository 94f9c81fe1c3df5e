# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # All runs
#
# Every record under `$MM_ABLATE_RESULTS` (default `results`): what each run varied, its status and headline scores,
# which MM1 study each belongs to, and every MM1 lesson checked on the runs there are. Failed runs show NaN, never 0.
# The same tables come from `python -m harness.tables all`. The shipped records of `results/reference` are left out
# of `results`; set `MM_ABLATE_RESULTS=results/reference` to look at them.

# %%
import os

from IPython.display import Markdown, display

from harness.analysis import left_out_note, read_runs, report, tables, verdicts

RESULTS = os.environ.get("MM_ABLATE_RESULTS", "results")
runs, left_out = read_runs(RESULTS)
note = f"; {left_out_note(left_out)}" if left_out else ""
display(Markdown(f"{runs['cfg_hash'].nunique()} runs under `{RESULTS}`{note}"))

# %% [markdown]
# ## Runs (headline scores per shot count)

# %%
report.runs_overview(runs)

# %% [markdown]
# ## Studies: runs found and the command that produces them

# %%
report.study_counts(runs)

# %% [markdown]
# ## MM1 lessons on these runs

# %%
tables.verdict_display(verdicts(runs))
