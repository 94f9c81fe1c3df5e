"""Evaluation: the task registry (``tasks``: the world's tasks and the TSV benchmarks, each with its queries,
demonstrations, post-processing, generation budget and metric), metrics, batched greedy generation through the VLM,
the k-shot runner (``runner``), TextCore through lm-eval (``textcore``), MM1-style averages over tasks
(``aggregates``) and VLMEvalKit-style TSV files (``benchmarks``)."""
