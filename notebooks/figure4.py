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
# # MM1 Figure 4: VL connector ablation
#
# MM1 §3.2 crosses three connectors with two resolutions and two visual-token counts and finds: "Number of visual
# tokens and image resolution matters most, while the type of VL connector has little effect." Here: avg_pool,
# attn_pool and c_abstractor at 32 or 64 px and 4 or 16 visual tokens.
#
# Records come from `$MM_ABLATE_RESULTS` (default `results`); produce them with `python sweep.py experiment=figure4`.
# The tables and figures below are the ones `python -m harness.tables figure4` writes.

# %%
import os

from harness.analysis.notebook import show_study

rep = show_study("figure4", os.environ.get("MM_ABLATE_RESULTS", "results"))
