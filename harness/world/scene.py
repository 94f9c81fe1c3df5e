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
* the **pair** (opt-in, ``WorldCfg.pair``; not in the default world) is two small dark dots in neighbouring cells of
  an 8x8 grid (the patch grid of a patch-8 encoder at 64 px), and the question asks whether they share a cell of
  the 4x4 grid. Both dots always lie in one quadrant, so 2x2 pooled tokens hold both whatever the answer; 4x4 tokens
  hold them in one token (yes) or two (no). Both answers put the same darkness (two neighbouring dots) into one
  quadrant; a 2x2 token then differs only by where inside it the dots sit, which only the encoder's position
  features can tell. Unlike the dot's column, it needs no position circuit in the LM, only a per-token nonlinearity ("one token
  holds two dots").
* the **split dot** (opt-in, ``WorldCfg.split``, with the column dot off) is the dot centred on a cell of the 4x4 grid
  or on the middle of an edge between two cells of one quadrant, and the question asks whether it is split between
  two cells. 4x4 pooled tokens see one dark token or two half-dark ones; 2x2 pooled tokens see one dark token either
  way. The tiny VLM learns this one when trained on it (``docs/embedded_default.md``); the pair's dots are too faint.

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
PAIR_GRID = 8  # the pair's cells per side (two per DOT_GRID cell)
PAIR_RADIUS = 0.035  # of the image side: 2.2 px at 64 px, inside its 8 px cell with 1.8 px to spare
QUADRANT_WORDS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")
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
    # The pair's two cells on the PAIR_GRID, (row, col) each, neighbours in reading order; None without the pair.
    pair: tuple[tuple[int, int], tuple[int, int]] | None = None
    # The split dot's centre (x, y), normalised: a DOT_GRID cell's centre or the middle of an edge between two cells
    # of one quadrant; None without it.
    split: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        d = {"objects": [o.to_dict() for o in self.objects], "glyph": self.glyph, "pattern": self.pattern,
             "dot": self.dot}  # fmt: skip
        if self.pair is not None:  # only then: a world without the pair keeps its samples byte for byte
            d["pair"] = [list(c) for c in self.pair]
        if self.split is not None:
            d["split"] = list(self.split)
        return d

    @staticmethod
    def from_dict(d: dict) -> Scene:
        pair = d.get("pair")
        split = d.get("split")
        return Scene(tuple(SceneObject(**o) for o in d["objects"]), d["glyph"], d.get("pattern"), d.get("dot"),
                     None if pair is None else (tuple(pair[0]), tuple(pair[1])),
                     None if split is None else tuple(split))  # fmt: skip

    @property
    def dot_column(self) -> int | None:
        return None if self.dot is None else self.dot % DOT_GRID

    @property
    def pair_together(self) -> bool | None:
        """Whether the pair's two dots share a cell of the DOT_GRID (None without the pair)."""
        return None if self.pair is None else pair_together(self.pair)

    @property
    def pair_quadrant(self) -> int | None:
        """The quadrant that holds the pair (index into QUADRANT_WORDS), or None without the pair."""
        return None if self.pair is None else _quadrant(*_pair_centre(self.pair[0]))

    @property
    def split_across(self) -> bool | None:
        """Whether the split dot straddles the edge between two DOT_GRID cells (None without it)."""
        if self.split is None:
            return None
        return any(abs(v * DOT_GRID - round(v * DOT_GRID)) < 1e-9 for v in self.split)

    @property
    def split_quadrant(self) -> int | None:
        """The quadrant that holds the split dot (index into QUADRANT_WORDS), or None without it."""
        return None if self.split is None else _quadrant(*self.split)


def _quadrant(x: float, y: float) -> int:
    """Index into QUADRANT_WORDS of the quadrant holding normalised (x, y)."""
    return 2 * int(y >= 0.5) + int(x >= 0.5)


