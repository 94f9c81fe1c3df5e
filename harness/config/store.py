"""Registers every schema in Hydra's ConfigStore; imported by ``sweep.py`` and the tests before composing.

Schemas are stored under ``schema/<group>/<name>``; each YAML option extends its schema through its defaults list
(``- /schema/connector/attn_pool@_here_``), so a typo in a field name or a wrong type fails at composition time with
Hydra's own message, and the YAML file name, registry key and ``name:`` field are the same string.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from harness.config.schema import DataCfg, EvalCfg, PathsCfg, RunCfg, TrainCfg
from harness.config.validate import SWEEPS


def register_configs() -> None:
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
            cs.store(group=f"schema/{group}", name=name, node=cfg_cls)
    for group, node in (("world", WorldCfg), ("data", DataCfg), ("train", TrainCfg), ("eval", EvalCfg),
                        ("paths", PathsCfg)):
        cs.store(group=f"schema/{group}", name="base", node=node)


def compose_sweep(overrides: list[str]):
    """The sweep config of one point, composed outside ``sweep.py`` (benchmarks, probes, the cache CLI): schemas
    registered, ``sweeps/sweep.yaml`` with the environment, local overrides and ``overrides`` applied."""
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(SWEEPS), version_base="1.3"):
        return compose(config_name="sweep", overrides=list(overrides))
