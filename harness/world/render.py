"""Pillow rendering of a scene, built so that image resolution changes how much information reaches the model.

Shapes are large (18-34 px at 128 px native) and survive any reasonable downsample. The glyph is the opposite: a 3x5
bitmap digit of 2 px cells (6x10 px at 128 px native, 1.5x2.5 px at 32 px). A prototype showed that a *fixed* digit
is still read perfectly from a 32 px box-filtered image, because the blurred pattern is deterministic per digit. So
the glyph is drawn on a 4x supersampled canvas with sub-pixel position jitter of a few pixels and random ink
darkness, and the whole image gets uniform pixel noise. At 128 px the strokes are still legible; at 32 px the jittered,
noisy blur is ambiguous. ``tests/test_world.py`` guards this with a template classifier.

Digits are hand-drawn bitmaps, so rendering needs no fonts and is identical on every machine.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from harness.world.scene import COLOURS, GLYPH_ZONE, SIZES, Scene

SUPERSAMPLE = 4  # glyph canvas scale
GLYPH_CELL = 1 / 64  # one bitmap cell, as a fraction of the image side (2 px at 128 px native)
GLYPH_JITTER = 3 / 128  # max glyph offset per axis, fraction of the image side (+-3 px at 128 px native)
INK = 20.0  # grey level of full-strength ink
INK_STRENGTH = (0.35, 1.0)  # range of ink opacity when ink jitter is on; fixed at the maximum otherwise
BACKGROUND_GREY = (196.0, 214.0)
BACKGROUND_TINT = 8.0  # +- per channel

# 3x5 bitmaps, rows top to bottom. Every pair differs in at least one cell.
_FONT = {
    "0": ("###", "#.#", "#.#", "#.#", "###"),
    "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"),
    "3": ("###", "..#", ".##", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"),
    "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"),
    "7": ("###", "..#", "..#", ".#.", ".#."),
    "8": ("###", "#.#", "###", "#.#", "###"),
    "9": ("###", "#.#", "###", "..#", "###"),
}
DIGIT_BITMAPS: dict[str, np.ndarray] = {
    d: np.array([[c == "#" for c in row] for row in rows], dtype=np.float32) for d, rows in _FONT.items()
}


def glyph_box(resolution: int) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) of the glyph zone at ``resolution``; also where evaluation code should crop."""
    x0, y0, x1, y1 = GLYPH_ZONE
    return round(x0 * resolution), round(y0 * resolution), round(x1 * resolution), round(y1 * resolution)


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    if shape == "triangle":
        return [(cx, cy - r), (cx + 0.95 * r, cy + 0.8 * r), (cx - 0.95 * r, cy + 0.8 * r)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.8 * r, cy), (cx, cy + r), (cx - 0.8 * r, cy)]
    return None


def _draw_shapes(scene: Scene, resolution: int, background: tuple[int, int, int]) -> np.ndarray:
    img = Image.new("RGB", (resolution, resolution), background)
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        cx, cy, r, fill = o.x * resolution, o.y * resolution, SIZES[o.size] * resolution, COLOURS[o.colour]
        if o.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif o.shape == "square":
            h = 0.85 * r  # about the circle's area
            draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=fill)
        elif o.shape == "cross":
            w = 0.33 * r
            draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
            draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
        else:
            poly = _polygon(o.shape, cx, cy, r)
            if poly is None:
                raise ValueError(f"no renderer for shape '{o.shape}'")
            draw.polygon(poly, fill=fill)
    return np.asarray(img, dtype=np.float32)  # a fresh, writable array (the dtype forces a conversion)


def _glyph_alpha(digit: str, resolution: int, offset: tuple[int, int]) -> np.ndarray:
    """Coverage in [0, 1] of the digit over the glyph box, at native resolution.

    The digit is placed at the box centre plus ``offset`` (in supersampled pixels, i.e. 1/SUPERSAMPLE px steps) and
    box-filtered down, so a sub-pixel shift changes the native pixels smoothly rather than snapping to the grid.
    """
    x0, y0, x1, y1 = glyph_box(resolution)
    w, h = (x1 - x0) * SUPERSAMPLE, (y1 - y0) * SUPERSAMPLE
    cell = max(1, round(GLYPH_CELL * resolution * SUPERSAMPLE))
    mask = np.kron(DIGIT_BITMAPS[digit], np.ones((cell, cell), dtype=np.float32))
    gh, gw = mask.shape
    top, left = (h - gh) // 2 + offset[1], (w - gw) // 2 + offset[0]
    canvas = np.zeros((h, w), dtype=np.float32)
    ct, cl = max(top, 0), max(left, 0)  # clip to the canvas (only matters at tiny resolutions)
    cb, cr = min(top + gh, h), min(left + gw, w)
    canvas[ct:cb, cl:cr] = mask[ct - top : cb - top, cl - left : cr - left]
    return canvas.reshape(h // SUPERSAMPLE, SUPERSAMPLE, w // SUPERSAMPLE, SUPERSAMPLE).mean(axis=(1, 3))


def render_scene(
    scene: Scene,
    rng: np.random.Generator,
    resolution: int,
    *,
    glyph_jitter: bool = True,
    ink_jitter: bool = True,
    pixel_noise: float = 12.0,
) -> np.ndarray:
    """Render ``scene`` to uint8 ``[resolution, resolution, 3]``. All randomness (tint, jitter, ink, noise) comes
    from ``rng``, which is drawn from in a fixed order whatever the flags, so flags change only what they name."""
    grey = rng.uniform(*BACKGROUND_GREY)
    tint = rng.uniform(-BACKGROUND_TINT, BACKGROUND_TINT, size=3)
    background = tuple(int(round(grey + t)) for t in tint)  # noqa: RUF046 - numpy floats
    span = round(GLYPH_JITTER * resolution * SUPERSAMPLE)
    offset = rng.integers(-span, span + 1, size=2)
    strength = rng.uniform(*INK_STRENGTH)

    img = _draw_shapes(scene, resolution, background)
    if scene.glyph is not None:
        alpha = _glyph_alpha(scene.glyph, resolution, (int(offset[0]), int(offset[1])) if glyph_jitter else (0, 0))
        alpha *= strength if ink_jitter else INK_STRENGTH[1]
        x0, y0, x1, y1 = glyph_box(resolution)
        patch = img[y0:y1, x0:x1]
        patch += alpha[..., None] * (INK - patch)
    if pixel_noise > 0:  # uniform in [-pixel_noise, pixel_noise), in place to keep rendering fast
        noise = rng.random(img.shape, dtype=np.float32)
        noise *= np.float32(2 * pixel_noise)
        noise -= np.float32(pixel_noise)
        img += noise
    np.rint(img, out=img)
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)
