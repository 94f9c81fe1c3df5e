"""The run configuration as typed dataclasses: Hydra validates every YAML option against these.

Components (encoder, connector, llm) are polymorphic: each registered component has its own schema dataclass
(``ClipTinyCfg``, ``AttnPoolCfg``, ...), stored in the ConfigStore by ``harness.config.store`` and pulled into its
YAML option by that option's defaults list. The run-level fields below are shared by every sweep point.

``resolution``, ``visual_tokens`` and ``seed`` are top-level scalars so ``python sweep.py -m resolution=32,64``
sweeps them directly; component configs refer to them by interpolation (``num_tokens: ${visual_tokens}``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class PathsCfg:
    """Every filesystem location a run touches. Set through ``paths/default.yaml`` and environment variables only."""

    cache_dir: str = MISSING  # world, tokenizer, pre-trained backbones (content-addressed, shareable)
    results_dir: str = MISSING  # records, sweep summaries, tables, figures
    runs_dir: str = MISSING  # one folder per config hash: record.json, predictions, metrics log


@dataclass
class RuntimeCfg:
    """How a point runs, not what it computes: excluded from the config hash."""

    threads: int = 0  # torch intra-op threads; 0 = auto (SLURM's CPUs, 1 under hydra/launcher=local, else all)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    log_every: int = 50
    rerun: bool = False  # true: recompute a point even if a successful record exists


@dataclass
class DataCfg:
    """Pre-training mixture: named source weights (normalised to sum 1; see harness.data.mixture)."""

    name: str = MISSING
    mixture: dict[str, float] = field(default_factory=dict)
    max_len: int = 384  # tokens per training sequence, visual tokens included


@dataclass
class StageCfg:
    """One training stage: what trains, for how long, at which learning rates."""

    name: str = "pretrain"
    steps: int = 600
    trainable: list[str] = field(default_factory=lambda: ["connector", "llm"])  # subset of encoder/connector/llm
    lr: float = 2e-3  # connector (and encoder, if trainable)
    llm_lr: float = 1e-3
    warmup_steps: int = 30
    data: str | None = None  # a data config name for this stage; None = the run's `data`


@dataclass
class TrainCfg:
    name: str = MISSING
    batch_size: int = 32
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    group_by_length: int = 4  # batches pooled and sorted by length to cut padding; 1 = off
    stages: list[StageCfg] = field(default_factory=lambda: [StageCfg()])


@dataclass
class EvalCfg:
    """Evaluation protocol on the world's held-out split (MM1 §3.1: 0/4/8-shot captioning + VQA)."""

    name: str = MISSING
    split: str = "test"
    max_images: int = 400  # first N images of the split (deterministic subset)
    shots: list[int] = field(default_factory=lambda: [0])
    trials: int = 1  # seeded demonstration draws per k > 0
    batch_size: int = 64
    # Text after the query image for captioning. A bare image is ambiguous for a base model whose interleaved data
    # follows images with questions as often as with captions; a caption lead-in (BLIP-2 prompts "a photo of") says
    # which continuation is wanted. Only the continuation is scored.
    caption_prompt: str = "an image of"
    vqa_prompt: str = "Question: {question} Answer:"  # matches the world's QA_TEMPLATE
    max_new_tokens_caption: int = 40
    max_new_tokens_vqa: int = 6
    tasks: list[str] = field(default_factory=lambda: ["caption", "vqa"])


@dataclass
class RunCfg:
    paths: PathsCfg = field(default_factory=PathsCfg)
    world: Any = MISSING
    encoder: Any = MISSING
    hr_encoder: Any = MISSING  # built only for connectors with needs_hr (Mini-Gemini mining)
    connector: Any = MISSING
    llm: Any = MISSING
    data: DataCfg = field(default_factory=DataCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    runtime: RuntimeCfg = field(default_factory=RuntimeCfg)
    resolution: int = 64
    hr_resolution: int = 96
    visual_tokens: int = 16
    seed: int = 0
    tags: list[str] = field(default_factory=list)


# Config sections that do not change what a point computes; left out of the hash so moving the cache, changing
# thread counts or the device does not orphan finished points.
UNHASHED_SECTIONS = ("paths", "runtime", "tags")
