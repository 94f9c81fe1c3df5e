"""Scene sampling: *what* is in an image, independent of how it is drawn or described.

A scene is 1-4 coloured shapes on a 3x3 grid, a tiny digit (the "glyph") in the bottom-right corner, and since world
v3 two *controls*: a fine pattern over the whole picture and a black dot on a 4x4 grid. The controls exist so that
MM1's two mechanisms show by construction (``docs/embedded_default.md`` has the contract and the measurements):

* the **pattern** (plain, horizontal or vertical stripes, checks) has a 4 px period at 128 px native, aligned to the
  pixel grid. The antialiased resize every encoder applies keeps it at 64 and 128 px and averages it out *exactly* at
  32 px (the 4x filter spans two whole periods), so it is a fine detail whose legibility depends on resolution alone;
* the **dot** sits at the centre of one cell of a 4x4 grid and the question asks its column. Pooling the 8x8 patch
  grid to 2x2 tokens (``visual_tokens=4``) puts columns 1-2 and 3-4 into the same token, so a pooling connector can
  tell at most the half; 4x4 tokens (16) keep every column apart. It is large and dark, so it is legible at 32 px.

Keeping the scene apart from rendering and language has two payoffs: every answer is computed from the scene, so it is correct by
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
# The pattern control; "plain" has none. Every pattern has zero mean over any 4x4 block at 128 px native.
PATTERNS: tuple[str, ...] = ("plain", "horizontal", "vertical", "checked")
DOT_GRID = 4  # the dot's cells per side
# Dot cells, row-major (index = DOT_GRID * row + col), leaving out the one whose centre lies in the glyph zone.
DOT_CELLS: tuple[int, ...] = tuple(c for c in range(DOT_GRID * DOT_GRID) if c != DOT_GRID * DOT_GRID - 1)
# Default dot radius (WorldCfg.dot_radius), a fraction of the image side: 13 px at 128 px native, 3 px at 32. Large,
# because the LM learns to find a large dark disc far sooner than a small one (docs/embedded_default.md); it still
# stays inside its 1/4-wide column band (1/8 - 1/64 of margin for the 64 px resize's spread).
DOT_RADIUS = 0.1
COLUMN_WORDS: tuple[str, ...] = ("first", "second", "third", "fourth")
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
    pattern: str | None = None  # one of PATTERNS, or None when the world has no pattern control (worlds before v3)
    dot: int | None = None  # the dot's cell (row-major on the DOT_GRID), or None when the world has no dot

    def to_dict(self) -> dict:
        return {"objects": [o.to_dict() for o in self.objects], "glyph": self.glyph, "pattern": self.pattern,
                "dot": self.dot}  # fmt: skip

    @staticmethod
    def from_dict(d: dict) -> Scene:
        return Scene(tuple(SceneObject(**o) for o in d["objects"]), d["glyph"], d.get("pattern"), d.get("dot"))

    @property
    def dot_column(self) -> int | None:
        return None if self.dot is None else self.dot % DOT_GRID


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


def _dot_overlaps(cell: int, o: SceneObject, radius: float) -> bool:
    row, col = divmod(cell, DOT_GRID)
    cx, cy = (col + 0.5) / DOT_GRID, (row + 0.5) / DOT_GRID
    return (cx - o.x) ** 2 + (cy - o.y) ** 2 < (radius + SIZES[o.size] + _CELL_MARGIN) ** 2


def sample_scene(
    rng: np.random.Generator,
    min_objects: int,
    max_objects: int,
    glyph: bool,
    pattern: bool = False,
    dot: bool = False,
    dot_radius: float = DOT_RADIUS,
) -> Scene:
    """Draw one scene. Shapes and colours are independent and uniform, so a scene may repeat either; the question
    generator only asks questions whose referent is unique. The digit, the pattern and the dot are always drawn, in
    that order after the objects, even when switched off, so a switch changes nothing else about the scene (and a
    world with both controls off has the objects and digits of world v2)."""
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
    drawn_pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
    # The dot goes to a cell where it covers no object (a hidden object would make the count question wrong);
    # in the rare scene with no such cell, to any cell.
    free = [c for c in DOT_CELLS if not any(_dot_overlaps(c, o, dot_radius) for o in placed)] or list(DOT_CELLS)
    drawn_dot = free[int(rng.random() * len(free))]
    placed.sort(key=lambda o: POSITIONS.index(o.position))
    return Scene(tuple(placed), digit if glyph else None, drawn_pattern if pattern else None,
                 drawn_dot if dot else None)  # fmt: skip
