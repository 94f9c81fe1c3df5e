"""Pillow rendering of a scene, built so that image resolution changes how much information reaches the model.

Shapes are large (18-34 px at 128 px native) and survive any reasonable downsample. The glyph is the opposite: a 3x5
bitmap digit of 2 px cells (6x10 px at 128 px native, 1.5x2.5 px at 32 px). A prototype showed that a *fixed* digit
is still read perfectly from a 32 px box-filtered image, because the blurred pattern is deterministic per digit. So
the glyph is drawn on a 4x supersampled canvas with sub-pixel position jitter of a few pixels and random ink
darkness, and the whole image gets uniform pixel noise. At 128 px the strokes are still legible; at 32 px the jittered,
noisy blur is ambiguous. ``tests/test_world.py`` guards this with a template classifier.

The two controls (see ``scene.py``) are deterministic given the scene: the pattern is a +-PATTERN_AMPLITUDE
modulation of the whole picture with a period of ``native/32`` px on the pixel grid, added after the glyph so that it
sums to zero over every aligned 4x4 block at 128 px; the dot is a dark disc drawn over the shapes. Neither draws from
the render generator, so switching them on leaves tint, jitter, ink and noise as they were.

Digits are hand-drawn bitmaps, so rendering needs no fonts and is identical on every machine.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw

from harness.world.scene import COLOURS, DOT_GRID, DOT_RADIUS, GLYPH_ZONE, PAIR_GRID, PAIR_RADIUS, SIZES, Scene

SUPERSAMPLE = 4  # glyph canvas scale
GLYPH_CELL = 1 / 64  # one bitmap cell, as a fraction of the image side (2 px at 128 px native)
GLYPH_JITTER = 3 / 128  # max glyph offset per axis, fraction of the image side (+-3 px at 128 px native)
INK = 20.0  # grey level of full-strength ink
INK_STRENGTH = (0.35, 1.0)  # range of ink opacity when ink jitter is on; fixed at the maximum otherwise
BACKGROUND_GREY = (196.0, 214.0)
BACKGROUND_TINT = 8.0  # +- per channel
# +- grey levels of the pattern: far above the pixel noise after the 2x filter (std ~2.2 at 64 px).
PATTERN_AMPLITUDE = 14.0
DOT_GREY = 30

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


@functools.cache
def pattern_band(resolution: int) -> np.ndarray:
    """One row of the striped pattern at ``resolution`` px native: +-1 in bands ``resolution/64`` px wide (2 px at 128
    px native, so a period of 4 px on the pixel grid), float64 ``[resolution]``.

    Inside the image, the encoders' antialiased 4x resize to 32 px spans two whole periods and returns exactly zero.
    At the image edges the resize drops the taps outside the image and renormalises the rest, which would leave a
    faint stripe in the outermost 32 px row (2 grey levels) that an ideal observer could read. The two outermost
    values at each end are therefore solved for, against that very operator, so that the 32 px result is zero there
    too; they stay close to +-1, so 64 and 128 px barely change.
    """
    if resolution % 64:
        raise ValueError(f"the pattern control needs a native resolution divisible by 64, got {resolution}")
    import torch

    from harness.models.encoders.base import resize

    width = resolution // 64
    band = np.where((np.arange(resolution) // width) % 2 == 0, 1.0, -1.0)
    eye = torch.eye(resolution, dtype=torch.float64)[:, None, :, None].expand(resolution, 1, resolution, 2)
    op = resize(eye.float(), 32)[:, 0, :, 0].double().numpy().T  # [32, resolution]: out = op @ row
    free = [0, 1, resolution - 2, resolution - 1]
    fixed = [i for i in range(resolution) if i not in free]
    sol, *_ = np.linalg.lstsq(op[:, free], -op[:, fixed] @ band[fixed], rcond=None)
    band[free] = sol
    return band


def pattern_field(pattern: str, resolution: int) -> np.ndarray:
    """The pattern as float32 ``[resolution, resolution]`` in about [-1, 1] (zeros for "plain"); see ``pattern_band``."""
    if pattern == "plain":
        return np.zeros((resolution, resolution), dtype=np.float32)
    band = pattern_band(resolution).astype(np.float32)
    if pattern == "horizontal":
        return np.repeat(band[:, None], resolution, axis=1)
    if pattern == "vertical":
        return np.repeat(band[None, :], resolution, axis=0)
    if pattern == "checked":
        return band[:, None] * band[None, :]
    raise ValueError(f"no renderer for pattern '{pattern}'")


def _draw_dot(img: np.ndarray, cell: int, resolution: int, radius: float = DOT_RADIUS, grid: int = DOT_GRID) -> None:
    """Fill the disc of the dot in ``cell`` (row-major on a ``grid`` x ``grid`` grid) with DOT_GREY, in place."""
    row, col = divmod(cell, grid)
    _draw_disc(img, (col + 0.5) / grid, (row + 0.5) / grid, radius, resolution)


def _draw_disc(img: np.ndarray, x: float, y: float, radius: float, resolution: int) -> None:
    """Fill a DOT_GREY disc centred at normalised (x, y), in place."""
    cx, cy, r = x * resolution, y * resolution, radius * resolution
    yy, xx = np.mgrid[0:resolution, 0:resolution] + 0.5  # pixel centres
    img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = DOT_GREY


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
    dot_radius: float = DOT_RADIUS,
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
    if scene.dot is not None:
        _draw_dot(img, scene.dot, resolution, dot_radius)
    for row, col in scene.pair or ():
        _draw_dot(img, PAIR_GRID * row + col, resolution, PAIR_RADIUS, PAIR_GRID)
    if scene.split is not None:
        _draw_disc(img, *scene.split, dot_radius, resolution)
    if scene.glyph is not None:
        alpha = _glyph_alpha(scene.glyph, resolution, (int(offset[0]), int(offset[1])) if glyph_jitter else (0, 0))
        alpha *= strength if ink_jitter else INK_STRENGTH[1]
        x0, y0, x1, y1 = glyph_box(resolution)
        patch = img[y0:y1, x0:x1]
        patch += alpha[..., None] * (INK - patch)
    if scene.pattern is not None:
        # Keep pattern + noise inside 0..255: a clipped pixel would no longer average out at 32 px. The clamp moves
        # only yellow's and orange's red (232, 240 -> 229) and the darkest ink (20 -> 26).
        headroom = PATTERN_AMPLITUDE + pixel_noise
        np.clip(img, headroom, 255 - headroom, out=img)
        if scene.pattern != "plain":
            img += (PATTERN_AMPLITUDE * pattern_field(scene.pattern, resolution))[..., None]
    if pixel_noise > 0:  # uniform in [-pixel_noise, pixel_noise), in place to keep rendering fast
        noise = rng.random(img.shape, dtype=np.float32)
        noise *= np.float32(2 * pixel_noise)
        noise -= np.float32(pixel_noise)
        img += noise
    np.rint(img, out=img)
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)
