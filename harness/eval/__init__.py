"""Evaluation: metrics, batched greedy generation through the VLM, the k-shot task runner, TextCore through lm-eval
(``textcore``), MM1-style averages over tasks (``aggregates``) and VLMEvalKit-style TSV benchmarks (``benchmarks``)."""
