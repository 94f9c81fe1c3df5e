"""Pre-training data: sources (caption / synthetic_caption / interleaved / text), mixtures and sequences."""

from harness.data.mixture import Mixture
from harness.data.sequences import Chunk, SequenceBuilder
from harness.data.sources import SOURCES, Example

__all__ = ["SOURCES", "Chunk", "Example", "Mixture", "SequenceBuilder"]
