"""Encoder contract tests, parametrised over ``ENCODERS.names()`` (style rule 7).

Every registered encoder needs a tiny variant: an option ``sweeps/{encoder,hr_encoder}/*tiny.yaml`` whose ``name:``
is the encoder. Each one is built offline from its composed config and must emit ``[B, N, D]`` with ``N = (r/s)^2``,
where ``s`` is the stride that ``check_resolution`` enforces (a size between two multiples fails naming both), at
its configured resolution and at twice it (ViT position embeddings interpolated). Encoders pre-trained on the world
(``clip_tiny``, ``conv_tiny``) get a micro world and 2 pre-training steps.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from harness.config.store import register_configs
from harness.data.features import feature_key
from harness.models.encoders import ENCODERS, FeatureMapEncoder, build_encoder
from harness.models.encoders.external import EvalBackbone

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"
register_configs()


def tiny_variants() -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {name: [] for name in ENCODERS.names()}
    for group in ("encoder", "hr_encoder"):
        for yml in sorted((SWEEPS / group).glob("*tiny.yaml")):
            out[OmegaConf.load(yml).name].append((group, yml.stem))
    return out


TINY = [(name, group, option) for name, opts in tiny_variants().items() for group, option in opts]
IDS = [f"{g}={o}" for _, g, o in TINY]


def load(group: str, option: str, **fields):
    """The typed config of one option, as a sweep point would get it, and the point's resolution for it."""
    overrides = [f"{group}={option}", *(f"{group}.{k}={v}" for k, v in fields.items())]
    with initialize_config_dir(config_dir=str(SWEEPS), version_base="1.3"):
        cfg = compose(config_name="sweep", overrides=overrides)
    return OmegaConf.to_object(cfg[group]), cfg.resolution if group == "encoder" else cfg.hr_resolution


