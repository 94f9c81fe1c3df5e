"""Checks of a composed run config before anything is built: each failure is one ``ConfigError`` line.

Why here and not at build: a bad value found at build time costs the backbone pre-training that comes first (minutes
at real scale), and several bad values used to surface as unrelated errors deep in training (``batch_size=0`` as an
``IndexError`` on an empty queue, an empty stage list as a record with status ok and no training). Hydra already
rejects unknown options, unknown fields and wrong types when composing; this module covers the values and the
combinations. ``launch.run_point`` calls ``resolve`` before hashing and ``validate`` once the point has a record,
so an impossible point of a grid fails alone and the sweep goes on.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

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
    from harness.eval.tasks import world_tasks
    from harness.models.connectors import CONNECTORS
    from harness.models.encoders import ENCODERS
    from harness.models.llm import LLMS
    from harness.models.vlm import PARTS
    from harness.tracking import check as tracking_check
    from harness.world import SPLITS, world_hash

    resolved = resolve(cfg)
    check_overrides(cfg, _job_overrides())
    OmegaConf.to_object(cfg)  # instantiates every schema dataclass, which runs its __post_init__ checks
    for group, reg in (("encoder", ENCODERS), ("connector", CONNECTORS), ("llm", LLMS)):
        with _about(f"{group}.name"):
            reg.entry(cfg[group].name)
    if CONNECTORS.get(cfg.connector.name).needs_hr:
        with _about("hr_encoder.name"):
            ENCODERS.entry(cfg.hr_encoder.name)
    with _about("world"):  # combinations the world cannot draw (e.g. the split dot beside the column dot)
        world_hash(OmegaConf.to_object(cfg.world))
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
            check_choice("eval task", task, world_tasks())
        check_choice("eval split", cfg.eval.split, SPLITS)
    _check_connector(cfg)
    tracking_check(cfg)  # a chosen tracker's package is installed
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
    # The stand-in grid has at least as many patches as visual tokens: whether the real encoder has that many is
    # known only once it is built (pooling connectors refuse M > N then), and must not fail a valid point here.
    side = max(8, math.isqrt(max(int(cfg.visual_tokens), 1) - 1) + 1)
    quiet = logging.getLogger("harness.models.connectors")  # the stand-in's patch count is not the run's: a note
    level = quiet.level  # about it ("mlp emits one token per patch (64)") would contradict the build's own
    quiet.setLevel(logging.ERROR)
    try:
        with _about("connector"), torch.device("meta"):
            cls(OmegaConf.to_object(cfg.connector), FeatureSpec(dim=64, grid=(side, side)), 64)
    finally:
        quiet.setLevel(level)


def _job_overrides() -> list[str]:
    """The command-line overrides of the running Hydra job; [] outside one (compose API, direct calls)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def check_overrides(cfg: DictConfig, overrides: Iterable[str]) -> None:
    """Refuse ``key={}`` on a dict that the composed config still holds non-empty.

    Hydra merges a dict given on the command line into the existing one, so ``encoder.model_cfg={}`` keeps every key
    of the option (the tiny tower of ``openclip_tiny``) while reading as "the library's default shape". Replacing a
    dict takes two overrides: ``'key=???'`` (OmegaConf's "no value", which empties it; quoted, or the shell may glob
    it) then ``'key={...}'``. ``~key`` is no way out: Hydra cannot delete a field of a typed schema.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for o in OverridesParser.create().parse_overrides(list(overrides)):
        if o.is_delete() or o.is_sweep_override() or o.value() != {}:
            continue
        key = o.key_or_group
        node = OmegaConf.select(cfg, key, throw_on_missing=False)
        if isinstance(node, DictConfig) and not node._is_none() and len(node) > 0:
            raise ConfigError(
                f"{key}={{}} changes nothing: Hydra merges a command-line dict into the option's "
                f"({', '.join(map(str, node.keys()))} stay). To replace {key} as a whole, empty it first: "
                f"'{key}=???' '{key}={{...}}' ('{key}=???' '{key}={{}}' for the library's defaults)"
            )


# -- what the config says about the weights (for the record and the tables) -----------------------------------------
RANDOM_INIT = "random"


def init_labels(cfg: DictConfig) -> dict[str, str]:
    """How each backbone's weights start: ``random`` or ``pretrained:<source>`` (a library tag, hub id or file;
    ``pretrained:harness`` for the tiny backbones the harness pre-trains on the world). From the config alone, so it
    is known before anything is built. ``hr_encoder`` only when the connector uses it."""
    from harness.models.connectors import CONNECTORS

    groups = ["encoder", "llm"]
    if cfg.connector.name in CONNECTORS and CONNECTORS.get(cfg.connector.name).needs_hr:
        groups.insert(1, "hr_encoder")
    out = {}
    for g in groups:
        try:
            node = OmegaConf.to_object(cfg[g])
        except (ValueError, OmegaConfBaseException):  # a bad value: validate() reports it, with its key
            continue
        out[g] = getattr(node, "init", "pretrained:harness")  # llama_tiny: pre-trained by the harness
    return out


def label_choices(choices: dict[str, str], cfg: DictConfig) -> dict[str, str]:
    """``choices`` with `` (random init)`` after each backbone whose weights are random, e.g. ``openclip_vit_l14_336
    (random init)`` for ``encoder=openclip_vit_l14_336 encoder.pretrained=null``: tables show the choices, and a
    random tower must never read as the pretrained one its option file names."""
    out = dict(choices)
    for group, init in init_labels(cfg).items():
        if init == RANDOM_INIT:
            out[group] = f"{out.get(group) or cfg[group].name} (random init)"
    return out
