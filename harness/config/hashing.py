"""A point's identity: the config it is recorded under and the hash that names its run folder, in one place.

``point_identity(cfg)`` is what ``run_point`` uses; the rules, in the order they apply:

1. resolve the composed config to plain data (a value nobody set is a one-line ``ConfigError``);
2. data rules (:func:`hashed_config`): data configs that stages name are added; an unset ``sources`` is left out;
3. settings added to the schema later are left out at the default the shipped points ran with (``ADDED_LATER``), so
   those points keep their hashes;
4. hash (:func:`config_hash`): ``eval``, ``paths``, ``runtime``, ``tags``, ``logger`` and ``hydra`` are left out, and
   the high-resolution encoder when the connector does not use it.

Anything else that wants a point's hash (the summary's seed grouping, tests) calls these functions rather than
repeating a rule.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness.config.schema import UNHASHED_SECTIONS
from harness.config.validate import resolve
from harness.records import RECORD


def point_identity(cfg: DictConfig) -> tuple[dict[str, Any], bool, str]:
    """``(recorded config, needs_hr, training hash)`` of the composed point ``cfg``."""
    from harness.models.connectors import CONNECTORS

    recorded = without_added_defaults(hashed_config(resolve(cfg), cfg))
    needs_hr = CONNECTORS.get(cfg.connector.name).needs_hr
    return recorded, needs_hr, config_hash(recorded, needs_hr)


# -- 3. settings added later ------------------------------------------------------------------------------------------
# Settings added to the schema after points were recorded, with the default those points ran with. At that default
# the key is left out of the recorded and hashed config, so the shipped reference records keep their hashes (a run
# is skipped, not recomputed); any other value is hashed and recorded like every other setting. A path is the keys
# down to the setting; "*" stands for every item of a list (each training stage).
ADDED_LATER: dict[tuple[str, ...], Any] = {
    ("train", "precision"): "fp32",
    ("train", "stages", "*", "encoder_lr"): None,
    ("world", "pair"): False,
    ("world", "split"): False,
}


def _drop_default(node: Any, path: tuple[str, ...], default: Any) -> Any:
    """``node`` with the setting at ``path`` removed where it equals ``default`` (copies; never edits ``node``)."""
    head, rest = path[0], path[1:]
    if head == "*":
        return [_drop_default(item, rest, default) for item in node] if isinstance(node, list) else node
    if not isinstance(node, dict) or head not in node:
        return node
    if not rest:
        return {k: v for k, v in node.items() if k != head} if node[head] == default else node
    return {**node, head: _drop_default(node[head], rest, default)}


def without_added_defaults(resolved: dict[str, Any]) -> dict[str, Any]:
    for path, default in ADDED_LATER.items():
        resolved = _drop_default(resolved, path, default)
    return resolved


def config_hash(resolved: dict[str, Any], needs_hr: bool, with_eval: bool = False) -> str:
    """sha1 of the canonical JSON of what determines the trained point (paths/runtime/tags excluded).

    ``eval`` is left out: evaluation is a step of its own on a trained point (harness.evaluate), so a sweep with
    another eval config reuses the trained weights instead of training again. ``with_eval=True`` gives the hash
    points were recorded under before that (their run folders are still found, see :func:`run_folder`)."""
    skip = (*UNHASHED_SECTIONS, "hydra") if with_eval else (*UNHASHED_SECTIONS, "hydra", "eval")
    keyed = {k: v for k, v in resolved.items() if k not in skip}
    if not needs_hr:  # the high-res branch is unused: changing it must not orphan other points
        keyed.pop("hr_encoder", None)
        keyed.pop("hr_resolution", None)
    return hashlib.sha1(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_folder(runs_dir: Path, resolved: dict[str, Any], needs_hr: bool) -> tuple[str, Path]:
    """(hash, folder) of a point: ``runs/<training hash>``, or the folder of a record written under the older hash
    that included ``eval`` (so points finished before the change are skipped and evaluated, not retrained)."""
    h = config_hash(resolved, needs_hr)
    legacy = config_hash(resolved, needs_hr, with_eval=True)
    if not (runs_dir / h).is_dir() and (runs_dir / legacy / RECORD).is_file():
        return legacy, runs_dir / legacy
    return h, runs_dir / h


def hashed_config(resolved: dict, cfg: DictConfig) -> dict:
    """The resolved config as a point hashes and records it, with two data-specific rules:

    - data configs that stages name besides the run's ``data`` are added under ``stage_data`` (editing
      ``sweeps/data/<name>.yaml`` must change the hash of every point that trains on it); no key is added when
      every stage trains on the run's data;
    - a data config's ``sources`` is left out when no source is set (all read the world's export), so points that
      read the world keep the hashes they had before ``sources`` existed (the shipped reference records).
    Unknown stage data names are left to ``check`` (a failed record, not a crash before one exists)."""
    out = dict(resolved)
    out["data"] = _without_default_sources(resolved["data"])
    extra = {}
    for stage in cfg.train.stages:
        if stage.data is not None and stage.data != cfg.data.name and stage.data not in extra:
            try:
                node = OmegaConf.to_container(_load_data_option(stage.data), resolve=True)
            except (ValueError, OmegaConfBaseException):  # validate reports it, as a failed record
                continue
            extra[stage.data] = _without_default_sources(node)
    if extra:
        out["stage_data"] = extra
    return out


def _without_default_sources(data: dict) -> dict:
    if any(spec.get("format") for spec in data.get("sources", {}).values()):
        return data
    return {k: v for k, v in data.items() if k != "sources"}


def _load_data_option(name: str) -> DictConfig:
    from harness.data.locations import load_data_option  # data owns its option files; imported late (no cycle)

    return load_data_option(name)
