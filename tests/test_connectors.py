"""Connector contract tests, parametrized over ``CONNECTORS.names()``: a newly registered connector is tested here
without new test code (style rule 7). Each connector is built from its own cfg class defaults (the tiny sizes) at
D_enc 32 -> d_llm 48; connectors with ``needs_hr`` get a 4-stage feature-map pyramid from ``hr_spec``.

What a connector cannot do by design is listed in the tables below; everything else must work.
"""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from harness.models.connectors import CONNECTORS, Connector, FeatureMapSpec, FeatureSpec, build_connector
from harness.registry import UnknownComponentError

D_ENC, D_LLM, BATCH = 32, 48, 2
NAMES = CONNECTORS.names()
TOKENS_IN = (64, 256, 576)  # 8x8, 16x16, 24x24 patch grids (224 px /28, 224 px /14, 336 px /14)
TOKENS_OUT = (16, 64, 144)
# HR pyramid: ConvNeXt-like strides of a 192 px image -> stage 0 is 48x48, divisible by every LR grid side above.
HR_CHANNELS, HR_STRIDES, HR_IMAGE = (8, 16, 32, 64), (4, 8, 16, 32), 192

# Connectors that emit one token per patch whatever num_tokens says (documented in their module docstrings).
EMITS_N = {"linear", "mlp"}
# (name, N, M) a connector rejects by design, with a fragment its error message must contain.
CANNOT = {
    ("mining", 64, 144): "Valid: [1, 4, 9, 16, 36, 64]",  # mining never adds tokens: M <= N
    # Pooling to more cells than patches only repeats patches (pooled_side): M <= N, with the valid counts.
    ("avg_pool", 64, 144): "Valid: 1, 4, 9, 16, 25, 36, 49, 64",
    ("c_abstractor", 64, 144): "Valid: 1, 4, 9, 16, 25, 36, 49, 64",
}
# Connectors that need a square M, and what their error for M = 50 must say.
SQUARE_ONLY = {"avg_pool": "Nearest valid: 49, 64", "c_abstractor": "Nearest valid: 49, 64", "mining": "Valid: ["}


