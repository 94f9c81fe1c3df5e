"""Vision-language connector base class: ``[B, N, D_enc] -> [B, M, D_llm]``.

A connector maps the image encoder's patch features (``N = gh * gw`` tokens of width ``D_enc``, raster order, CLS
already dropped) to ``M`` visual tokens in the LLM's embedding space. ``M`` is the number of sequence positions one
image occupies in the LLM input, and it is set by the one top-level knob ``visual_tokens`` for every connector that
can honour it (MM1 §3.2: "number of visual tokens and image resolution matters most").

Subclasses implement ``_forward`` only. The base class owns the shape contract (one check at the boundary, on the
way in and on the way out), the parameter count and the FLOPs-per-image measurement, so every registered connector
reports the same figures into the run record.
"""

from __future__ import annotations

import math
from abc import ABCMeta, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
from omegaconf import II, MISSING
from torch import Tensor, nn

from harness.config.schema import ConfigError
from harness.registry import Registry

CONNECTORS: Registry[type[Connector]] = Registry("connector")


@dataclass
class ConnectorCfg:
    """Fields every connector config has; subclasses add their own (each is a Hydra schema)."""

    name: str = MISSING
    num_tokens: int = II("visual_tokens")  # M: visual tokens per image handed to the LLM


@dataclass(frozen=True)
class FeatureSpec:
    """What the (low-resolution) image encoder emits: ``[B, N, dim]`` with ``N = grid[0] * grid[1]``."""

    dim: int
    grid: tuple[int, int]

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]


@dataclass(frozen=True)
class FeatureMapSpec:
    """What a multi-stage convolutional encoder emits: one ``[B, C_i, H_i, W_i]`` map per stage, stride order."""

    channels: tuple[int, ...]
    sizes: tuple[tuple[int, int], ...]


