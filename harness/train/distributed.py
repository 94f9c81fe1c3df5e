"""Multi-process training through torch.distributed: one global batch, whatever the number of processes.

Launchers: ``torchrun --nproc_per_node G sweep.py ...`` (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``), or
SLURM tasks started by submitit (``hydra.launcher.tasks_per_node=G``: ``SLURM_PROCID``/``SLURM_NTASKS``/
``SLURM_LOCALID``, the rendezvous address from submitit's ``TorchDistributedEnvironment``). Backend: NCCL on GPUs,
gloo on CPUs (the CPU equivalence test uses gloo).

Why the global batch is fixed: a sweep compares points, so a point must compute the same thing on 1 GPU and on 8.
``train.batch_size`` is the *global* batch. Every rank draws the same global batch from the same seeded stream
(drawing is cheap next to a step) and trains on its share, rows ``rank::world_size``, split further into
``runtime.grad_accum`` micro-batches. Each micro-batch's loss is the sum of its token losses divided by the number of
loss tokens in the whole global batch (transformers' ``num_items_in_batch``), and scaled by ``world_size`` because
DDP averages gradients over ranks. Summed over micro-batches and ranks that is exactly the gradient of the
one-process mean loss, so the loss curve matches a single process up to float summation order.

Strategies: ``ddp`` replicates the VLM and all-reduces gradients (any stage). ``fsdp`` (FSDP2, ``fully_shard``)
shards the parts that train with the LLM: each decoder layer, the token embeddings, the rest of the LLM and the
connector are one unit each, so parameters, gradients and optimizer state are split across ranks. The frozen image
encoders stay whole on every rank (they only run forward, on features the cache usually supplies); a stage that
trains the encoder therefore needs ``ddp``. Checkpoints and the weights used for evaluation are gathered into full
tensors (a collective on every rank), so a checkpoint written under FSDP resumes under any strategy.

Only rank 0 writes (train log, checkpoints, record, predictions) and evaluates; every rank stops at the same step
when any of them receives a stop signal.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from harness.config.schema import ConfigError

STRATEGIES = ("auto", "none", "ddp", "fsdp")


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job; ``world_size == 1`` for an ordinary run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    strategy: str = "none"

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def launched_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` as the launcher set them; ``(0, 1, 0)`` outside a distributed launch."""
    if "WORLD_SIZE" in os.environ:  # torchrun, or submitit after TorchDistributedEnvironment().export()
        env = os.environ
        return int(env.get("RANK", "0")), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0"))
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in os.environ:
        env = os.environ
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", "0"))
    return 0, 1, 0


