"""A seeded, procedurally generated image-text world: the data every ablation in this harness trains and evaluates on.

Nothing is downloaded. ``World.build_or_load(WorldCfg(), cache_root)`` returns images, captions, questions,
interleaved documents and text-only passages, cached on disk under a hash of the config. The modules split the work
by concept: ``scene`` (what is in an image), ``render`` (pixels), ``language`` (all text), ``build`` (generation and
cache).
"""

from harness.world.build import SPLITS, StaleWorldError, World, WorldCfg, split_sizes, world_dir, world_hash
from harness.world.language import QA_TEMPLATE, QUESTION_TEMPLATES, QUESTION_TYPES, qa_line
from harness.world.render import glyph_box, render_scene
from harness.world.scene import COLOURS, POSITIONS, SHAPES, SIZES, Scene, SceneObject, sample_scene

__all__ = [
    "COLOURS",
    "POSITIONS",
    "QA_TEMPLATE",
    "QUESTION_TEMPLATES",
    "QUESTION_TYPES",
    "SHAPES",
    "SIZES",
    "SPLITS",
    "Scene",
    "SceneObject",
    "StaleWorldError",
    "World",
    "WorldCfg",
    "glyph_box",
    "qa_line",
    "render_scene",
    "sample_scene",
    "split_sizes",
    "world_dir",
    "world_hash",
]
