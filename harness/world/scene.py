"""Scene sampling: *what* is in an image, independent of how it is drawn or described.

A scene is 1-4 coloured shapes on a 3x3 grid plus a tiny digit (the "glyph") in the bottom-right corner. Keeping the
scene apart from rendering and language has two payoffs: every answer is computed from the scene, so it is correct by
construction, and text-only passages can describe scenes that are never rendered.

Coordinates are normalised to [0, 1] (x to the right, y downwards), so one scene renders at any native resolution.
Each object lies inside its own grid cell, so objects never overlap and the named position ("top left", ...) is what a
viewer would say. The glyph zone is kept free of objects by rejection sampling: a shape touching the glyph would make
the digit unreadable for reasons that have nothing to do with resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
# Saturated, mutually distant hues that stay distinct after a 4x box downsample on a light grey background.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 86, 214),
    "yellow": (232, 196, 30),
    "purple": (134, 62, 176),
    "orange": (240, 132, 28),
}
# Object radius as a fraction of the image side: 9 px / 17 px at 128 px native.
SIZES: dict[str, float] = {"small": 0.07, "large": 0.13}
# Row-major 3x3 grid; index = 3 * row + col. Also the canonical (reading) order of objects in a scene.
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
_COLOUR_NAMES = tuple(COLOURS)
DIGITS = "0123456789"
# (x0, y0, x1, y1) of the corner region that holds the glyph; 112..128 x 108..128 px at 128 px native. The edges are
# multiples of 1/32, so the region maps onto whole pixels at 32, 64 and 128 px.
GLYPH_ZONE: tuple[float, float, float, float] = (0.875, 0.84375, 1.0, 1.0)
_ZONE_MARGIN = 0.02  # keep shapes this far from the glyph zone
_CELL_MARGIN = 0.012  # keep shapes this far inside their cell edges, so neighbours never touch
_MAX_TRIES = 30


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    x: float  # centre, normalised
    y: float
    position: str  # one of POSITIONS

    def to_dict(self) -> dict:
        return {"shape": self.shape, "colour": self.colour, "size": self.size, "x": self.x, "y": self.y,
                "position": self.position}  # fmt: skip


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]  # in reading order (POSITIONS order)
    glyph: str | None  # a digit, or None when the world has no glyph

    def to_dict(self) -> dict:
        return {"objects": [o.to_dict() for o in self.objects], "glyph": self.glyph}

    @staticmethod
    def from_dict(d: dict) -> Scene:
        return Scene(tuple(SceneObject(**o) for o in d["objects"]), d["glyph"])


def _touches_glyph_zone(x: float, y: float, r: float) -> bool:
    x0, y0, _, _ = GLYPH_ZONE
    return x + r > x0 - _ZONE_MARGIN and y + r > y0 - _ZONE_MARGIN


def _place(rng: np.random.Generator, cell: int) -> tuple[str, float, float] | None:
    """Sample (size, x, y) inside grid cell ``cell`` away from the glyph zone, or None if the cell cannot hold one.

    Only the bottom-right cell can fail: a large shape never fits beside the glyph, so objects there end up small.
    """
    row, col = divmod(cell, 3)
    cx, cy = (col + 0.5) / 3, (row + 0.5) / 3
    for _ in range(_MAX_TRIES):
        size = "small" if rng.random() < 0.5 else "large"
        r = SIZES[size]
        jitter = max(0.0, 1 / 6 - r - _CELL_MARGIN)
        x, y = cx + jitter * (2 * rng.random() - 1), cy + jitter * (2 * rng.random() - 1)
        if not _touches_glyph_zone(x, y, r):
            return size, round(float(x), 4), round(float(y), 4)
    return None


def sample_scene(rng: np.random.Generator, min_objects: int, max_objects: int, glyph: bool) -> Scene:
    """Draw one scene. Shapes and colours are independent and uniform, so a scene may repeat either; the question
    generator only asks questions whose referent is unique. The digit is always drawn, even when ``glyph`` is off, so
    switching the glyph off changes nothing else about the scene."""
    if not 1 <= min_objects <= max_objects <= 8:
        raise ValueError(f"need 1 <= min_objects <= max_objects <= 8, got {min_objects}..{max_objects}")
    n = int(rng.integers(min_objects, max_objects + 1))
    placed: list[SceneObject] = []
    for cell in rng.permutation(len(POSITIONS)):
        if len(placed) == n:
            break
        spot = _place(rng, int(cell))
        if spot is None:
            continue
        size, x, y = spot
        shape = SHAPES[int(rng.random() * len(SHAPES))]
        colour = _COLOUR_NAMES[int(rng.random() * len(_COLOUR_NAMES))]
        placed.append(SceneObject(shape, colour, size, x, y, POSITIONS[int(cell)]))
    digit = DIGITS[int(rng.integers(len(DIGITS)))]
    placed.sort(key=lambda o: POSITIONS.index(o.position))
    return Scene(tuple(placed), digit if glyph else None)
