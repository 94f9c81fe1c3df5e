"""The catalogue of invalid configurations: each fails with one clear line and never yields a record with status ok.

Three layers catch them. Hydra rejects unknown options, unknown fields and wrong types while composing.
``harness.config.validate`` rejects bad values and combinations before anything is built (one ``ConfigError``
line: the key, the value, what is accepted); inside ``run_point`` that becomes a failed record, so one impossible
point of a grid does not stop a sweep. What needs the built encoders (resolution vs. patch size) fails at build.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from harness.config.schema import ConfigError
from harness.config.store import register_configs
from harness.config.validate import validate
from harness.registry import UnknownComponentError
from tests.conftest import MICRO, ROOT, run_sweep

register_configs()


def compose_micro(overrides: list[str], results: Path | None = None, cache: Path | None = None):
    """MICRO plus ``overrides``; a ``~group`` deletion also drops MICRO's choice for that group."""
    dropped = {o[1:] for o in overrides if o.startswith("~")}
    base = [o for o in MICRO if o.split("=")[0] not in dropped]
    paths = [f"paths.results_dir={results}", f"paths.cache_dir={cache}"] if results else []
    with initialize_config_dir(config_dir=str(ROOT / "sweeps"), version_base="1.3"):
        return compose(config_name="sweep", overrides=[*base, *overrides, *paths])


# Rejected while composing; Hydra's message names the option or field (and lists the options for a group).
COMPOSE_ERRORS = [
    (["connector=minning"], ["connector/minning", "mining", "avg_pool"]),
    (["encoder=clip_tiy"], ["encoder/clip_tiy", "clip_tiny"]),
    (["llm=llama"], ["llm/llama", "llama_tiny"]),
    (["data=mm1"], ["data/mm1", "mm1_45_45_10"]),
    (["world=shape"], ["world/shape", "shapes_micro"]),
    (["connector.num_tokenz=3"], ["num_tokenz"]),
    (["train.batch_size=x"], ["batch_size", "'x'"]),
    (["train.stages.0.lr=fast"], ["lr", "'fast'"]),
    (["seed=1.5"], ["seed", "1.5"]),
]


@pytest.mark.parametrize("overrides,expected", COMPOSE_ERRORS, ids=[c[0][0] for c in COMPOSE_ERRORS])
def test_compose_rejects(overrides, expected):
    with pytest.raises(Exception) as err:
        compose_micro(overrides)
    message = f"{err.value} {err.value.__cause__ or ''}"  # Hydra puts the type error in the cause, and prints both
    for text in expected:
        assert text in message, message


