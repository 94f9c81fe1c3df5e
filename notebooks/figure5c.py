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
# # MM1 Figure 5c: image vs text-only data
#
# MM1 §3.3: "Careful mixture of image and text data can yield optimal multimodal performance and retain strong text
# performance." Here: image data (caption:interleaved 1:1) with 0%, 10% or 33% text-only data, three seeds.
#
# Records come from `$MM_ABLATE_RESULTS` (default `results`); produce them with `python sweep.py experiment=figure5c`.
# The tables and figures below are the ones `python -m harness.tables figure5c` writes.

# %%
import os

from harness.analysis.notebook import show_study

rep = show_study("figure5c", os.environ.get("MM_ABLATE_RESULTS", "results"))
