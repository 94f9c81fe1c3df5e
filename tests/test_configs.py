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


def experiment_points(name: str) -> list[str]:
    """The point list of an experiment on the points sweeper (hydra/sweeper=points), else []."""
    sweeper = OmegaConf.to_container(OmegaConf.load(SWEEPS / "experiment" / f"{name}.yaml").hydra.sweeper)
    return list(sweeper.get("points") or [])  # unresolved: a point may name ${paths...}


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (SWEEPS / "experiment").glob("*.yaml")
                                              if experiment_points(p.stem)))  # fmt: skip
def test_every_listed_point_composes(experiment):
    """Each point of a points-sweeper experiment composes and validates (interpolations in it resolve)."""
    import shlex

    for point in experiment_points(experiment):
        cfg = compose_with([f"experiment={experiment}", *shlex.split(point)])
        OmegaConf.to_object(cfg)
        for override in shlex.split(point):
            key, value = override.split("=", 1)
            if not value.startswith("["):
                got = str(OmegaConf.select(cfg, key)).lower()  # yaml's true is Python's True
                assert got == value.lower() or "${" in value, (experiment, override)


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (SWEEPS / "experiment").glob("*.yaml")
                                              if not experiment_points(p.stem)))  # fmt: skip
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


# -- a library model's shape on the command line -------------------------------------------------------------------
def test_model_shape_override_adds_keys():
    """Free-form shape dicts (a library's own kwargs) take keys the YAML option did not set; the rest stays."""
    cfg = compose_with(["llm=hf", "llm.config={hidden_size: 896, vocab_size: 151936}"])
    assert cfg.llm.config.vocab_size == 151936 and cfg.llm.config.hidden_size == 896
    assert cfg.llm.config.num_hidden_layers == 2  # merged into the option's shape, as Hydra merges dicts
    cfg = compose_with(["encoder=openclip_tiny", "encoder.model_cfg.vision_cfg.mlp_ratio=2",
                        "hr_encoder=timm_convnext_tiny", "hr_encoder.model_kwargs={drop_path_rate: 0.1}",
                        "encoder.model_cfg={quick_gelu: true}"])
    assert cfg.encoder.model_cfg.vision_cfg.mlp_ratio == 2 and cfg.encoder.model_cfg.quick_gelu is True
    assert cfg.hr_encoder.model_kwargs.drop_path_rate == 0.1
    with pytest.raises(Exception, match="configs"):  # the schema's own fields stay strict
        compose_with(["llm=hf", "llm.configs={a: 1}"])


def test_model_shape_replacement_idiom():
    """``key=???`` empties a dict, so the next ``key={...}`` replaces the option's shape as a whole."""
    cfg = compose_with(["llm=hf", "llm.config=???", "llm.config={hidden_size: 896, num_hidden_layers: 3}"])
    assert OmegaConf.to_container(cfg.llm.config) == {"hidden_size": 896, "num_hidden_layers": 3}
    cfg = compose_with(["encoder=openclip_tiny", "encoder.model_cfg=???", "encoder.model_cfg={}"])
    assert OmegaConf.to_container(cfg.encoder.model_cfg) == {}


def test_empty_dict_override_is_refused_not_ignored():
    """Hydra merges ``encoder.model_cfg={}`` into the tiny tower's dict and keeps every key: refused, with the idiom."""
    from harness.config.schema import ConfigError
    from harness.config.store import compose_sweep
    from harness.config.validate import check_overrides

    with pytest.raises(ConfigError) as err:
        compose_sweep(["encoder=openclip_tiny", "encoder.model_cfg={}"])
    msg = str(err.value)
    assert "encoder.model_cfg={} changes nothing" in msg and "encoder.model_cfg=???" in msg and "\n" not in msg
    ok = ["encoder=openclip_tiny", "encoder.model_cfg=???", "encoder.model_cfg={}"]
    check_overrides(compose_with(ok), ok)  # the replacement itself passes
    check_overrides(compose_with(["encoder=openclip_vit_b32_random"]), ["encoder.model_cfg={}"])  # {} already


def test_random_init_labels_the_choices():
    """A table shows the choices: a pretrained option switched to random weights must not read as pretrained."""
    from harness.config.validate import init_labels, label_choices

    cfg = compose_with(["encoder=openclip_vit_l14_336", "encoder.pretrained=null", "llm=hf_qwen2_5_0_5b"])
    assert init_labels(cfg) == {"encoder": "random", "llm": "pretrained:Qwen/Qwen2.5-0.5B"}
    labelled = label_choices({"encoder": "openclip_vit_l14_336", "llm": "hf_qwen2_5_0_5b"}, cfg)
    assert labelled == {"encoder": "openclip_vit_l14_336 (random init)", "llm": "hf_qwen2_5_0_5b"}
    cfg = compose_with(["encoder=clip_tiny", "llm=hf_qwen2_5_0_5b_random", "connector=mining",
                        "hr_encoder=timm_convnext_tiny"])
    assert init_labels(cfg) == {"encoder": "pretrained:harness", "hr_encoder": "random", "llm": "random"}
    assert label_choices({}, cfg) == {"hr_encoder": "timm (random init)", "llm": "hf (random init)"}


def test_pooling_validation_does_not_assume_a_small_grid():
    """144 tokens are valid for c_abstractor on a 24x24 grid; only the built encoder can say whether its grid has them."""
    from harness.config.validate import validate

    validate(compose_with(["connector=c_abstractor", "visual_tokens=144", "world=shapes_micro"]))
