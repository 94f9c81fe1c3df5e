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
# # MM1 Figure 5a: caption vs interleaved data
#
# MM1 §3.3: "Interleaved data is instrumental for few-shot and text-only performance, while captioning data lifts
# zero-shot performance." Here: caption/interleaved 100/0, 50/50 and 0/100, no text-only data, three seeds.
#
# Records come from `$MM_ABLATE_RESULTS` (default `results`); produce them with `python sweep.py experiment=figure5a`.
# The tables and figures below are the ones `python -m harness.tables figure5a` writes.

# %%
import os

from harness.analysis.notebook import show_study

rep = show_study("figure5a", os.environ.get("MM_ABLATE_RESULTS", "results"))