def hr_spec(image: int = HR_IMAGE) -> FeatureMapSpec:
    return FeatureMapSpec(HR_CHANNELS, tuple((image // s, image // s) for s in HR_STRIDES))


def make(name: str, n: int = 64, m: int = 16, hr_image: int = HR_IMAGE, **fields) -> Connector:
    cfg = CONNECTORS.entry(name).cfg_cls(name=name, num_tokens=m, **fields)
    side = math.isqrt(n)
    hr = hr_spec(hr_image) if CONNECTORS.get(name).needs_hr else None
    return build_connector(cfg, FeatureSpec(D_ENC, (side, side)), D_LLM, hr)


def inputs(conn: Connector, seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, conn.expected_input_tokens, D_ENC, generator=g)
    hr = None
    if conn.needs_hr:
        spec = conn.hr_spec
        hr = [torch.randn(BATCH, c, h, w, generator=g) for c, (h, w) in zip(spec.channels, spec.sizes)]
    return x, hr


# -- contract, for every registered connector -------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", TOKENS_IN)
@pytest.mark.parametrize("m", TOKENS_OUT)
def test_output_shape(name: str, n: int, m: int) -> None:
    if (name, n, m) in CANNOT:
        with pytest.raises(ValueError, match=CANNOT[name, n, m].replace("[", r"\[")):
            make(name, n, m)
        return
    conn = make(name, n, m)
    expected_m = n if name in EMITS_N else m
    assert conn.num_tokens == expected_m, (name, conn.num_tokens, expected_m)
    x, hr = inputs(conn)
    with torch.no_grad():
        out = conn(x, hr)
    assert out.shape == (BATCH, expected_m, D_LLM)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_non_square_tokens(name: str) -> None:
    if name in SQUARE_ONLY:
        with pytest.raises(ValueError, match=SQUARE_ONLY[name].replace("[", r"\[")):
            make(name, 64, 50)
    else:
        conn = make(name, 64, 50)
        x, hr = inputs(conn)
        assert conn(x, hr).shape == (BATCH, 64 if name in EMITS_N else 50, D_LLM)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_trainable_parameter(name: str) -> None:
    conn = make(name)
    x, hr = inputs(conn)
    out = conn(x, hr)
    # A random projection, not out.sum(): a sum can be blind to parameters right before a LayerNorm.
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
    named = {id(p): n for n, p in conn.named_parameters()}
    trainable = list(conn.trainable_parameters())
    assert trainable
    dead = [named[id(p)] for p in trainable if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"{name}: no gradient reaches {dead}"


@pytest.mark.parametrize("name", NAMES)
def test_input_not_modified_in_place(name: str) -> None:
    conn = make(name)
    x, hr = inputs(conn)
    x0, hr0 = x.clone(), [t.clone() for t in hr] if hr else None
    conn(x, hr).sum().backward()
    assert torch.equal(x, x0)
    if hr:
        assert all(torch.equal(a, b) for a, b in zip(hr, hr0))


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_seed(name: str) -> None:
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        conn = make(name)
        x, hr = inputs(conn)
        with torch.no_grad():
            outs.append(conn(x, hr))
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("n", "m"), [(64, 16), (576, 144)])
def test_batch_invariant_means_to_the_bit(name: str, n: int, m: int) -> None:
    # What evaluation's per-image token reuse (harness.eval.runner) rests on: a connector that declares it gives
    # every image the same bits alone, in a batch of 40, and in any slice of that batch.
    conn = make(name, n, m).eval()
    if not conn.batch_invariant:
        pytest.skip(f"{name} declares batch_invariant = False: evaluation computes its tokens batch by batch")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, conn.expected_input_tokens, D_ENC, generator=g)
    hr = None
    if conn.needs_hr:
        hr = [torch.randn(40, c, h, w, generator=g) for c, (h, w) in zip(conn.hr_spec.channels, conn.hr_spec.sizes)]

    def rows(a: int, b: int) -> torch.Tensor:
        return conn(x[a:b], None if hr is None else [t[a:b] for t in hr])

    with torch.no_grad():
        full = rows(0, 40)
        assert all(torch.equal(full[i : i + 1], rows(i, i + 1)) for i in range(0, 40, 7))
        assert torch.equal(full[3:20], rows(3, 20))


@pytest.mark.parametrize("name", NAMES)
def test_accounting(name: str) -> None:
    conn = make(name)
    assert conn.num_params() > 0
    assert 0 < conn.num_params(trainable_only=True) <= conn.num_params()
    assert conn.flops_per_image() > 0


@pytest.mark.parametrize("name", NAMES)
def test_cfg_is_a_valid_structured_config(name: str) -> None:
    """The cfg class composes under OmegaConf, and num_tokens follows the root ``visual_tokens`` interpolation."""
    cfg_cls = CONNECTORS.entry(name).cfg_cls
    root = OmegaConf.create({"visual_tokens": 16, "connector": OmegaConf.structured(cfg_cls(name=name))})
    cfg = OmegaConf.to_object(root.connector)
    assert isinstance(cfg, cfg_cls) and cfg.num_tokens == 16
    conn = build_connector(cfg, FeatureSpec(D_ENC, (8, 8)), D_LLM, hr_spec() if CONNECTORS.get(name).needs_hr else None)
    assert conn.num_tokens == (64 if name in EMITS_N else 16)


def test_unknown_name_lists_valid_ones() -> None:
    cfg = CONNECTORS.entry("linear").cfg_cls(name="avg_pol", num_tokens=16)
    with pytest.raises(UnknownComponentError) as err:
        build_connector(cfg, FeatureSpec(D_ENC, (8, 8)), D_LLM)
    msg = str(err.value)
    assert "Did you mean: avg_pool" in msg
    assert all(n in msg for n in NAMES)


# -- mining: locality, pooled mode, extension mode -------------------------------------------------------------------
def mining_token_diff(conn: Connector, x, hr, stage: int, rows: slice, cols: slice, *, perturb_x: int | None = None):
    """|out' - out| per output token after adding noise to ``hr[stage][..., rows, cols]`` (or to LR token perturb_x)."""
    with torch.no_grad():
        base = conn(x, hr)
        hr2 = [t.clone() for t in hr]
        x2 = x.clone()
        if perturb_x is None:
            hr2[stage][:, :, rows, cols] += 3.0
        else:
            x2[:, perturb_x] += 3.0
        return (conn(x2, hr2) - base).abs().amax(dim=(0, 2))  # [M]


def test_mining_each_query_sees_only_its_window() -> None:
    conn = make("mining", 64, 64)  # 8x8 queries over a 48x48 stage-0 map: 6x6 windows
    x, hr = inputs(conn)
    i = 2 * 8 + 5  # query row 2, col 5 -> stage-0 rows 12:18, cols 30:36
    inside = mining_token_diff(conn, x, hr, 0, slice(13, 15), slice(31, 33))
    assert inside[i] > 1e-4
    assert (inside > 1e-4).sum() == 1  # and nothing else moved
    outside = mining_token_diff(conn, x, hr, 0, slice(0, 12), slice(0, 48))  # every row above the window
    assert outside[i] < 1e-6 and outside.amax() > 1e-4
    # stage 3 (6x6, 8 stage-0 cells each) far from the window, through the bilinear upsampling: no effect
    far = mining_token_diff(conn, x, hr, 3, slice(0, 1), slice(0, 1))
    assert far[i] < 1e-6
    near = mining_token_diff(conn, x, hr, 3, slice(1, 2), slice(4, 5))  # stage-3 cell covering stage-0 rows 8:16
    assert near[i] > 1e-4
    # other LR queries never influence query i; query i itself does
    assert mining_token_diff(conn, x, hr, 0, slice(0), slice(0), perturb_x=i + 1)[i] < 1e-6
    assert mining_token_diff(conn, x, hr, 0, slice(0), slice(0), perturb_x=i)[i] > 1e-4


def test_mining_pooled_mode_window_covers_pooled_region() -> None:
    conn = make("mining", 64, 16)  # 8x8 LR grid pooled to 4x4; windows grow to 12x12 stage-0 cells
    x, hr = inputs(conn)
    i = 1 * 4 + 2  # pooled query row 1, col 2 -> stage-0 rows 12:24, cols 24:36
    assert conn(x, hr).shape == (BATCH, 16, D_LLM)
    inside = mining_token_diff(conn, x, hr, 0, slice(22, 24), slice(24, 26))
    assert inside[i] > 1e-4 and (inside > 1e-4).sum() == 1
    assert mining_token_diff(conn, x, hr, 0, slice(24, 48), slice(0, 48))[i] < 1e-6
    # LR patch (3, 5) lies in pooled cell (1, 2); patch (0, 0) does not
    assert mining_token_diff(conn, x, hr, 0, slice(0), slice(0), perturb_x=3 * 8 + 5)[i] > 1e-4
    assert mining_token_diff(conn, x, hr, 0, slice(0), slice(0), perturb_x=0)[i] < 1e-6


@pytest.mark.parametrize("m", [64, 16])
def test_mining_extension_views(m: int) -> None:
    conn = make("mining", 64, m, hr_image=2 * HR_IMAGE, extension=True)  # 96x96 stage 0 -> 48x48 per view
    assert conn.expected_input_tokens == 5 * 64 and conn.num_tokens == 5 * m
    x, hr = inputs(conn)
    assert conn(x, hr).shape == (BATCH, 5 * m, D_LLM)
    block = lambda diff: [bool(diff[v * m : (v + 1) * m].amax() > 1e-4) for v in range(5)]
    # a stage-0 cell in the top-right quadrant feeds crop 2 and the (downsampled) global view only
    assert block(mining_token_diff(conn, x, hr, 0, slice(10, 11), slice(70, 71))) == [True, False, True, False, False]
    # LR tokens of view 3 (crop 3) only change view 3's output tokens; order is [global, crop1..crop4]
    assert block(mining_token_diff(conn, x, hr, 0, slice(0), slice(0), perturb_x=3 * 64 + 10)) == [
        False, False, False, True, False
    ]


def test_mining_rejects_missing_hr_and_wrong_maps() -> None:
    cfg = CONNECTORS.entry("mining").cfg_cls(name="mining", num_tokens=64)
    with pytest.raises(ValueError, match="high-resolution"):
        build_connector(cfg, FeatureSpec(D_ENC, (8, 8)), D_LLM)
    conn = make("mining", 64, 64)
    x, hr = inputs(conn)
    with pytest.raises(ValueError, match="hr maps"):
        conn(x, hr[:3])
    with pytest.raises(ValueError, match="Valid"):  # 20x20 stage 0 does not tile into an 8x8 query grid
        make("mining", 64, 64, hr_image=80)


def test_mining_width_differs_from_encoder() -> None:
    conn = make("mining", 64, 64, width=40)
    x, hr = inputs(conn)
    assert conn(x, hr).shape == (BATCH, 64, D_LLM)


# -- other connector-specific behaviour -------------------------------------------------------------------------------
def test_qformer_freeze_trains_only_llama_proj() -> None:
    conn = make("qformer", freeze_qformer=True)
    trainable = list(conn.trainable_parameters())
    assert {id(p) for p in trainable} == {id(p) for p in conn.llama_proj.parameters()}
    hidden = CONNECTORS.entry("qformer").cfg_cls.hidden
    assert conn.num_params(trainable_only=True) == hidden * D_LLM + D_LLM
    x, _ = inputs(conn)
    conn(x).sum().backward()
    assert all(p.grad is None for n, p in conn.named_parameters() if not n.startswith("llama_proj."))


def test_qformer_cross_attention_frequency() -> None:
    conn = make("qformer", layers=4, cross_attention_freq=2)
    assert [layer.crossattention is not None for layer in conn.layers] == [True, False, True, False]


@pytest.mark.parametrize("kv_include_queries", [False, True])
def test_attn_pool_variants(kv_include_queries: bool) -> None:
    conn = make("attn_pool", 64, 7, kv_include_queries=kv_include_queries, depth=2)
    x, _ = inputs(conn)
    assert conn(x).shape == (BATCH, 7, D_LLM)


def test_c_abstractor_depth_zero_is_pool_plus_mlp() -> None:
    conn = make("c_abstractor", 64, 16, depth=0)
    assert not any(isinstance(mod, torch.nn.Conv2d) for mod in conn.modules())
    x, _ = inputs(conn)
    assert conn(x).shape == (BATCH, 16, D_LLM)


@pytest.mark.parametrize("name", ["avg_pool", "c_abstractor"])
def test_pooling_refuses_more_tokens_than_patches(name: str) -> None:
    """ViT-B/32 at 224 px has a 7x7 grid: 144 tokens would be patches copied into several cells, not pooled."""
    from harness.config.schema import ConfigError

    cfg = CONNECTORS.entry(name).cfg_cls(name=name, num_tokens=144)
    with pytest.raises(ConfigError, match=r"visual_tokens=144 .* 7x7 patch grid \(49 patches\).* Valid: 1, 4, 9, 16, "
                                          r"25, 36, 49 \(or raise resolution\)"):
        build_connector(cfg, FeatureSpec(D_ENC, (7, 7)), D_LLM)
    with pytest.raises(ConfigError, match=r"4x8 patch grid .* Valid: 1, 4, 9, 16 \("):  # side <= the shorter side
        build_connector(CONNECTORS.entry(name).cfg_cls(name=name, num_tokens=25), FeatureSpec(D_ENC, (4, 8)), D_LLM)
    conn = build_connector(CONNECTORS.entry(name).cfg_cls(name=name, num_tokens=49), FeatureSpec(D_ENC, (7, 7)), D_LLM)
    assert conn(torch.zeros(1, 49, D_ENC)).shape == (1, 49, D_LLM)  # M = N is the limit, and allowed


def test_avg_pool_is_pool_then_linear() -> None:
    conn = make("avg_pool", 64, 16)  # 8x8 -> 4x4: exact 2x2 windows
    x, _ = inputs(conn)
    pooled = x.reshape(BATCH, 4, 2, 4, 2, D_ENC).mean(dim=(2, 4)).reshape(BATCH, 16, D_ENC)
    torch.testing.assert_close(conn(x), conn.proj(pooled))


# -- real sizes, on the meta device (no memory, no compute) -----------------------------------------------------------
CONVNEXT_L_768 = FeatureMapSpec((192, 384, 768, 1536), ((192, 192), (96, 96), (48, 48), (24, 24)))
REAL = {  # name: (num_tokens, cfg fields) from docs/mm1_reference.md §2
    "avg_pool": (144, {}),
    "attn_pool": (144, {"width": 1024, "depth": 6, "heads": 16}),
    "c_abstractor": (144, {"hidden": 1024, "depth": 3}),
    "linear": (576, {}),
    "mlp": (576, {}),
    "mining": (576, {"width": 1024}),  # MGM: M = N; its parameter count does not depend on M
    "qformer": (32, {"hidden": 768, "layers": 12, "heads": 12, "freeze_qformer": True}),
}


def mining_projection_params(conn: Connector) -> int:
    return sum(p.numel() for mod in (conn.phi_q, conn.phi_k, conn.phi_v) for p in mod.parameters())


# name: (what the reference notes say, the count it is checked against, allowed range)
REFERENCE = {
    "c_abstractor": ("~37M", lambda c: c.num_params(), (33e6, 41e6)),
    "mining": ("projections ~7M (+ mlp2x_gelu)", mining_projection_params, (6.5e6, 7.5e6)),
    "qformer": ("MiniGPT-4 llama_proj ~3.1M", lambda c: c.num_params(trainable_only=True), (3.0e6, 3.2e6)),
    "linear": ("C_v*d + d", lambda c: c.num_params(), (1024 * 4096 + 4096,) * 2),
    "avg_pool": ("C_v*d + d", lambda c: c.num_params(), (1024 * 4096 + 4096,) * 2),
}


@pytest.mark.parametrize("name", NAMES)
def test_real_size_parameter_counts(name: str) -> None:
    if name not in REAL:
        pytest.skip(f"no real-size config for '{name}' in this test; add it to REAL")
    m, fields = REAL[name]
    cfg = CONNECTORS.entry(name).cfg_cls(name=name, num_tokens=m, **fields)
    hr = CONVNEXT_L_768 if CONNECTORS.get(name).needs_hr else None
    with torch.device("meta"):
        conn = build_connector(cfg, FeatureSpec(1024, (24, 24)), 4096, hr)
        gflops = conn.flops_per_image() / 1e9
    line = f"{name:>13}: {conn.num_params() / 1e6:7.2f}M params, {conn.num_params(True) / 1e6:7.2f}M trainable"
    line += f", {gflops:7.2f} GFLOPs/image, M={conn.num_tokens}"
    if name in REFERENCE:
        note, count, (lo, hi) = REFERENCE[name]
        line += f"; reference {note}: measured {count(conn) / 1e6:.2f}M"
        assert lo <= count(conn) <= hi, line
    print(line)
