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
# The same tables come from `python -m harness.tables all`.

# %%
import os

from IPython.display import Markdown, display

from harness.analysis import load_runs, report, tables, verdicts

RESULTS = os.environ.get("MM_ABLATE_RESULTS", "results")
runs = load_runs(RESULTS)
display(Markdown(f"{runs['cfg_hash'].nunique()} runs under `{RESULTS}`"))

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
