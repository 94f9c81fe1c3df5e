"""Shared test setup: one thread (the CI machine has 2 cores), offline, a micro world and backbones built once."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch

torch.set_num_threads(1)

# Micro settings: a few seconds per point. Pipeline checks, not results.
MICRO = [
    "world=shapes_micro", "train=smoke", "eval=smoke", "runtime.threads=1",
    "encoder.pretrain_steps=6", "encoder.pretrain_batch=16",
    "hr_encoder.pretrain_steps=6", "hr_encoder.pretrain_batch=16",
    "llm.pretrain_steps=6", "llm.pretrain_batch=8",
]


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for the whole session so the micro world and backbones are built once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def sweep_env(shared_cache, tmp_path) -> dict:
    env = dict(os.environ)
    env.update(MM_ABLATE_CACHE=str(shared_cache), MM_ABLATE_RESULTS=str(tmp_path / "results"), PYTHONUNBUFFERED="1")
    return env


def run_sweep(args: list[str], env: dict, cwd: Path, timeout: int = 600):
    import subprocess

    return subprocess.run([sys.executable, str(ROOT / "sweep.py"), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)
