"""Hydra plugins of mm-ablate. Hydra instantiates plugins only from the ``hydra_plugins`` namespace package."""
