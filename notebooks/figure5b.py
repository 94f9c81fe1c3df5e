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

from harness.analysis.notebook import show_study

rep = show_study("figure5b", os.environ.get("MM_ABLATE_RESULTS", "results"))
