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
# # MM1 Figure 5b: adding text-only data
#
# MM1 §3.3: "Text-only data helps with few-shot and text-only performance." Here: caption-only and
# interleaved-only data, each with and without 10% text-only data, three seeds. The text half of the lesson is read
# from the TextCore average (lm-eval tasks over the world's text) that each record carries.
#
# Records come from `$MM_ABLATE_RESULTS` (default `results`); produce them with `python sweep.py experiment=figure5b`.
# The tables and figures below are the ones `python -m harness.tables figure5b` writes.

# %%
import os

from IPython.display import Image, Markdown, display

from harness.analysis import load_runs, report, tables

RESULTS = os.environ.get("MM_ABLATE_RESULTS", "results")
rep = report.build("figure5b", load_runs(RESULTS))
display(Markdown(rep.provenance() if not rep.empty else f"No records yet: run `{rep.study.command}`."))

# %% [markdown]
# ## This run, laid out as the paper does
# Mean ± half-width of the 95% t-interval over finished seeds; NaN where no run finished.

# %%
tables.wide(rep)

# %% [markdown]
# ## Difference from the base row (Welch 95% interval)

# %%
tables.delta_wide(rep)

# %% [markdown]
# ## Figures

# %%
for path in report.figures(rep, RESULTS):
    display(Image(filename=str(path)))

# %% [markdown]
# ## Paper (MM1), for reference only
# Every number carries its confidence tag from `shared/docs/mm1_reference.md`; none has been checked against the PDF.

# %%
display(Markdown(rep.study.paper.source))
display(rep.study.paper.table())
rep.study.paper.notes_table()

# %% [markdown]
# ## Verdicts: does the MM1 lesson hold here?

# %%
tables.verdict_display(rep.verdicts)
