"""Process-level settings every entry point applies before touching torch: threads, offline mode, seeds.

Why: on the 2-core machines this project targets, torch's default OpenMP pool oversubscribes as soon as a second
process is busy, and a tiny training step became 36x slower (docs/dependencies.md). The thread count is
therefore always set explicitly, from config, never left to the library default. ``datasets``/``huggingface_hub``
make a network request on every load unless told they are offline; runs on local data set both flags.
"""

from __future__ import annotations

import os
import random

import numpy as np

OFFLINE_FLAGS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def set_offline() -> None:
    for flag in OFFLINE_FLAGS:
        os.environ.setdefault(flag, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:  # weight-loading progress bars and advisory warnings would drown the training log
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def auto_threads() -> int:
    """Threads for ``runtime.threads=0``: the CPUs SLURM gave this task; 1 when submitit runs jobs side by side on
    this machine (``hydra/launcher=local``: two 1-thread processes beat one 2-thread process, and never spin against
    each other); otherwise every CPU this process may use."""
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    if os.environ.get("SUBMITIT_EXECUTOR") == "local":
        return 1
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads(n: int) -> int:
    """Set torch's intra-op (and, where still allowed, inter-op) thread counts; ``n=0`` means :func:`auto_threads`.
    Returns the count in force."""
    import torch

    n = max(1, int(n)) if n else auto_threads()
    os.environ["OMP_NUM_THREADS"] = str(n)
    os.environ["MKL_NUM_THREADS"] = str(n)
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before the first parallel op; harmless afterwards
        pass
    return torch.get_num_threads()


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def pick_device(requested: str) -> torch.device:  # noqa: F821
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device '{requested}' requested but CUDA is not available; use device=cpu or device=auto")
    return torch.device(requested)