def _export_slurm_rendezvous() -> None:
    """Under SLURM without torchrun, let submitit derive MASTER_ADDR/PORT, RANK, WORLD_SIZE from the allocation."""
    if "WORLD_SIZE" in os.environ or "SLURM_PROCID" not in os.environ:
        return
    try:
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError as err:
        raise ConfigError("a multi-task SLURM job needs submitit (pip install -e '.[cluster]') or torchrun") from err
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def setup(strategy: str, device: torch.device) -> DistEnv:
    """Join the process group the launcher set up (no-op for one process). A multi-process launch with
    ``runtime.strategy=none`` is an error: every process would train the whole point and write the same record."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"runtime.strategy must be one of {', '.join(STRATEGIES)}, got '{strategy}'")
    _, world, local = launched_world()
    if world == 1:
        return DistEnv(strategy="none")
    if strategy == "none":
        raise ConfigError(
            f"launched as {world} processes but runtime.strategy=none; set runtime.strategy=ddp (or auto) to train "
            f"one point on all of them, or launch a single process"
        )
    strategy = "ddp" if strategy == "auto" else strategy
    if not dist.is_initialized():
        _export_slurm_rendezvous()
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistEnv(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, strategy=strategy)


def rank_device(requested: torch.device, env: DistEnv) -> torch.device:
    """One GPU per process: ``cuda:<local_rank>`` when the run is on CUDA; CPU stays CPU."""
    if env.active and requested.type == "cuda":
        torch.cuda.set_device(env.local_rank)
        return torch.device("cuda", env.local_rank)
    return requested


def check_batch(batch_size: int, env: DistEnv, grad_accum: int) -> None:
    parts = env.world_size * grad_accum
    if batch_size % parts:
        ok = [n for n in range(1, batch_size + 1) if batch_size % n == 0]
        raise ConfigError(
            f"train.batch_size={batch_size} (the global batch) does not split into world size {env.world_size} x "
            f"runtime.grad_accum {grad_accum} = {parts} equal parts; world size x grad_accum must divide it "
            f"(divisors: {ok})"
        )


def share(rows: list, env: DistEnv, grad_accum: int) -> list[list]:
    """This rank's micro-batches of one global batch: rows ``rank::world_size``, then ``grad_accum`` equal slices.
    Strided, not contiguous, so ranks get similar lengths from a length-sorted batch."""
    mine = rows[env.rank :: env.world_size]
    n = len(mine) // grad_accum
    return [mine[i * n : (i + 1) * n] for i in range(grad_accum)]


def wrap(vlm: torch.nn.Module, env: DistEnv, device: torch.device) -> torch.nn.Module:
    """The module to call for a stage's forward/backward: the VLM itself, a DDP wrapper around it (built per stage,
    after the stage has set what trains: DDP registers hooks on the parameters that need gradients), or the VLM
    with its LLM and connector sharded in place by FSDP2 (once, at the first stage)."""
    if not env.active:
        return vlm
    if env.strategy == "fsdp":
        if any(p.requires_grad for p in vlm.encoder.parameters()):
            raise ConfigError("runtime.strategy=fsdp shards the LLM and connector only; a stage that trains the "
                              "encoder needs runtime.strategy=ddp")
        if not is_sharded(vlm):
            shard(vlm)
        return vlm
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    # A trained encoder holds parameters the VLM never uses (a CLIP tower's projection head and final norm; the last
    # block with feature_layer=penultimate). DDP waits for a gradient of every trainable parameter before it
    # all-reduces their bucket, so it must be told to look for unused ones. The connector and the LLM use all of
    # theirs in every training forward, image-free ones included (VLM.forward), so other stages skip that search.
    unused = any(p.requires_grad for p in vlm.encoder.parameters())
    return DistributedDataParallel(vlm, device_ids=ids, find_unused_parameters=unused)


def shard(vlm: torch.nn.Module) -> None:
    """FSDP2 units: every decoder layer, the token embeddings (the VLM calls them directly to splice in visual
    tokens), the connector, and the VLM as the root unit (the LLM's final norm and head). The root must be the
    module whose forward runs first, hence the VLM; the frozen encoders are left out of it (``ignored_params``) and
    stay whole on every rank. Tied input/output embeddings would put one parameter in two units, so the token
    embeddings then stay in the root unit."""
    from torch.distributed.fsdp import fully_shard

    base = getattr(vlm.lm, "model", None)
    for layer in getattr(base, "layers", []):
        fully_shard(layer)
    emb, head = vlm.lm.get_input_embeddings(), vlm.lm.get_output_embeddings()
    if head is None or head.weight is not emb.weight:
        fully_shard(emb)
    fully_shard(vlm.connector)
    encoders = [m for m in (vlm.encoder, getattr(vlm, "hr_encoder", None)) if m is not None]
    fully_shard(vlm, ignored_params={p for m in encoders for p in m.parameters()})


def is_sharded(module: torch.nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in module.parameters())


def full_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A module's weights as full CPU tensors. Under FSDP this gathers the shards (every rank must call it; the
    result is complete on rank 0, empty elsewhere)."""
    if not is_sharded(module):
        return {k: v.detach().cpu() for k, v in module.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def optimizer_state(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict:
    if not is_sharded(model):
        return opt.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
    """Every rank reads the same full checkpoint, so each loads it directly (no broadcast)."""
    if not is_sharded(model):
        opt.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, opt, optim_state_dict=state, options=StateDictOptions(full_state_dict=True))


def no_sync(model: torch.nn.Module, last: bool):
    """Skip the gradient all-reduce (DDP) or reduce-scatter (FSDP) on all but the last micro-batch of a step."""
    if hasattr(model, "no_sync"):
        return contextlib.nullcontext() if last else model.no_sync()
    if is_sharded(model):
        from torch.distributed.fsdp import FSDPModule

        for m in model.modules():
            if isinstance(m, FSDPModule):
                m.set_requires_gradient_sync(last)
    return contextlib.nullcontext()


def all_sum(value: float, env: DistEnv) -> float:
    if not env.active:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return float(t.item())


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True on every rank when it is true on any (a stop signal reaches ranks at different steps)."""
    return all_sum(float(flag), env) > 0 if env.active else flag


def barrier(env: DistEnv) -> None:
    if env.active:
        dist.barrier()


def teardown(env: DistEnv) -> None:
    if env.active and dist.is_initialized():
        dist.destroy_process_group()
