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
# # MM1 Figure 5d: synthetic captions
#
# MM1 §3.3: "Synthetic data helps with few-shot learning." Here: the 45/45/10 recipe with and without a tenth of the
# mixture given to dense synthetic captions (VeCap's role), three seeds.
#
# Records come from `$MM_ABLATE_RESULTS` (default `results`); produce them with `python sweep.py experiment=figure5d`.
# The tables and figures below are the ones `python -m harness.tables figure5d` writes.

# %%
import os

from harness.analysis.notebook import show_study

rep = show_study("figure5d", os.environ.get("MM_ABLATE_RESULTS", "results"))
