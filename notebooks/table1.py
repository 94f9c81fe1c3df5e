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
# # MM1 Table 1: image encoder ablation
#
# MM1 §3.2 varies the image encoder's resolution, size and pre-training data and finds: "Image resolution has the
# highest impact, followed by model size and training data composition." Here: clip_tiny with 2 or 4 blocks, 32 or
# 64 px, CLIP-pre-trained on plain or dense captions.
#
# Records come from `$MM_ABLATE_RESULTS` (default `results`); produce them with `python sweep.py experiment=table1`.
# The tables and figures below are the ones `python -m harness.tables table1` writes.

# %%
import os

from harness.analysis.notebook import show_study

rep = show_study("table1", os.environ.get("MM_ABLATE_RESULTS", "results"))
