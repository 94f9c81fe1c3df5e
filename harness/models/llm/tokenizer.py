"""A subword tokenizer trained locally on the world's text (nothing is downloaded).

BPE with a Metaspace pre-tokenizer (SentencePiece-style "▁" word boundaries) so that decoding restores spaces
exactly; wrapped in ``PreTrainedTokenizerFast`` so it saves and reloads with ``AutoTokenizer.from_pretrained``, the
same call a real-scale run uses for a hub tokenizer.

Special tokens: ``<image>`` marks where an image's visual tokens are spliced in (the VLM expands it to M copies),
``<eoc>`` ends a chunk (one image-text pair, as OpenFlamingo's ``<|endofchunk|>``).

Alphabet: every printable ASCII character is in the initial alphabet, whether or not the world's (lowercase) text
uses it, so a user's captions ("What", "x-ray", "Smith's") tokenize instead of turning into ``<unk>``. A BPE without
byte fallback still maps characters outside that alphabet (accents, curly quotes, emoji) to ``<unk>``;
``harness.data.sequences.SequenceBuilder`` counts those and warns once.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path

from harness.artifacts import build_once, content_hash

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
IMAGE, EOC = "<image>", "<eoc>"
SPECIALS = [PAD, BOS, EOS, UNK, IMAGE, EOC]
# Printable ASCII but the space, which the Metaspace pre-tokenizer turns into "▁" (always in the alphabet).
ALPHABET = [c for c in string.printable if not c.isspace()]
TOKENIZER_VERSION = "bpe-metaspace-ascii-v2"  # in the cache key: bump when training changes (v1: no ASCII alphabet)


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=ALPHABET,
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK,
        additional_special_tokens=[IMAGE, EOC],
    )
    fast.save_pretrained(str(out_dir))


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def tokenizer_key(world_hash: str, vocab_size: int) -> dict:
    return {"world": world_hash, "vocab_size": vocab_size, "algo": TOKENIZER_VERSION}


def tokenizer_dir(world_hash: str, vocab_size: int, cache_root: Path) -> Path:
    """Where the world tokenizer of (world, vocab size) is cached (whether or not it is built yet)."""
    return Path(cache_root) / "tokenizers" / f"bpe{vocab_size}-{content_hash(tokenizer_key(world_hash, vocab_size))}"


def world_tokenizer(world, vocab_size: int, cache_root: Path):
    """The tokenizer for ``world``, trained once and cached by (world hash, vocab size)."""
    key, path = tokenizer_key(world.hash, vocab_size), tokenizer_dir(world.hash, vocab_size, cache_root)

    def build(tmp: Path) -> dict:
        train_tokenizer(world.all_text("train"), vocab_size, tmp)
        return {"key": key}

    return load_tokenizer(build_once(path, build))