class Connector(nn.Module, metaclass=ABCMeta):
    """Base class. ``forward(x[B, N, D_enc], hr=None) -> [B, M, D_llm]``.

    ``hr`` is the list of high-resolution feature maps for connectors with ``needs_hr = True`` (Mini-Gemini mining);
    every other connector must be called without it.
    """

    needs_hr: ClassVar[bool] = False
    # An image's visual tokens do not depend on the other images of its batch, to the bit (tests/test_connectors.py
    # checks it on the CPU): evaluation then computes them once per image and reuses them for every prompt that
    # shows it (harness.eval.runner). False where the last bits move with the batch size (c_abstractor).
    batch_invariant: ClassVar[bool] = True

    def __init__(self, cfg: ConnectorCfg, feat: FeatureSpec, d_llm: int, hr: FeatureMapSpec | None = None):
        super().__init__()
        if self.needs_hr and hr is None:
            raise ValueError(f"connector '{cfg.name}' needs a high-resolution feature-map encoder (hr spec missing)")
        self.cfg = cfg
        self.feat = feat
        self.d_llm = d_llm
        self.hr_spec = hr

    # -- what subclasses provide -------------------------------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        """M actually emitted per image (may differ from ``cfg.num_tokens`` only where the class documents it)."""
        return int(self.cfg.num_tokens)

    @abstractmethod
    def _forward(self, x: Tensor, hr: list[Tensor] | None) -> Tensor:
        """The connector's computation; inputs and output are checked by ``forward``."""

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters a 'connector trains' stage updates. Q-Former overrides this to freeze its transformer."""
        return self.parameters()

    # -- the boundary ------------------------------------------------------------------------------------------
    def forward(self, x: Tensor, hr: list[Tensor] | None = None) -> Tensor:
        n_in = self.expected_input_tokens
        if x.dim() != 3 or x.shape[1] != n_in or x.shape[2] != self.feat.dim:
            raise ValueError(
                f"{type(self).__name__}: expected features [B, {n_in}, {self.feat.dim}], got {list(x.shape)}"
            )
        if (hr is not None) != self.needs_hr:
            raise ValueError(f"{type(self).__name__}: hr feature maps {'required' if self.needs_hr else 'not accepted'}")
        out = self._forward(x, hr)
        if out.shape != (x.shape[0], self.num_tokens, self.d_llm):
            raise RuntimeError(
                f"{type(self).__name__}: produced {list(out.shape)}, contract is [B, {self.num_tokens}, {self.d_llm}]"
            )
        return out

    @property
    def expected_input_tokens(self) -> int:
        return self.feat.num_patches

    # -- accounting --------------------------------------------------------------------------------------------
    def num_params(self, trainable_only: bool = False) -> int:
        params = self.trainable_parameters() if trainable_only else self.parameters()
        return sum(p.numel() for p in params)

    def dummy_inputs(self, batch: int = 1) -> tuple[Tensor, list[Tensor] | None]:
        p = next(self.parameters())
        x = torch.zeros(batch, self.expected_input_tokens, self.feat.dim, device=p.device, dtype=p.dtype)
        hr = None
        if self.needs_hr:
            assert self.hr_spec is not None
            hr = [
                torch.zeros(batch, c, h, w, device=p.device, dtype=p.dtype)
                for c, (h, w) in zip(self.hr_spec.channels, self.hr_spec.sizes)
            ]
        return x, hr

    @torch.no_grad()
    def flops_per_image(self) -> int:
        """Forward FLOPs for one image, counted by ``torch.utils.flop_counter`` (matmuls/convs; 1 MAC = 2 FLOPs)."""
        from torch.utils.flop_counter import FlopCounterMode

        x, hr = self.dummy_inputs(1)
        with FlopCounterMode(display=False) as counter:
            self.forward(x, hr)
        return int(counter.get_total_flops())


def build_connector(cfg: ConnectorCfg, feat: FeatureSpec, d_llm: int, hr: FeatureMapSpec | None = None) -> Connector:
    cls = CONNECTORS.get(cfg.name)
    return cls(cfg, feat, d_llm, hr)


def pooled_side(m: int, feat: FeatureSpec, who: str) -> int:
    """sqrt(m) for connectors that average-pool the patch grid to an n x n grid, which must not exceed the encoder's.

    Adaptive pooling to more cells than the grid has repeats patches (a 7x7 grid "pooled" to 12x12 copies each patch
    into two or three cells): no information is added, the LLM's sequence grows, and the run would be recorded as
    having M visual tokens of an encoder that has fewer patches. So M > N (or a side above the shorter grid side) is
    refused with the counts that work, instead of silently up-sampling.
    """
    side = square_side(m, who)
    gh, gw = feat.grid
    if side > min(gh, gw):
        valid = ", ".join(str(s * s) for s in range(1, min(gh, gw) + 1))
        raise ConfigError(
            f"{who}: visual_tokens={m} is more than the encoder's {gh}x{gw} patch grid ({gh * gw} patches) can be "
            f"pooled to; pooling up would only repeat patches. Valid: {valid} (or raise resolution)"
        )
    return side


def square_side(m: int, who: str) -> int:
    """sqrt(m) for connectors that pool to a square grid; a clear error otherwise."""
    side = math.isqrt(m)
    if side * side != m:
        lo, hi = side * side, (side + 1) ** 2
        raise ValueError(f"{who} needs a square visual_tokens (n x n grid); got {m}. Nearest valid: {lo}, {hi}")
    return side


def query_count(cfg, width_field: str) -> int:
    """M = ``cfg.num_tokens`` learnable queries of a cross-attention connector (``attn_pool``, ``qformer``), checked
    >= 1, with ``cfg.heads`` checked to divide the attention width ``cfg.<width_field>``."""
    m = int(cfg.num_tokens)
    if m < 1:
        raise ValueError(f"{cfg.name}: num_tokens must be >= 1, got {m}")
    width = getattr(cfg, width_field)
    if width % cfg.heads:
        raise ValueError(f"{cfg.name}: heads ({cfg.heads}) must divide {width_field} ({width})")
    return m
