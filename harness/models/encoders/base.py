"""Image encoder base class: uint8 images ``[B, H, W, 3]`` -> patch features ``[B, N, D_enc]``.

The encoder owns its preprocessing (resize to the run's ``resolution`` with antialiasing, then normalisation), so a
resolution sweep changes what the encoder sees and nothing else. ``N = (resolution / patch)^2`` for ViTs; ``spec``
documents the grid. Convolutional encoders additionally expose ``forward_maps`` (one ``[B, C_i, H_i, W_i]`` map per
stage), the input of Mini-Gemini's patch-info mining.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from omegaconf import MISSING
from torch import Tensor, nn

from harness.config.schema import ConfigError
from harness.models.connectors.base import FeatureMapSpec, FeatureSpec
from harness.registry import Registry, check_choice

ENCODERS: Registry = Registry("encoder")


@dataclass
class EncoderCfg:
    name: str = MISSING
    feature_layer: str = "last"  # last | penultimate (LLaVA-1.5 and Mini-Gemini take the penultimate layer)

    @property
    def init(self) -> str:
        """Where the weights start: ``random`` or ``pretrained:<source>``. Recorded with each run (``encoder.meta``,
        the labelled choices) so a random tower never reads as a pretrained one in a table. The tiny encoders are
        pre-trained on the world by the harness; library encoders override this."""
        return "pretrained:harness"


def check_resolution(resolution: int, multiple: int, who: str) -> None:
    """Resolutions must tile into whole patches (ViT) or whole stride-32 cells (conv)."""
    if resolution <= 0 or resolution % multiple:
        lo = max(0, resolution // multiple * multiple)
        valid = [v for v in (lo, lo + multiple) if v > 0]  # the multiples on either side (60, patch 8: [56, 64])
        # a ConfigError (a ValueError): the point fails with this one line, not a traceback
        raise ConfigError(f"{who}: resolution {resolution} is not a multiple of {multiple}. Nearest valid: {valid}")


class ImageEncoder(nn.Module, metaclass=ABCMeta):
    """``encode(images_uint8 [B, H, W, 3]) -> [B, N, D]``; ``spec`` gives D and the patch grid."""

    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)

    def __init__(self, resolution: int):
        super().__init__()
        self.resolution = int(resolution)

    @property
    @abstractmethod
    def spec(self) -> FeatureSpec:
        """Feature width and patch grid at this encoder's resolution."""

    def preprocess(self, images: Tensor) -> Tensor:
        return to_pixels(images, self.resolution, self.mean, self.std)

    def encode(self, images: Tensor) -> Tensor:
        dev = next(self.parameters()).device
        return self.forward(self.preprocess(images.to(dev)))


class FeatureMapEncoder(ImageEncoder):
    """A convolutional encoder with multi-stage output for high-resolution branches."""

    @property
    @abstractmethod
    def map_spec(self) -> FeatureMapSpec:
        """Channels and sizes of each stage's map at this encoder's resolution."""

    @abstractmethod
    def forward_maps(self, pixels: Tensor) -> list[Tensor]:
        """``[B, 3, r, r]`` -> one ``[B, C_i, H_i, W_i]`` map per stage."""

    def encode_maps(self, images: Tensor) -> list[Tensor]:
        dev = next(self.parameters()).device
        return self.forward_maps(self.preprocess(images.to(dev)))


def resize(x: Tensor, resolution: int) -> Tensor:
    """float ``[B, C, H, W]`` -> ``[B, C, r, r]``, antialiased bilinear (the identity at the same size). The world's
    pattern control is built against exactly this operator (``harness.world.render.pattern_band``)."""
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return x


def to_pixels(images: Tensor, resolution: int, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)) -> Tensor:
    """uint8 ``[B, H, W, 3]`` -> normalised float ``[B, 3, r, r]``.

    Antialiased bilinear resize: downsampling averages pixels (as a camera or a box filter would), so a lower
    resolution genuinely removes the world's small details instead of aliasing them.
    """
    x = resize(images.permute(0, 3, 1, 2).float().div_(255.0), resolution)
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def validate_feature_layer(value: str) -> None:
    check_choice("feature_layer", value, ("last", "penultimate"))
