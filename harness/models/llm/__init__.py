"""Language models. Importing this package registers every LLM in ``LLMS``."""

from harness.models.llm import llama_tiny  # noqa: F401  (registration)
from harness.models.llm.base import LLMS, LanguageModel, LLMCfg, build_llm

__all__ = ["LLMS", "LLMCfg", "LanguageModel", "build_llm"]
