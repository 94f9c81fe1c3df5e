"""mm-ablate: MM1-style ablation studies of vision-language models."""

__version__ = "0.1.0"