@pytest.fixture(scope="module")
def world_tok(tmp_path_factory):
    from harness.models.llm.tokenizer import world_tokenizer
    from harness.world import World
    from tests.test_data_and_vlm import MICRO_WORLD

    world = World.build_or_load(MICRO_WORLD, tmp_path_factory.mktemp("world"))
    return world, world_tokenizer(world, 256, tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("enc_cache")


def build(request, cache: Path, group: str, option: str, resolution: int | None = None, **fields):
    cfg, res = load(group, option, **fields)
    world = tok = None
    if hasattr(cfg, "pretrain_steps"):  # pre-trained on the world by the harness: a micro run
        cfg.pretrain_steps, cfg.pretrain_batch = 2, 8
        world, tok = request.getfixturevalue("world_tok")
    with torch.enable_grad():  # the tests run under no_grad; pre-training must not
        return build_encoder(cfg, resolution or res, world, tok, cache), resolution or res


def images(n: int = 2, side: int = 80, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, side, side, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.mark.parametrize("name", ENCODERS.names())
def test_every_encoder_has_a_tiny_variant(name: str) -> None:
    assert tiny_variants()[name], f"encoder '{name}' needs sweeps/encoder/<{name}_...>tiny.yaml with name: {name}"


@pytest.mark.parametrize("name,group,option", TINY, ids=IDS)
@torch.no_grad()
def test_tiny_variant_shapes_and_resolution_rules(request, cache, name, group, option) -> None:
    enc, r = build(request, cache, group, option)
    out = enc.encode(images())
    (gh, gw), dim = enc.spec.grid, enc.spec.dim
    assert out.shape == (2, gh * gw, dim) and torch.isfinite(out).all()
    assert gh == gw and r % gh == 0
    stride = r // gh  # the patch size (ViT) or the last stage's stride (conv)
    if isinstance(enc, FeatureMapEncoder):
        maps = enc.encode_maps(images())
        spec = enc.map_spec
        assert [tuple(m.shape) for m in maps] == [(2, c, h, w) for c, (h, w) in zip(spec.channels, spec.sizes)]
    if isinstance(enc, EvalBackbone):  # VLM.train() must not switch on the backbone's dropout / drop-path
        enc.train()
        assert not any(m.training for m in enc.modules())

    big, _ = build(request, cache, group, option, resolution=2 * r)
    assert big.encode(images()).shape == (2, 4 * gh * gw, dim)
    with pytest.raises(ValueError, match=rf"Nearest valid: \[{r}, {r + stride}\]"):
        build(request, cache, group, option, resolution=r + stride // 2)


@pytest.mark.parametrize("name,group,option", TINY, ids=IDS)
@torch.no_grad()
def test_identity_is_deterministic_and_cacheable(request, cache, name, group, option) -> None:
    a, _ = build(request, cache, group, option)
    b, _ = build(request, cache, group, option)
    assert a.meta["artifact"] == b.meta["artifact"]
    assert feature_key(a, "train", "w") == feature_key(b, "train", "w") is not None
    torch.testing.assert_close(a.encode(images()), b.encode(images()), rtol=0, atol=0)
    if hasattr(a.cfg, "init_seed"):  # a seeded random init: another seed is other weights, another identity
        c, _ = build(request, cache, group, option, init_seed=1)
        assert c.meta["artifact"] != a.meta["artifact"]
        assert not torch.allclose(c.encode(images()), a.encode(images()))


def reference(enc, pixels: torch.Tensor) -> torch.Tensor:
    """The library's own forward at its native resolution, with no position-embedding interpolation at all."""
    layer = -2 if enc.cfg.feature_layer == "penultimate" else -1
    if enc.cfg.name == "openclip":
        depth = len(enc.visual.transformer.resblocks)
        out = enc.visual.forward_intermediates(
            pixels, indices=[depth + layer], intermediates_only=True, output_fmt="NLC"
        )
        return out["image_intermediates"][0]
    if enc.cfg.name == "hf":
        hs = enc.model(pixel_values=pixels, output_hidden_states=True, interpolate_pos_encoding=False).hidden_states
        return hs[layer][:, 1:] if enc.cfg.family == "clip" else hs[layer]
    import timm

    from harness.models.encoders.external import seeded

    with seeded(enc.cfg.init_seed):
        model = timm.create_model(enc.cfg.model, pretrained=False, **enc.cfg.model_kwargs).eval()
    return model.forward_intermediates(
        pixels, indices=[len(model.blocks) + layer], output_fmt="NLC", intermediates_only=True
    )[0]


VITS = [(n, g, o) for n, g, o in TINY if n in ("openclip", "hf", "timm") and g == "encoder"]


@pytest.mark.parametrize("name,group,option", VITS, ids=[f"{g}={o}" for _, g, o in VITS])
@pytest.mark.parametrize("layer", ["last", "penultimate"])
@torch.no_grad()
def test_native_resolution_matches_the_library(request, cache, name, group, option, layer) -> None:
    enc, _ = build(request, cache, group, option, feature_layer=layer)
    pixels = enc.preprocess(images())
    torch.testing.assert_close(enc(pixels), reference(enc, pixels), rtol=1e-5, atol=1e-5)


def test_openclip_interpolation_matches_open_clip_resize_pos_embed(request, cache) -> None:
    from open_clip.model import resize_pos_embed

    from harness.models.encoders.openclip import interpolate_pos_embed

    enc, _ = build(request, cache, "encoder", "openclip_tiny")
    pos = enc.visual.positional_embedding.detach()
    assert interpolate_pos_embed(pos, 8) is pos  # native 64 px / patch 8: untouched
    state = {"visual.positional_embedding": pos}
    enc.visual.grid_size = (12, 12)  # what open_clip's loader reads to resize a checkpoint to 96 px
    resize_pos_embed(state, enc)
    torch.testing.assert_close(interpolate_pos_embed(pos, 12), state["visual.positional_embedding"])


@torch.no_grad()
def test_timm_convnext_maps_feed_the_mining_connector(request, cache) -> None:
    from harness.models.connectors import build_connector
    from harness.models.connectors.mining import MiningCfg

    lr, _ = build(request, cache, "encoder", "timm_vit_tiny")  # 64 px / 8 -> 8x8 queries
    hr, _ = build(request, cache, "hr_encoder", "timm_convnext_tiny", resolution=128)
    assert hr.map_spec.channels == (8, 16, 32, 64)
    assert hr.map_spec.sizes == ((32, 32), (16, 16), (8, 8), (4, 4))
    maps = hr.encode_maps(images(side=128))
    assert [tuple(m.shape) for m in maps] == [(2, 8, 32, 32), (2, 16, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4)]
    for m in (64, 16):  # one query per LR patch (MGM), and pooled queries over 2x2 patches
        conn = build_connector(MiningCfg(name="mining", num_tokens=m), lr.spec, 48, hr.map_spec)
        assert conn(lr.encode(images(side=128)), maps).shape == (2, m, 48)


@pytest.mark.parametrize("trunk,maps", [("convnext_atto", True), ("vit_tiny_patch16_224", False)])
@torch.no_grad()
def test_openclip_timm_trunks(cache, trunk: str, maps: bool) -> None:
    """open_clip towers built on timm trunks (MGM's convnext_large_d_320, the SigLIP ViTs) reuse the timm wrappers."""
    cfg, _ = load("encoder", "openclip_tiny")
    cfg.model_cfg["vision_cfg"] = {"timm_model_name": trunk, "timm_pool": "", "timm_proj": "linear", "image_size": 224}
    enc = build_encoder(cfg, 224, None, None, cache)
    assert isinstance(enc, FeatureMapEncoder) == maps and "artifact" in enc.meta
    grid = 224 // (32 if maps else 16)
    assert enc.encode(images()).shape == (2, grid * grid, enc.spec.dim)


def test_hf_local_folder_hash_and_offline_errors(request, cache, tmp_path) -> None:
    enc, _ = build(request, cache, "encoder", "hf_clip_tiny")
    enc.model.save_pretrained(tmp_path / "clip")
    local, _ = build(request, cache, "encoder", "hf_clip_tiny", model=str(tmp_path / "clip"), config="null")
    assert len(local.meta["weights"]["sha1"]) == 40 and local.meta["artifact"] != enc.meta["artifact"]
    assert (enc.meta["init"], local.meta["init"]) == ("random", f"pretrained:{tmp_path / 'clip'}")
    with torch.no_grad():
        torch.testing.assert_close(local.encode(images()), enc.encode(images()))
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        build(request, cache, "encoder", "hf_clip_tiny", model=str(tmp_path / "does-not-exist"), config="null")
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        build(request, cache, "encoder", "hf_clip_tiny", model="mm-ablate-test/no-such-model", config="null")


@pytest.mark.parametrize(
    "fields,error,match",
    [
        ({"model": "ViT-B-33"}, ValueError, "Did you mean: .*ViT-B-32"),
        ({"pretrained": "opena"}, ValueError, "valid: .*openai"),
        ({"pretrained": "/no/such/clip.pt"}, FileNotFoundError, "/no/such/clip.pt"),
    ],
)
def test_openclip_bad_names_fail_before_building(request, cache, fields, error, match) -> None:
    with pytest.raises(error, match=match):
        build(request, cache, "encoder", "openclip_tiny", **fields)


def test_timm_unknown_model_and_conv_without_features_only(request, cache) -> None:
    with pytest.raises(ValueError, match="Did you mean: .*convnext_atto"):
        build(request, cache, "hr_encoder", "timm_convnext_tiny", model="convnext_atoo")
    with pytest.raises(ValueError, match="features_only: true"):
        build(request, cache, "hr_encoder", "timm_convnext_tiny", features_only="false")


LIBRARIES = ("openclip", "timm", "hf")


@pytest.mark.parametrize("name,group,option", TINY, ids=IDS)
def test_weights_init_is_labelled(request, cache, name, group, option) -> None:
    """``meta["init"]`` (and the run's labelled choices) tell a random tower from a pretrained one."""
    enc, _ = build(request, cache, group, option)
    assert enc.meta["init"] == ("random" if name in LIBRARIES else "pretrained:harness")


def test_weights_init_of_pretrained_library_configs() -> None:
    """The label is known from the config alone, before (and without) fetching any weights."""
    assert load("encoder", "openclip_vit_l14_336")[0].init == "pretrained:openai"
    assert load("encoder", "openclip_vit_l14_336", pretrained="null")[0].init == "random"
    assert load("encoder", "hf_siglip_so400m_384")[0].init == "pretrained:google/siglip-so400m-patch14-384"
    assert load("hr_encoder", "timm_convnext_large_clip_320")[0].init == (
        "pretrained:convnext_large_mlp.clip_laion2b_ft_soup_320")
    assert load("hr_encoder", "timm_convnext_tiny", weights_file="/w.pt")[0].init == "pretrained:/w.pt"


@pytest.mark.slow
@torch.no_grad()
def test_openclip_vit_b32_random_is_the_real_size(request, cache) -> None:
    """ViT-B/32's image tower at 224 px, randomly initialised offline: ~88M parameters, 7x7 tokens of width 768."""
    enc, _ = build(request, cache, "encoder", "openclip_vit_b32_random", resolution=224)
    n = sum(p.numel() for p in enc.parameters())
    assert 87e6 < n < 89e6, n
    assert enc.spec.grid == (7, 7) and enc.spec.dim == 768 and enc.meta["init"] == "random"
    assert enc.encode(images(1, side=224)).shape == (1, 49, 768)


@pytest.mark.parametrize("option", ["clip_tiny", "conv_tiny", "aim_tiny"])
def test_pretrained_weights_do_not_depend_on_what_the_building_job_drew_before(request, tmp_path, option) -> None:
    """Two fresh caches of one config hold the same backbone whichever sweep job built it (its seed, what it built
    first): the initialisation is seeded from the config, not taken from the caller's RNG, which is left as it was."""
    group = "hr_encoder" if option == "conv_tiny" else "encoder"
    weights = []
    for i, caller_seed in enumerate((0, 1234)):
        torch.manual_seed(caller_seed)
        torch.rand(7)  # the job has drawn something already
        state = torch.get_rng_state()
        enc, _ = build(request, tmp_path / f"cache{i}", group, option)
        assert torch.equal(torch.get_rng_state(), state)  # the caller's stream is untouched by the build
        weights.append({k: v.clone() for k, v in enc.state_dict().items()})
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
