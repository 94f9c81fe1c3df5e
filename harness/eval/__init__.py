"""Evaluation: metrics, batched greedy generation through the VLM, and the k-shot task runner."""
