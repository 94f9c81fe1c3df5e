"""Every option of every config group composes and validates against its schema (Hydra compose API)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from harness.config.store import register_configs

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"
register_configs()

REGISTRY_GROUPS = {"encoder", "hr_encoder", "connector", "llm"}


def options() -> list[tuple[str, str]]:
    out = []
    for group_dir in sorted(
        p for p in SWEEPS.iterdir() if p.is_dir() and p.name not in ("hydra", "experiment", "local")
    ):
        for yml in sorted(group_dir.glob("*.yaml")):
            out.append((group_dir.name, yml.stem))
    return out


def compose_with(overrides: list[str]):
    with initialize_config_dir(config_dir=str(SWEEPS), version_base="1.3"):
        return compose(config_name="sweep", overrides=overrides)


@pytest.mark.parametrize("group,option", options())
def test_every_option_composes_and_validates(group, option):
    cfg = compose_with([f"{group}={option}"])
    node = OmegaConf.to_object(cfg[group])  # typed schema instance: wrong field names/types fail here
    if group in ("data", "train", "eval", "world"):
        assert node.name == option, f"sweeps/{group}/{option}.yaml must carry name: {option}"
    if group in REGISTRY_GROUPS:
        from harness.models.connectors import CONNECTORS
        from harness.models.encoders import ENCODERS
        from harness.models.llm import LLMS

        # An option is the registered component itself (clip_tiny) or a named variant of it (openclip_vit_l14_336).
        assert option == node.name or option.startswith(f"{node.name}_"), (
            f"sweeps/{group}/{option}.yaml must carry name: {option}, or be a variant <name>_<variant>"
        )
        reg = {"encoder": ENCODERS, "hr_encoder": ENCODERS, "connector": CONNECTORS, "llm": LLMS}[group]
        assert node.name in reg, f"{group} option '{option}' has no registry entry '{node.name}'"
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def test_every_registered_component_has_a_yaml():
    from harness.models.connectors import CONNECTORS
    from harness.models.llm import LLMS

    for group, reg in (("connector", CONNECTORS), ("llm", LLMS)):
        files = {p.stem for p in (SWEEPS / group).glob("*.yaml")}
        assert set(reg.names()) <= files, (
            f"registered {group}s without sweeps/{group}/<name>.yaml: {set(reg.names()) - files}"
        )


def test_experiments_compose():
    for yml in sorted((SWEEPS / "experiment").glob("*.yaml")):
        cfg = compose_with([f"experiment={yml.stem}"])
        assert cfg.connector.name


def experiment_grid(name: str) -> dict[str, list[str]]:
    return {
        k: str(v).split(",")
        for k, v in OmegaConf.load(SWEEPS / "experiment" / f"{name}.yaml").hydra.sweeper.params.items()
    }


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (SWEEPS / "experiment").glob("*.yaml")))
def test_every_experiment_sweep_value_composes(experiment):
    """Each value of each swept axis composes and validates; axes are zipped (cycling the shorter ones) so every
    value is used once in as few compositions as the longest axis, each a real point of the grid."""
    grid = experiment_grid(experiment)
    for i in range(max(len(v) for v in grid.values())):
        point = {k: v[i % len(v)] for k, v in grid.items()}
        cfg = compose_with([f"experiment={experiment}", *(f"{k}={v}" for k, v in point.items())])
        OmegaConf.to_object(cfg)  # the whole run config validates against its schema
        for key, value in point.items():
            node = OmegaConf.select(cfg, key)
            assert str(node.name if OmegaConf.is_dict(node) else node) == value, (experiment, key)


@pytest.mark.parametrize(
    "override,match",
    [
        ("connector.num_tokenz=3", "num_tokenz"),  # typo in a field name
        ("connector=attn_pool connector.depth=two", "depth"),  # wrong type
        ("train.batch_size=x", "batch_size"),
    ],
)
def test_bad_fields_are_rejected(override, match):
    with pytest.raises(Exception, match=match):
        compose_with(override.split())


def test_unknown_option_lists_valid_ones():
    with pytest.raises(Exception) as err:
        compose_with(["connector=c_abstracter"])
    assert "c_abstractor" in str(err.value)


def test_top_level_scalars_feed_components():
    cfg = compose_with(["visual_tokens=64", "resolution=32"])
    assert cfg.connector.num_tokens == 64 and cfg.resolution == 32
