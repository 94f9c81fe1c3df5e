"""``load_vlm(run_dir)``: a trained VLM back from a finished run folder, for evaluation outside the harness.

Why: the VLMEvalKit and lmms-eval adapters (:mod:`harness.eval.adapters`) run those kits' benchmarks on our models,
in a process that is not a sweep point. A run folder holds the record (its ``config`` is the fully resolved config
the point ran with) and, unless the point ran with ``runtime.save_weights=false``, ``weights.pt`` with the weights of
the parts it trained (:func:`harness.models.weights.save_trained`). The frozen parts (pre-trained encoder, LLM when
it was not trained, the world's tokenizer) are content-addressed cache artifacts, so the VLM is rebuilt exactly as
:func:`harness.models.build.build_vlm` built it for training, and the saved weights are loaded on top.

No Hydra here: the record's config is turned back into the typed component configs directly (each registry entry
knows its schema dataclass). The kits' own dependencies conflict with hydra-core (omegaconf 2.4), so their venvs
install the harness without it. Every failure names its cause and the fix: no record, a record whose status is not
``ok``, no ``weights.pt``, weights of another config, a frozen backbone missing from the cache (loading would
otherwise pre-train a new one silently, and score a model that never existed), or a backbone that now resolves to
another artifact than the run's (a changed cache key).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from harness.artifacts import is_complete
from harness.records import PRETRAINED_PARTS, RECORD, WEIGHTS, Record, read_record


class RunNotLoadable(RuntimeError):
    """A run folder that cannot be turned back into a VLM; ``str(err)`` says why and what to do."""


class LoadedVLM(NamedTuple):
    vlm: Any  # harness.models.vlm.VLM in eval mode
    tokenizer: Any  # the run's tokenizer (also vlm.tokenizer)
    image_preprocess: Any  # PIL image / path / array -> uint8 [H, W, 3] array, what VLM.encode_images stacks
    cfg: Any  # the run's config (DictConfig): cfg.eval holds its prompts and generation budgets


def image_preprocess(image) -> np.ndarray:
    """A PIL image, a path or an array -> uint8 ``[H, W, 3]`` RGB. The encoders resize and normalise themselves (to
    the run's ``resolution``, harness.models.encoders.base.to_pixels), so nothing else happens here."""
    from PIL import Image

    from harness.data.formats.images import to_rgb

    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as im:
            return np.asarray(to_rgb(im), dtype=np.uint8).copy()
    if isinstance(image, Image.Image):
        return np.asarray(to_rgb(image), dtype=np.uint8).copy()
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got an array of shape {arr.shape}")
    return arr.astype(np.uint8, copy=False)


def finished_record(run_dir: str | Path) -> Record:
    """The run's record, if it finished: raises :class:`RunNotLoadable` otherwise."""
    run_dir = Path(run_dir)
    path = run_dir / RECORD
    try:
        record = read_record(run_dir)
    except ValueError as err:  # not JSON, or not a record this harness reads
        raise RunNotLoadable(str(err)) from None
    if record is None:
        raise RunNotLoadable(f"{run_dir} has no {RECORD}: pass a run folder, $MM_ABLATE_RESULTS/runs/<cfg_hash>")
    if record.status != "ok":
        raise RunNotLoadable(
            f"{path}: status is '{record.status}' ({record.error or 'no error recorded'}); only a run "
            "that finished (status ok) can be loaded: run the point to the end first"
        )
    if not (run_dir / WEIGHTS).is_file():
        raise RunNotLoadable(
            f"{run_dir} has no {WEIGHTS}: the point ran with runtime.save_weights=false (or before weights were kept "
            f"by default). Run the point again with runtime.save_weights=true runtime.rerun=true (choices "
            f"{record.choices}) to keep its trained weights"
        )
    return record


def run_config(config: dict, cache_dir: str | Path):
    """The record's resolved ``config`` as the DictConfig :func:`harness.models.build.build_vlm` takes: components as
    their schema dataclasses (what the registries' builders expect), the rest as plain nodes, the cache at
    ``cache_dir``."""
    from omegaconf import OmegaConf

    from harness.models.connectors import CONNECTORS
    from harness.models.encoders import ENCODERS
    from harness.models.llm import LLMS

    def typed(registry, node: dict):
        return OmegaConf.merge(OmegaConf.structured(registry.entry(node["name"]).cfg_cls), node)

    cfg = OmegaConf.create({k: v for k, v in config.items() if k not in ("encoder", "hr_encoder", "connector", "llm")})
    for key, registry in (("encoder", ENCODERS), ("hr_encoder", ENCODERS), ("connector", CONNECTORS), ("llm", LLMS)):
        if config.get(key):
            cfg[key] = typed(registry, config[key])
    cfg.paths.cache_dir = str(cache_dir)
    return cfg


def _cache_for(record: Record, cache_dir: str | Path | None) -> Path:
    """``cache_dir`` if given, else the cache the run used if it is still there, else ``$MM_ABLATE_CACHE``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    recorded = Path(record.config["paths"]["cache_dir"]).expanduser()
    if recorded.is_dir() or not os.environ.get("MM_ABLATE_CACHE"):
        return recorded
    return Path(os.environ["MM_ABLATE_CACHE"]).expanduser()


def _recorded_artifacts(record: Record) -> dict[str, Path]:
    """Part -> the artifact (as recorded: a cache path, or a bare name for library weights) each backbone of the run
    was built from."""
    model = record.model or {}
    return {part: Path(str(model[part]["artifact"])) for part in PRETRAINED_PARTS
            if (model.get(part) or {}).get("artifact")}


def mismatched_artifacts(record: Record, built: dict[str, str | None]) -> list[str]:
    """``"part: recorded -> built"`` for each backbone the rebuilt VLM got from another artifact than the run did.
    That happens when a backbone's cache key changed between the run and now (caches written before 2026-12-05
    keyed clip_tiny / conv_tiny / llama_tiny by the tokenizer's folder): ``weights.pt`` would then be paired with a
    backbone it was never trained with."""
    return [f"{part.removesuffix('_pretraining')}: {path.name} -> {Path(str(built.get(part))).name}"
            for part, path in _recorded_artifacts(record).items() if Path(str(built.get(part))).name != path.name]


def missing_artifacts(record: Record, cache: Path) -> list[str]:
    """The world and pre-trained backbones the run read from its cache that ``cache`` lacks (as cache paths).
    Artifacts named without a folder (library models built from their config) are rebuilt, not read."""
    world = (record.world or {}).get("root")
    paths = ([Path(world)] if world else []) + list(_recorded_artifacts(record).values())
    return [f"{p.parent.name}/{p.name}" for p in paths
            if "/" in str(p) and not is_complete(cache / p.parent.name / p.name)]


def load_vlm(run_dir: str | Path, cache_dir: str | Path | None = None, device: str = "cpu") -> LoadedVLM:
    """Rebuild a finished run's VLM (frozen parts from the cache, trained parts from ``weights.pt``) in eval mode.

    ``cache_dir``: the content-addressed cache holding the run's world and backbones (default: the one the record
    names if it exists, else ``$MM_ABLATE_CACHE``)."""
    import torch

    from harness.models.build import build_vlm
    from harness.models.weights import read_trained, restore_finished

    run_dir = Path(run_dir)
    record = finished_record(run_dir)
    cache = _cache_for(record, cache_dir)
    missing = missing_artifacts(record, cache)
    if missing:
        raise RunNotLoadable(
            f"cache {cache} lacks {', '.join(missing)}, which run {record.cfg_hash} was built from; pass "
            "cache_dir= (or set MM_ABLATE_CACHE to) the cache the run used"
        )
    cfg = run_config(record.config, cache)
    saved = read_trained(run_dir / WEIGHTS, record.cfg_hash)
    _, vlm, llm = build_vlm(cfg, torch.device(device))
    built = {part: (getattr(m, "meta", None) or {}).get("artifact")
             for part, m in zip(PRETRAINED_PARTS, (vlm.encoder, vlm.hr_encoder, llm), strict=True)}
    changed = mismatched_artifacts(record, built)
    if changed:
        raise RunNotLoadable(
            f"run {record.cfg_hash} was trained on other backbones than this code builds from {cache} "
            f"({'; '.join(changed)}): its weights.pt fits only those. Keep the cache and code the run used, or "
            "retrain it with runtime.save_weights=true runtime.rerun=true"
        )
    return LoadedVLM(restore_finished(vlm, cfg.train.stages, saved), vlm.tokenizer, image_preprocess, cfg)
