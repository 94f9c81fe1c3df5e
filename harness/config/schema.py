"""The run configuration as typed dataclasses: Hydra validates every YAML option against these.

Components (encoder, connector, llm) are polymorphic: each registered component has its own schema dataclass
(``ClipTinyCfg``, ``AttnPoolCfg``, ...), stored in the ConfigStore by ``harness.config.store`` and pulled into its
YAML option by that option's defaults list. The run-level fields below are shared by every sweep point.

``resolution``, ``visual_tokens`` and ``seed`` are top-level scalars so ``python sweep.py -m resolution=32,64``
sweeps them directly; component configs refer to them by interpolation (``num_tokens: ${visual_tokens}``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


class ConfigError(ValueError):
    """An invalid run configuration. ``str(err)`` is one line: the key, the bad value and what is accepted."""


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


PRECISIONS = ("fp32", "bf16")  # train.precision

@dataclass
class PathsCfg:
    """Every filesystem location a run touches. Set through ``paths/default.yaml`` and environment variables only."""

    cache_dir: str = MISSING  # world, tokenizer, pre-trained backbones (content-addressed, shareable)
    results_dir: str = MISSING  # records, sweep summaries, tables, figures
    runs_dir: str = MISSING  # one folder per config hash: record.json, predictions, metrics log
    data_dir: str = MISSING  # your pre-training data: data configs' `sources` with root `data` are relative to it


@dataclass
class RuntimeCfg:
    """How a point runs, not what it computes: excluded from the config hash."""

    threads: int = 0  # torch intra-op threads; 0 = auto (SLURM's CPUs, 1 under hydra/launcher=local, else all)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    log_every: int = 50
    rerun: bool = False  # true: recompute a point even if a successful record exists (its checkpoint is deleted)
    # Steps between training checkpoints in the run folder (resume after a kill); 0 = none, except on a stop signal.
    # A runtime setting, not a train one: it changes no result, so it stays out of the config hash.
    checkpoint_every: int = 200
    # Multi-process training (harness.train.distributed). auto: DDP when launched as several processes (torchrun, or
    # SLURM tasks via hydra.launcher.tasks_per_node), else one process; ddp; fsdp (FSDP2: LLM and connector sharded);
    # none: refuse a multi-process launch.
    # train.batch_size stays the global batch, so neither setting changes what a point computes (hence runtime).
    strategy: str = "auto"
    grad_accum: int = 1  # micro-batches per step on each process (memory, not maths: the global batch is unchanged)
    # false: encode every training batch afresh instead of reading the frozen-feature cache (what peer harnesses do;
    # the baseline of `python -m harness.bench cache`). Same features up to float16 rounding, so not hashed.
    feature_cache: bool = True
    # The largest feature store a split may have (GiB, float16): a split whose frozen features would take more (real
    # size high-resolution maps: ConvNeXt-L's at 384 px take 6.3 MiB an image) is not stored but encoded per
    # batch, only the images a batch uses. Decided from sizes alone, so a point always runs the same way.
    feature_cache_gb: float = 16.0
    # Images per encoder forward when frozen features are computed (a split's store, or a batch's images when not
    # stored), and per connector call in evaluation. 0 = auto: as many as give 64 MiB of float16 features (a store:
    # at most 256, as before the setting; ViT-B/32 with ConvNeXt-L maps at 384 px: 10). `python -m harness.plan
    # --json` gives the encoding peak as `feature_bank_encode`.
    feature_chunk: int = 0
    # Memory and speed switches that compute the same loss on the same examples (up to float rounding), hence here:
    # packing puts each step's sequences end to end in rows of up to data.max_len tokens, every one attending only to
    # itself with its own positions (block-diagonal causal mask), instead of padding each to the longest;
    # activation_checkpointing recomputes the LLM's decoder layers in the backward pass instead of storing them.
    packing: bool = False
    activation_checkpointing: bool = False
    compile: bool = False  # torch.compile the LLM (dynamic shapes: batches differ in length); pays off on GPUs
    # Keep the trained parts' weights as ``weights.pt`` in the run folder (frozen backbones come from the cache), so
    # ``python -m harness.evaluate`` and sweeps with another ``eval`` score the point without training it again, and
    # the VLMEvalKit / lmms-eval adapters can load it (harness.models.load.load_vlm). On by default: nobody retrains a
    # 1B model to add a benchmark. false drops them (a connector-only run's file is small; a trained LLM's is not).
    # What a point computes is unchanged, so it is a runtime setting and stays out of the hash.
    save_weights: bool = True

    def __post_init__(self) -> None:
        require(self.strategy in ("auto", "none", "ddp", "fsdp"),
                f"runtime.strategy must be auto, none, ddp or fsdp, got '{self.strategy}'")
        require(self.grad_accum >= 1, f"runtime.grad_accum must be >= 1, got {self.grad_accum}")
        require(self.threads >= 0, f"runtime.threads must be >= 0 (0 = auto), got {self.threads}")
        require(
            bool(re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device)),
            f"runtime.device must be auto, cpu, mps, cuda or cuda:N, got '{self.device}'",
        )
        require(self.feature_chunk >= 0, f"runtime.feature_chunk must be >= 0 (0 = auto), got {self.feature_chunk}")
        require(self.feature_cache_gb > 0, f"runtime.feature_cache_gb must be > 0, got {self.feature_cache_gb}")
        require(self.log_every >= 1, f"runtime.log_every must be >= 1, got {self.log_every}")
        require(
            self.checkpoint_every >= 0, f"runtime.checkpoint_every must be >= 0 (0 = off), got {self.checkpoint_every}"
        )


@dataclass
class SourceCfg:
    """Where one data source reads from (harness.data.locations; formats in harness.data.formats)."""

    format: str = ""  # webdataset | llava_json | interleaved | text_jsonl; "" = the world's export of this source
    path: str = ""  # file spec relative to `root`: brace ranges {00000..00099}, lists {a,b}, globs
    root: str = "data"  # data: paths.data_dir ($MM_ABLATE_DATA); world: the world's export (harness.world.export)
    images: str = ""  # image folder (llava_json, interleaved) relative to `root`; "" = the annotation file's folder


@dataclass
class SourcesCfg:
    """One field per data source (harness.data.sources.SOURCES), so ``data.sources.caption={format:..,path:..}``
    works on the command line and a misspelt source or field fails while composing. (A ``dict[str, SourceCfg]``
    would be shorter, but OmegaConf 2.3 cannot add a typed entry to one from an override.)"""

    caption: SourceCfg = field(default_factory=SourceCfg)
    synthetic_caption: SourceCfg = field(default_factory=SourceCfg)
    interleaved: SourceCfg = field(default_factory=SourceCfg)
    text: SourceCfg = field(default_factory=SourceCfg)
    conversation: SourceCfg = field(default_factory=SourceCfg)


@dataclass
class DataCfg:
    """Pre-training mixture: named source weights (normalised to sum 1; see harness.data.mixture)."""

    name: str = MISSING
    mixture: dict[str, float] = field(default_factory=dict)
    max_len: int = 384  # tokens per training sequence, visual tokens included
    sources: SourcesCfg = field(default_factory=SourcesCfg)  # where each source reads from (default: the world)


@dataclass
class StageCfg:
    """One training stage: what trains, for how long, at which learning rates."""

    name: str = "pretrain"
    steps: int = 600
    trainable: list[str] = field(default_factory=lambda: ["connector", "llm"])  # subset of encoder/connector/llm
    lr: float = 2e-3  # connector (and encoder, if trainable and encoder_lr is unset)
    llm_lr: float = 1e-3
    # The image encoder's own rate when it trains. Unfrozen vision towers are usually given a rate several times below
    # the connector's (LLaVA-OneVision trains its SigLIP tower at 1/5 of the LLM's rate): at the connector's 2e-3 the
    # embedded clip_tiny forgets colour within 600 steps. None = ``lr``.
    encoder_lr: float | None = None
    warmup_steps: int = 30
    data: str | None = None  # a data config name for this stage; None = the run's `data`

    def __post_init__(self) -> None:
        where = f"train stage '{self.name}'"
        require(self.steps >= 1, f"{where}: steps must be >= 1, got {self.steps}")
        require(self.warmup_steps >= 0, f"{where}: warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.encoder_lr is not None:
            require("encoder" in self.trainable, f"{where}: encoder_lr={self.encoder_lr} is set but the stage does not "
                    f"train the encoder (trainable={list(self.trainable)}); add encoder to trainable or unset it")
        rates = (("lr", self.lr, "connector"),
                 ("lr", self.lr, "encoder") if self.encoder_lr is None else ("encoder_lr", self.encoder_lr, "encoder"),
                 ("llm_lr", self.llm_lr, "llm"))
        for key, lr, part in rates:
            if part in self.trainable:  # a zero rate for a trained part silently trains nothing
                require(
                    math.isfinite(lr) and lr > 0,
                    f"{where}: {key} must be a finite number > 0 when it trains the {part}, got {lr}",
                )


@dataclass
class TrainCfg:
    name: str = MISSING
    batch_size: int = 32
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    group_by_length: int = 4  # batches pooled and sorted by length to cut padding; 1 = off
    # fp32, or bf16: forward and backward under torch.autocast(bfloat16) with fp32 master weights and optimizer
    # state (torch AMP; the usual GPU setting, a result of its own, hence hashed; left out of the hash at fp32, its
    # default, so points recorded before it existed keep their hashes). Evaluation runs in fp32 either way.
    precision: str = "fp32"
    stages: list[StageCfg] = field(default_factory=lambda: [StageCfg()])

    def __post_init__(self) -> None:
        require(self.batch_size >= 1, f"train.batch_size must be >= 1, got {self.batch_size}")
        require(len(self.stages) >= 1, "train.stages is empty; a run needs at least one stage (see sweeps/train/)")
        require(self.weight_decay >= 0, f"train.weight_decay must be >= 0, got {self.weight_decay}")
        require(self.grad_clip >= 0, f"train.grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        require(self.group_by_length >= 1, f"train.group_by_length must be >= 1 (1 = off), got {self.group_by_length}")
        require(self.precision in PRECISIONS,
                f"train.precision must be one of {list(PRECISIONS)}, got '{self.precision}'")


CAPTION_DEMOS = ("prompted", "bare")  # eval.caption_demo


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
    # How a k-shot caption demonstration reads after its image. "prompted": as the query would read had the model
    # answered with that caption (the caption_prompt, then the caption), the format Flamingo-style few-shot
    # evaluation uses; "bare": the caption alone (the only format before this field existed; the shipped world-v2
    # few-shot scores were measured with it). See docs/evaluation.md for the measured difference.
    caption_demo: str = "prompted"
    vqa_prompt: str = "Question: {question} Answer:"  # matches the world's QA_TEMPLATE
    max_new_tokens_caption: int = 40
    max_new_tokens_vqa: int = 6
    tasks: list[str] = field(default_factory=lambda: ["caption", "vqa"])  # world tasks (harness.eval.tasks registry)
    # TextCore (harness.eval.textcore): lm-eval tasks on the language model alone, run after captioning and VQA.
    # world_textqa / world_textmc / world_textppl are local tasks over the world's text; lm-eval's own names
    # (arc_easy, arc_challenge, piqa, lambada_openai, hellaswag, winogrande) read their data from the local Hugging Face
    # datasets cache (runs are offline): a task without it is recorded as skipped (NaN), the others still run. [] = off.
    text_tasks: list[str] = field(default_factory=lambda: ["world_textqa", "world_textmc"])
    text_limit: int = 200  # documents per task (first N); 0 = all
    text_num_fewshot: int = 0  # demonstrations per document (from the train split for the world's tasks)
    text_batch_size: int = 32
    # VLMEvalKit-style TSV benchmarks, scored at every k in `shots` beside the world's tasks. Each entry is a registry
    # key (harness.eval.benchmarks: coco, nocaps, textcaps, vqav2, textvqa, vizwiz, gqa, okvqa, world_caption,
    # world_vqa, world_mcq; its file under benchmark_root) or the path of any TSV (ends in .tsv or contains a /),
    # optionally with its kind: eval.benchmarks=[coco,/data/my_set.tsv,/data/other.tsv:vqa]. Without a kind it is
    # inferred: option columns A and B -> mcq, else questions -> vqa, else caption; the metric follows (accuracy,
    # vqa_accuracy, cider), and the record's task is the file stem ([A-Za-z0-9_-], other characters -> _). Quote a
    # path with spaces or a leading ~ ('~/data/my set.tsv'); relative paths are resolved against the working
    # directory. harness.eval.preflight checks every entry before a point is built.
    benchmarks: list[str] = field(default_factory=list)
    benchmark_root: str | None = None  # folder with the TSV files; None = $LMUData, else ~/LMUData
    benchmark_limit: int = 0  # first N rows per benchmark; 0 = all

    def __post_init__(self) -> None:
        require(self.caption_demo in CAPTION_DEMOS,
                f"eval.caption_demo must be one of {list(CAPTION_DEMOS)}, got '{self.caption_demo}'")
        for key in ("text_limit", "text_num_fewshot", "benchmark_limit"):
            require(getattr(self, key) >= 0, f"eval.{key} must be >= 0 (0 = all / none), got {getattr(self, key)}")
        require(self.text_batch_size >= 1, f"eval.text_batch_size must be >= 1, got {self.text_batch_size}")


WANDB_MODES = ("offline", "online", "disabled")  # logger.wandb.mode


@dataclass
class JsonlLogCfg:
    """``train_log.jsonl`` in the run folder. Always written, listed or not: resume and the record read it."""


@dataclass
class TensorBoardLogCfg:
    dir: str = ""  # "" = <results_dir>/tensorboard; under it one folder per sweep (its id, or runs), then per cfg hash


@dataclass
class MlflowLogCfg:
    # "" = a file store at <results_dir>/mlruns; or any MLflow tracking URI (sqlite:///mlflow.db, http://host:5000)
    tracking_uri: str = ""
    experiment: str = ""  # "" = the sweep id, or mm-ablate outside a multirun


@dataclass
class WandbLogCfg:
    mode: str = "offline"  # offline (no account: `wandb sync <run folder>` uploads later), online, disabled
    project: str = "mm-ablate"
    entity: str = ""  # "" = the account's default entity (online only)
    dir: str = ""  # "" = <results_dir>; W&B writes its wandb/ folder under it

    def __post_init__(self) -> None:
        require(self.mode in WANDB_MODES, f"logger.wandb.mode must be one of {list(WANDB_MODES)}, got '{self.mode}'")


@dataclass
class LoggerCfg:
    """Experiment trackers (harness.tracking), several at once: ``logger=[tensorboard,mlflow,wandb]``. A backend is on
    when its section is set (by its option in sweeps/logger/). Nothing here changes what a point computes."""

    jsonl: JsonlLogCfg | None = None
    tensorboard: TensorBoardLogCfg | None = None
    mlflow: MlflowLogCfg | None = None
    wandb: WandbLogCfg | None = None
    group: str = ""  # "" = the Hydra sweep id (<date>_<time>) in a multirun, else none
    samples: int = 8  # sample predictions per predictions file sent to the trackers; 0 = none

    def __post_init__(self) -> None:
        require(self.samples >= 0, f"logger.samples must be >= 0 (0 = none), got {self.samples}")


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
    logger: LoggerCfg = field(default_factory=LoggerCfg)
    resolution: int = 64
    hr_resolution: int = 96
    visual_tokens: int = 16
    seed: int = 0
    tags: list[str] = field(default_factory=list)


# Config sections that do not change what a point computes; left out of the hash so moving the cache, changing
# thread counts or the device, or adding an experiment tracker does not orphan finished points.
UNHASHED_SECTIONS = ("paths", "runtime", "tags", "logger")
