"""Language models. Importing this package registers every LLM in ``LLMS``."""

from harness.models.llm import hf_causal, llama_tiny  # noqa: F401  (registration)
from harness.models.llm.base import LLMS, TOKENIZERS, LanguageModel, LLMCfg, build_llm, build_tokenizer

__all__ = ["LLMS", "TOKENIZERS", "LLMCfg", "LanguageModel", "build_llm", "build_tokenizer"]
