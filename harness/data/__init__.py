"""Pre-training data: formats and corpus (where records come from), sources, mixtures and sequences.

``formats`` reads the files real data ships in; ``locations`` says which files each source of a run reads;
``corpus`` indexes them once into records over one image store; ``sources`` turns records into examples,
``mixture`` samples sources by weight, ``sequences`` builds token sequences.
"""

from harness.data.corpus import Corpus, build_corpus
from harness.data.formats import FORMATS
from harness.data.mixture import Mixture
from harness.data.sequences import Chunk, SequenceBuilder
from harness.data.sources import SOURCES, Example

__all__ = ["FORMATS", "SOURCES", "Chunk", "Corpus", "Example", "Mixture", "SequenceBuilder", "build_corpus"]
