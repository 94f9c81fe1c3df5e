"""Checks of a composed run config before anything is built: each failure is one ``ConfigError`` line.

Why here and not at build: a bad value found at build time costs the backbone pre-training that comes first (minutes
at real scale), and several bad values used to surface as unrelated errors deep in training (``batch_size=0`` as an
``IndexError`` on an empty queue, an empty stage list as a record with status ok and no training). Hydra already
rejects unknown options, unknown fields and wrong types when composing; this module covers the values and the
combinations. ``launch.run_point`` calls ``resolve`` before hashing and ``validate`` once the point has a record,
so an impossible point of a grid fails alone and the sweep goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from harness.config.schema import ConfigError, require
from harness.registry import UnknownComponentError, check_choice

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"


def resolve(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain data, interpolations resolved; a value nobody set is a one-line ``ConfigError``."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as err:
        key = err.full_key
        options = sorted(p.stem for p in (SWEEPS / key).glob("*.yaml")) if key.isidentifier() else []
        hint = f"choose one of {', '.join(options)} ({key}=<name>)" if options else f"set it ({key}=...)"
        raise ConfigError(f"'{key}' has no value: {hint}") from None


@contextmanager
def _about(key: str) -> Iterator[None]:
    """Re-raise a component's own check (a ValueError or an unknown name) as a ConfigError that names the key."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, UnknownComponentError) as err:
        raise ConfigError(f"{key}: {err}") from None


def validate(cfg: DictConfig) -> dict[str, Any]:
    """Check everything that can be checked before building; returns the resolved config.

    Each failure is a one-line ``ConfigError`` naming the key, the value and what is accepted: the typed schemas
    (their ``__post_init__`` range checks), registry names, the mixture, each stage's parts and data, the eval
    options, and the connector's own constraints (square token grids, ...). Checks that need the built encoders
    (resolution vs. patch size, mining's map sizes) fail at build, as a failed record with the same kind of message.
    """
    from harness.data import locations
    from harness.data.mixture import normalise_weights
    from harness.eval.runner import TASKS
    from harness.models.connectors import CONNECTORS
    from harness.models.encoders import ENCODERS
    from harness.models.llm import LLMS
    from harness.models.vlm import PARTS
    from harness.world import SPLITS

    resolved = resolve(cfg)
    OmegaConf.to_object(cfg)  # instantiates every schema dataclass, which runs its __post_init__ checks
    for group, reg in (("encoder", ENCODERS), ("connector", CONNECTORS), ("llm", LLMS)):
        with _about(f"{group}.name"):
            reg.entry(cfg[group].name)
    if CONNECTORS.get(cfg.connector.name).needs_hr:
        with _about("hr_encoder.name"):
            ENCODERS.entry(cfg.hr_encoder.name)
    with _about("data.mixture"):
        normalise_weights(dict(cfg.data.mixture))
    for key in ("visual_tokens", "resolution", "hr_resolution"):
        require(cfg[key] >= 1, f"{key} must be >= 1, got {cfg[key]}")
    require(cfg.seed >= 0, f"seed must be >= 0, got {cfg.seed}")
    for i, stage in enumerate(cfg.train.stages):
        where = f"train.stages.{i} ('{stage.name}')"
        require(len(stage.trainable) > 0, f"{where} trains nothing: trainable must list some of {', '.join(PARTS)}")
        with _about(f"{where}.trainable"):
            for part in stage.trainable:
                check_choice("trainable part", part, PARTS)
    locations.check(cfg)  # every stage's data config, its sources' formats and paths
    require(all(k >= 0 for k in cfg.eval.shots), f"eval.shots must be >= 0, got {list(cfg.eval.shots)}")
    for key in ("max_images", "trials", "batch_size"):
        require(cfg.eval[key] >= 1, f"eval.{key} must be >= 1, got {cfg.eval[key]}")
    with _about("eval"):
        for task in cfg.eval.tasks:
            check_choice("eval task", task, TASKS)
        check_choice("eval split", cfg.eval.split, SPLITS)
    _check_connector(cfg)
    return resolved


def _check_connector(cfg: DictConfig) -> None:
    """Run the connector's constructor on a stand-in encoder output (on the meta device: nothing allocated), so its
    own checks (a square ``visual_tokens`` for avg_pool and c_abstractor, heads dividing widths, ...) fail before
    minutes of backbone pre-training. Mining's checks need the real high-resolution maps and run at build."""
    import torch

    from harness.models.connectors import CONNECTORS, FeatureSpec

    cls = CONNECTORS.get(cfg.connector.name)
    if cls.needs_hr:
        return
    with _about("connector"), torch.device("meta"):
        cls(OmegaConf.to_object(cfg.connector), FeatureSpec(dim=64, grid=(8, 8)), 64)
