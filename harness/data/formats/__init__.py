"""Readers (and the writers the world's export needs) for the formats real pre-training data ships in.

One module per format, each registered in ``FORMATS`` under the name data configs use (``format: webdataset``):

- ``webdataset``: img2dataset tar shards (``<key>.jpg|png|webp`` + ``.txt`` + ``.json``) -> ``pair`` records
- ``llava_json``: LLaVA conversation JSON + image folder -> ``conversation`` records
- ``interleaved``: OBELICS-like documents, JSONL or parquet -> ``doc`` records
- ``text_jsonl``: ``{"text": ...}`` lines -> ``text`` records

``base`` holds the record contract, ``images`` the one decode path, ``paths`` brace/glob expansion.
"""

from harness.data.formats import interleaved, llava_json, text_jsonl, webdataset  # noqa: F401  (fill FORMATS)
from harness.data.formats.base import CONVERSATION, DOC, FORMATS, KINDS, PAIR, REASONS, TEXT, Format, ImageRef, Part
from harness.data.formats.images import decode, encode_png
from harness.data.formats.paths import expand, expand_braces

__all__ = ["CONVERSATION", "DOC", "FORMATS", "KINDS", "PAIR", "REASONS", "TEXT", "Format", "ImageRef", "Part",
           "decode", "encode_png", "expand", "expand_braces"]