# Composed fine, rejected by validate: (overrides, text the one-line message must contain).
INVALID = {
    "avg_pool_tokens_not_square": (["connector=avg_pool", "visual_tokens=15"], "Nearest valid: 9, 16"),
    "c_abstractor_tokens_not_square": (["connector=c_abstractor", "visual_tokens=10"], "Nearest valid: 9, 16"),
    "zero_visual_tokens": (["connector=linear", "visual_tokens=0"], "visual_tokens must be >= 1, got 0"),
    "attn_pool_heads_not_dividing": (["connector=attn_pool", "connector.heads=5"], "heads (5) must divide width"),
    "connector_name_typo": (["connector.name=c_abstracter"], "Did you mean: c_abstractor"),
    "unknown_mixture_source": (["+data.mixture.captions=0.5"], "Unknown data source 'captions'. Did you mean: caption"),
    "negative_mixture_weight": (["data.mixture.text=-0.1"], "must be a finite number >= 0, got -0.1"),
    "all_zero_mixture": (
        ["data.mixture.caption=0", "data.mixture.interleaved=0", "data.mixture.text=0"],
        "has no positive weight; valid sources:",
    ),
    "negative_shots": (["eval.shots=[0,-4]"], "eval.shots must be >= 0, got [0, -4]"),
    "empty_stage_list": (["train.stages=[]"], "train.stages is empty"),
    "unknown_trainable_part": (["train.stages.0.trainable=[conector]"], "Did you mean: connector"),
    "stage_trains_nothing": (["train.stages.0.trainable=[]"], "trains nothing: trainable must list some of"),
    "batch_size_zero": (["train.batch_size=0"], "train.batch_size must be >= 1, got 0"),
    "zero_steps": (["train.stages.0.steps=0"], "steps must be >= 1, got 0"),
    "zero_lr_for_trained_connector": (["train.stages.0.lr=0"], "lr must be a finite number > 0"),
    "negative_warmup": (["train.stages.0.warmup_steps=-1"], "warmup_steps must be >= 0"),
    "encoder_lr_but_encoder_frozen": (["train.stages.0.encoder_lr=1e-4"],
                                      "encoder_lr=0.0001 is set but the stage does not train the encoder"),
    "zero_encoder_lr": (["train.stages.0.trainable=[encoder,connector,llm]", "train.stages.0.encoder_lr=0"],
                        "encoder_lr must be a finite number > 0 when it trains the encoder, got 0.0"),
    "unknown_stage_data": (["train.stages.0.data=caption_onyl"],
                           "Unknown data config 'caption_onyl'. Did you mean: caption_only?"),
    "group_by_length_zero": (["train.group_by_length=0"], "train.group_by_length must be >= 1 (1 = off)"),
    "missing_world": (["~world"], "'world' has no value: choose one of shapes, shapes_micro"),
    "unknown_eval_task": (["eval.tasks=[caption,vqa2]"], "Unknown eval task 'vqa2'. Did you mean: vqa?"),
    "unknown_eval_split": (["eval.split=tset"], "Unknown eval split 'tset'. Did you mean: test?"),
    "no_eval_images": (["eval.max_images=0"], "eval.max_images must be >= 1, got 0"),
    "unknown_device": (["runtime.device=gpu"], "runtime.device must be auto, cpu, mps, cuda or cuda:N, got 'gpu'"),
    "negative_checkpoint_every": (["runtime.checkpoint_every=-1"], "runtime.checkpoint_every must be >= 0"),
    "negative_seed": (["seed=-1"], "seed must be >= 0, got -1"),
    "split_dot_beside_column_dot": (["world.split=true"], "replaces the column dot: add world.dot=false"),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_config_is_one_line_and_never_an_ok_record(name, tmp_path):
    """``validate`` raises one line; inside ``run_point`` the same error ends as a failed record (or, with nothing
    to hash, as the error alone), and nothing is built."""
    from harness.launch import run_point

    overrides, expected = INVALID[name]
    cfg = compose_micro(overrides, tmp_path / "results", tmp_path / "cache")
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert expected in str(err.value) and "\n" not in str(err.value), str(err.value)
    try:
        rec = run_point(cfg)
    except (ConfigError, UnknownComponentError) as err:  # unresolvable or unknown component: no record at all
        assert expected in str(err)
    else:
        assert rec.status == "failed" and rec.error == f"ConfigError: {err.value}", rec.error
    assert not list((tmp_path / "cache").glob("*")), "nothing may be built for an invalid config"
    statuses = [json.loads(p.read_text())["status"] for p in (tmp_path / "results").glob("runs/*/record.json")]
    assert "ok" not in statuses


def test_resolution_off_the_patch_grid_fails_at_build(shared_cache, tmp_path):
    from harness.launch import run_point

    rec = run_point(compose_micro(["resolution=60"], tmp_path / "results", shared_cache))
    assert rec.status == "failed", rec.status
    # a config error, recorded and printed as one line ("[run] <hash>: invalid config: ..."), no traceback
    assert rec.error.startswith("ConfigError: clip_tiny: resolution 60 is not a multiple of 8. Nearest valid:")


def test_sweep_cli_invalid_point_is_one_line_and_a_failed_record(sweep_env, tmp_path):
    res = run_sweep(["connector=avg_pool", "visual_tokens=15", *MICRO], sweep_env, tmp_path)
    assert res.returncode == 1, res.stderr[-3000:]  # a point that failed is a failed command
    lines = [ln for ln in res.stdout.splitlines() if "invalid config" in ln]
    assert len(lines) == 1 and "avg_pool needs a square visual_tokens" in lines[0], res.stdout
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    (rec_path,) = (tmp_path / "results" / "runs").glob("*/record.json")
    assert json.loads(rec_path.read_text())["status"] == "failed"


def test_sweep_cli_missing_group_stops_before_any_record(sweep_env, tmp_path):
    res = run_sweep(["~world", *[o for o in MICRO if not o.startswith("world=")]], sweep_env, tmp_path)
    assert res.returncode != 0
    assert "'world' has no value: choose one of shapes, shapes_micro" in res.stderr, res.stderr[-3000:]
    assert not (tmp_path / "results" / "runs").exists()


def test_sweep_cli_empty_model_shape_is_refused_not_ignored(sweep_env, tmp_path):
    """``encoder.model_cfg={}`` reads as "the library's default ViT-B-32" but Hydra merges it into the tiny tower's
    dict and keeps every key; the point fails with the replacement idiom instead of training the tiny tower."""
    micro = [o for o in MICRO if not o.startswith("encoder.")]  # openclip has no pre-training fields
    res = run_sweep(["encoder=openclip_tiny", "encoder.model_cfg={}", *micro], sweep_env, tmp_path)
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    lines = [ln for ln in res.stdout.splitlines() if "invalid config" in ln]
    assert len(lines) == 1 and "encoder.model_cfg={} changes nothing" in lines[0], res.stdout
    assert "'encoder.model_cfg=???' 'encoder.model_cfg={...}'" in lines[0]
    (rec_path,) = (tmp_path / "results" / "runs").glob("*/record.json")
    assert json.loads(rec_path.read_text())["status"] == "failed"


def test_validation_says_nothing_about_its_stand_in_encoder(caplog):
    """Validation builds the connector on a stand-in grid (8x8 here); mlp's note about its token count belongs to
    the build on the real encoder (ViT-B/32 at 224 px: 49), not to the stand-in (64)."""
    import logging

    cfg = compose_micro(["connector=mlp", "visual_tokens=16"])
    with caplog.at_level(logging.WARNING):
        validate(cfg)
    assert not [r for r in caplog.records if "emits one token per patch" in r.getMessage()]
    from harness.models.connectors import CONNECTORS, FeatureSpec

    with caplog.at_level(logging.WARNING):  # the build's own note still comes
        CONNECTORS.get("mlp")(cfg.connector, FeatureSpec(dim=8, grid=(7, 7)), 8)
    assert any("emits one token per patch (49)" in r.getMessage() for r in caplog.records)
