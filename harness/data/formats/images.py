"""Image bytes -> the model's pixels: decode with PIL, RGB, shorter side to ``size``, centre crop.

Every image of a corpus goes through :func:`decode` both when it is indexed (to reject undecodable files and to
hash its pixels for de-duplication) and when the feature bank reads it, so the two can never disagree.

Why centre crop: the frozen encoders are CLIP-style models pre-trained on centre crops (open_clip's and CLIP's
preprocessing resize the shorter side, then crop); squashing a 4:3 photo to a square would distort every shape.
Why ``Image.draft``: a JPEG can be decoded at 1/2, 1/4 or 1/8 scale in the DCT domain, several times faster than a
full decode followed by a resize; draft picks the largest reduction that still leaves both sides >= ``size``, so
the final bicubic resize only ever shrinks. Lossless inputs already at ``size`` x ``size`` (the world's PNG export)
skip the resize and keep their exact pixels.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

from harness.data.formats.base import ImageRef

IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")


class UndecodableImage(ValueError):
    """Bytes PIL cannot turn into pixels."""


def decode(data: bytes, size: int, draft: bool = True) -> np.ndarray:
    """Encoded image bytes -> uint8 ``[size, size, 3]``. Raises :class:`UndecodableImage`. ``draft=False`` only to
    measure what draft saves (``python -m harness.bench decode``)."""
    return decode_sized(data, size, draft)[0]


def _eight_bit(im: Image.Image) -> Image.Image:
    """A 16-bit (``I;16*``; ``I`` from a PNG) or 32-bit integer (``I``) or float (``F``) greyscale image as 8-bit
    ``L``, scaled by its type's range. PIL's ``convert("RGB")`` clips such values at 255, so a 16-bit scan or
    microscope photo came out white. Floats are taken as 0-1 when none exceeds 1, else as 0-255."""
    if not (im.mode.startswith("I") or im.mode == "F"):
        return im
    a = np.asarray(im, dtype=np.float64)
    if im.mode == "F":
        peak = 1.0 if a.size and np.nanmax(a) <= 1.0 else 255.0
    elif im.mode.startswith("I;16") or im.format == "PNG":  # PNG holds at most 16 bits a sample
        peak = 65535.0
    else:  # a 32-bit integer TIFF: its own maximum, at least the 16-bit range
        peak = max(65535.0, float(a.max()) if a.size else 0.0)
    return Image.fromarray(np.nan_to_num(a * (255.0 / peak)).round().clip(0, 255).astype(np.uint8), "L")


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB (16-bit and float grey-scale scaled, not clipped): every decode path goes through
    this, training's, TSV benchmarks', ``from_source``'s and the evaluation kits' adapters'."""
    return _eight_bit(im).convert("RGB")


def decode_sized(data: bytes, size: int, draft: bool = True) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`decode`, plus the image's original ``(width, height)`` as stored in the file (before draft)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            original = im.size
            if draft and im.format == "JPEG":
                im.draft("RGB", (size, size))
            im = to_rgb(im)  # also forces the full decode, so truncated files fail here
            w, h = im.size
            if (w, h) != (size, size):
                side = min(w, h)
                left, top = (w - side) // 2, (h - side) // 2
                im = im.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
            return np.asarray(im, dtype=np.uint8), original
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as err:
        raise UndecodableImage(str(err)) from None


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 ``[H, W, 3]`` -> PNG bytes (lossless: decoding returns the same pixels).

    Stored without deflate (level 0): the world's images carry pixel noise, so deflate saves only ~27% of the bytes
    but makes decoding ~3x slower (1.1 vs 0.4 ms at 128 px), and every cold index and uncached batch decodes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG", compress_level=0)
    return buf.getvalue()


def read_bytes(ref: ImageRef) -> bytes:
    """The bytes ``ref`` points at (a tar member or a whole file). Raises FileNotFoundError."""
    with open(ref.path, "rb") as fh:
        if ref.size < 0:
            return fh.read()
        fh.seek(ref.offset)
        data = fh.read(ref.size)
    if len(data) != ref.size:  # the shard was truncated after indexing
        raise UndecodableImage(f"{ref.path}: expected {ref.size} bytes at offset {ref.offset}, got {len(data)}")
    return data


def pixel_digest(pixels: np.ndarray) -> bytes:
    """16-byte hash of decoded pixels: two files with the same picture (a PNG and a re-encoded copy decoded to the
    same array, or one image exported into two datasets) get one id, hence one feature-cache entry."""
    return hashlib.blake2b(pixels.tobytes(), digest_size=16).digest()


def image_suffix(name: str | Path) -> str:
    return str(name).rsplit(".", 1)[-1].lower()
