"""Registers every schema in Hydra's ConfigStore; imported by ``sweep.py`` and the tests before composing.

Schemas are stored under ``schema/<group>/<name>``; each YAML option extends its schema through its defaults list
(``- /schema/connector/attn_pool@_here_``), so a typo in a field name or a wrong type fails at composition time with
Hydra's own message, and the YAML file name, registry key and ``name:`` field are the same string.

One exception to that strictness: a component field typed ``dict[str, Any]`` holds a library's own keyword arguments
(``llm.config``, ``encoder.model_cfg``, ``encoder.model_kwargs``, ``encoder.config``; the same fields under
``hr_encoder``), whose keys are the library's business, not the schema's. Hydra composes in struct mode, where a key
the YAML option did not set cannot be added (``llm.config={vocab_size: 151936}`` on top of ``llm=hf`` failed with
"Key 'vocab_size' is not in struct"), so those nodes are stored with the struct flag off: a dict on the command line
merges into the option's dict and may add keys, and ``llm.config.rope_theta=1e6`` works as well. Hydra merges, never
replaces, a dict given as ``key={...}``; ``harness.config.validate.check_overrides`` refuses the one form that
would silently change nothing (``key={}``) and names the replacement idiom, ``'key=???' 'key={...}'``.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from harness.config.schema import DataCfg, EvalCfg, PathsCfg, RunCfg, TrainCfg
from harness.config.validate import SWEEPS, check_overrides

POINT_GB = 2.0  # per point: an embedded-default point holds 1.2-1.4 GB while it trains (measured 2026-12-07)


def available_memory_gb() -> float:
    """Memory this process may still use: the kernel's MemAvailable, or the cgroup's limit less its usage when that
    is smaller (a container or SLURM allocation); total physical memory when neither can be read."""
    avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        with open("/proc/meminfo") as f:
            avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    return avail / 2**30


def local_batch(choices) -> int | None:
    """``hydra.sweeper.max_batch_size`` for the sweep's launcher (``sweeps/sweep.yaml``): how many points start at
    once. submitit's local executor starts every job it is handed and has no limit of its own, so a 36-point sweep on
    ``hydra/launcher=local`` started 36 processes and ran a 24 GB machine out of memory. Local: one point per
    ``POINT_GB`` of the memory available when the sweep starts. Not one per core: points share the cores without
    losing throughput (twelve 1-thread points on 2 cores took 6x the single-point step time, no more), and a batch
    waits for its slowest point, so larger batches finish sooner. Other launchers (SLURM) queue their own jobs: no
    limit (``None``)."""
    if (choices or {}).get("hydra/launcher") != "local":
        return None
    return max(1, int(available_memory_gb() / POINT_GB))


def register_configs() -> None:
    if not OmegaConf.has_resolver("mm_ablate_local_batch"):
        OmegaConf.register_new_resolver("mm_ablate_local_batch", local_batch)
    # Importing the component packages fills the registries.
    from harness.models.connectors import CONNECTORS
    from harness.models.encoders import ENCODERS
    from harness.models.llm import LLMS
    from harness.world import WorldCfg

    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunCfg)
    for group, registry in (("encoder", ENCODERS), ("connector", CONNECTORS), ("llm", LLMS)):
        for name in registry.names():
            cfg_cls = registry.entry(name).cfg_cls
            if cfg_cls is None:
                raise TypeError(f"{group} '{name}' is registered without a config schema")
            cs.store(group=f"schema/{group}", name=name, node=open_free_form(cfg_cls))
    for group, node in (("world", WorldCfg), ("data", DataCfg), ("train", TrainCfg), ("eval", EvalCfg),
                        ("paths", PathsCfg)):
        cs.store(group=f"schema/{group}", name="base", node=node)


def free_form_fields(cfg_cls: type) -> list[str]:
    """Fields typed ``dict[str, Any]`` (optionally ``| None``): a library's keyword arguments, not schema fields."""
    hints = typing.get_type_hints(cfg_cls)
    out = []
    for f in dataclasses.fields(cfg_cls):
        tp = hints[f.name]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else tp
        if typing.get_origin(tp) is dict and typing.get_args(tp)[1:] == (Any,):
            out.append(f.name)
    return out


def open_free_form(cfg_cls: type) -> DictConfig:
    """The schema of ``cfg_cls`` with struct mode off on its free-form dict fields (see the module docstring). The
    flag is the node's own, so it survives composition (Hydra sets struct on the root, and a child's explicit flag
    wins over the inherited one); dicts nested inside inherit it."""
    node = OmegaConf.structured(cfg_cls)
    for name in free_form_fields(cfg_cls):
        OmegaConf.set_struct(node._get_node(name), False)
    return node


def compose_sweep(overrides: list[str]):
    """The sweep config of one point, composed outside ``sweep.py`` (benchmarks, probes, the cache CLI): schemas
    registered, ``sweeps/sweep.yaml`` with the environment, local overrides and ``overrides`` applied; an override
    that Hydra would silently ignore (``key={}`` on a non-empty dict) is a ``ConfigError``."""
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(SWEEPS), version_base="1.3"):
        cfg = compose(config_name="sweep", overrides=list(overrides))
    check_overrides(cfg, overrides)
    return cfg