def split_candidates(across: bool) -> list[tuple[float, float]]:
    """Centres for the split dot: every DOT_GRID cell's centre (``across`` False: one token of 4x4 pooling) or the
    middle of every edge between two cells of one quadrant (True: half in each of two tokens). A quadrant's middle
    edges only (x or y at 1/4 or 3/4), so 2x2 pooling always holds the whole dot in one token."""
    centres = [(c + 0.5) / DOT_GRID for c in range(DOT_GRID)]
    if not across:
        return [(x, y) for y in centres for x in centres]
    edges = [0.25, 0.75]
    return sorted({(e, y) for e in edges for y in centres} | {(x, e) for e in edges for x in centres})


def pair_together(cells: tuple[tuple[int, int], tuple[int, int]]) -> bool:
    (r0, c0), (r1, c1) = cells
    k = PAIR_GRID // DOT_GRID
    return (r0 // k, c0 // k) == (r1 // k, c1 // k)


def pair_candidates(together: bool) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Every placement of two neighbouring PAIR_GRID cells in one quadrant, horizontal or vertical, that shares a
    DOT_GRID cell (``together``) or straddles the edge between two. A pair across two quadrants is left out: 2x2
    pooled tokens would split it, and the control must not be answerable at 4 tokens."""
    half, out = PAIR_GRID // 2, []
    for r in range(PAIR_GRID):
        for c in range(PAIR_GRID - 1):
            for a, b in (((r, c), (r, c + 1)), ((c, r), (c + 1, r))):
                same_quadrant = (a[0] // half, a[1] // half) == (b[0] // half, b[1] // half)
                if same_quadrant and pair_together((a, b)) == together:
                    out.append((a, b))
    return sorted(set(out))


def _disc_free(x: float, y: float, radius: float, placed: list[SceneObject]) -> bool:
    """A disc at normalised (x, y) covers neither an object nor the glyph zone."""
    return not _touches_glyph_zone(x, y, radius) and not any(
        (x - o.x) ** 2 + (y - o.y) ** 2 < (radius + SIZES[o.size] + _CELL_MARGIN) ** 2 for o in placed)


def _pair_centre(cell: tuple[int, int]) -> tuple[float, float]:
    return (cell[1] + 0.5) / PAIR_GRID, (cell[0] + 0.5) / PAIR_GRID  # (x, y)


def _pair_free(cells, placed: list[SceneObject], dot: int | None, dot_radius: float) -> bool:
    """Neither dot covers an object, the big dot or the glyph zone."""
    for cell in cells:
        x, y = _pair_centre(cell)
        if not _disc_free(x, y, PAIR_RADIUS, placed):
            return False
        if dot is not None:
            row, col = divmod(dot, DOT_GRID)
            dx, dy = x - (col + 0.5) / DOT_GRID, y - (row + 0.5) / DOT_GRID
            if dx * dx + dy * dy < (PAIR_RADIUS + dot_radius + _CELL_MARGIN) ** 2:
                return False
    return True


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
    pair: bool = False,
    split: bool = False,
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
    drawn_pair = None
    if pair:  # drawn only when on (unlike the controls above), so worlds without it are those of v3 to the byte
        options = pair_candidates(together=rng.random() < 0.5)
        free = [p for p in options if _pair_free(p, placed, drawn_dot if dot else None, dot_radius)] or options
        drawn_pair = free[int(rng.random() * len(free))]
    drawn_split = None
    if split:  # drawn only when on, as the pair
        options = split_candidates(across=rng.random() < 0.5)
        free = [p for p in options if _disc_free(*p, dot_radius, placed)] or options
        drawn_split = free[int(rng.random() * len(free))]
    placed.sort(key=lambda o: POSITIONS.index(o.position))
    return Scene(tuple(placed), digit if glyph else None, drawn_pattern if pattern else None,
                 drawn_dot if dot else None, drawn_pair, drawn_split)  # fmt: skip
