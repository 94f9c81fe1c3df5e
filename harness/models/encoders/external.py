"""Plumbing shared by the encoders built from external libraries (open_clip, timm, transformers).

Three concerns, the same in every library:

* **Identity.** The feature cache (``harness.data.features``) reuses encoded features across sweep points when the
  encoder's ``meta["artifact"]`` names its weights. Here that name is ``<encoder>-<hash>`` over the encoder config
  (minus ``feature_layer``, which the feature key carries itself) and where the weights come from: a library's
  pretrained tag or hub revision, or the SHA-1 of a local checkpoint's bytes (a path alone is not an identity: the
  file behind it can change). Random initialisation is cacheable too, by choice: ``init_seed`` seeds a forked CPU
  RNG, which makes the weights a pure function of (config, seed, library versions), and those versions are part of
  the hash. ``test_encoders.py`` checks that two builds with one seed give identical features.
* **Offline errors.** Runs set ``HF_HUB_OFFLINE=1`` (``harness.runtime``), so weights that are not already on disk
  cannot be fetched. The messages here say which name or path was missing and what to do about it.
* **Eval mode.** Pretrained towers carry dropout and stochastic depth (open_clip's ``convnext_large_d_320`` has
  drop-path 0.1). ``VLM.train()`` would switch them on and make "frozen" features random, so cached and fresh
  features would disagree. ``EvalBackbone`` keeps the wrapped library model in eval mode; LLaVA and Mini-Gemini also
  run their vision towers in eval mode.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from contextlib import contextmanager
from dataclasses import asdict
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

import torch
from torch import nn

from harness.artifacts import content_hash

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


class EvalBackbone(nn.Module):
    """Mixin for encoder wrappers: ``train()`` leaves the module in eval mode (dropout and drop-path stay off)."""

    def train(self, mode: bool = True):
        return super().train(False)


@contextmanager
def seeded(seed: int):
    """Seed the CPU RNG for a random initialisation without touching the caller's RNG stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@lru_cache(maxsize=64)
def _sha1(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def file_hash(path: str | Path) -> str:
    """SHA-1 of a weights file, or of every weight/config file of a folder (memoised per size and mtime)."""
    p = Path(path).expanduser()
    files = (
        [p]
        if p.is_file()
        else sorted(f for f in p.rglob("*") if f.is_file() and (f.suffix in WEIGHT_SUFFIXES or f.name == "config.json"))
    )
    if not files:
        raise FileNotFoundError(f"no weight files under {p}")
    parts = []
    for f in files:
        st = f.stat()
        parts.append(f"{f.relative_to(p) if f != p else f.name}:{_sha1(str(f), st.st_size, st.st_mtime_ns)}")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()


def weights_meta(cfg, weights: dict, libraries: tuple[str, ...]) -> dict:
    """``encoder.meta``: ``{"artifact": "<name>-<hash12>", "weights": weights, "init": cfg.init}``.

    ``weights`` describes the source: ``{"tag": ...}``, ``{"file": ..., "sha1": ...}``, ``{"hub": ..., "revision":
    ...}`` or ``{"random_init_seed": ...}``; the last adds the versions of torch and ``libraries`` to the hash.
    """
    ident = {"cfg": {k: v for k, v in asdict(cfg).items() if k != "feature_layer"}, "weights": weights, "v": 1}
    if "random_init_seed" in weights:
        ident["versions"] = {lib: version(lib) for lib in ("torch", *libraries)}
    return {"artifact": f"{cfg.name}-{content_hash(ident)}", "weights": weights, "init": cfg.init}


def looks_like_path(name: str) -> bool:
    """A local path (as opposed to a hub id such as ``openai/clip-vit-large-patch14-336``)."""
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()


def hub_snapshot(who: str, repo_id: str, filename: str) -> tuple[Path, str]:
    """The cached snapshot folder (``.../snapshots/<revision>``) of a hub repo that holds ``filename``, and that
    revision: the commit names the files' content, so it is the weights' identity."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, filename)
    if not isinstance(cached, str):
        raise missing_path(who, repo_id, f"hub repo (no {filename} in the local cache)")
    folder = Path(cached).parent
    return folder, folder.name


def missing_path(who: str, path: str, what: str) -> FileNotFoundError:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    return FileNotFoundError(
        f"{who}: {what} '{path}' does not exist{' (HF_HUB_OFFLINE=1: nothing is downloaded)' if offline else ''}. "
        "Point it at a local checkpoint, or use a name the library resolves from its cache."
    )


def offline_failure(who: str, name: str, err: Exception) -> RuntimeError:
    return RuntimeError(
        f"{who}: could not load weights for '{name}' ({type(err).__name__}: {' '.join(str(err).split())}). "
        "With HF_HUB_OFFLINE=1 "
        "(set by every run) only weights already in the Hugging Face cache ($HF_HOME) are found: fetch them once on a "
        "machine with network access, or point the config at a local copy."
    )


def unknown_model(who: str, name: str, valid: list[str], hint: str) -> ValueError:
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    did = f" Did you mean: {', '.join(close)}?" if close else ""
    return ValueError(f"{who}: unknown model '{name}'.{did} {len(valid)} names are known: {hint}")
