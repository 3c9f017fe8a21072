"""Super-resolution heads: raw RGB + feature image (neural rendering res) → final image.

Every SR layer uses the generator's last w (``ws[:, -1]``). Inputs are resized to the head's input
resolution with antialiased bilinear filtering when they do not already have it. conv_clamp is 256
exactly when the blocks run in fp16 (``sr_num_fp16_res > 0``), as in the official heads.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import setup_filter
from .stylegan2 import SynthesisBlock, SynthesisBlockNoUp


class _SuperresolutionBase(nn.Module):
    """Two skip-architecture synthesis blocks fed with the last w three times each."""

    input_resolution: int
    output_resolution: int
    channels_0: int
    channels_1: int
    first_block_upsamples: bool = True
    has_filter_buffer: bool = True

    def __init__(self, channels: int, img_resolution: int, sr_num_fp16_res: int, sr_antialias: bool,
                 num_fp16_res: int = 4, conv_clamp: float | None = None, channel_base: int | None = None,
                 channel_max: int | None = None, **block_kwargs):
        super().__init__()
        # num_fp16_res / conv_clamp / channel_base / channel_max belong to the generator config and
        # are ignored here (the official heads hard-code their widths).
        del num_fp16_res, conv_clamp, channel_base, channel_max
        if img_resolution != self.output_resolution:
            raise ValueError(f"{type(self).__name__} produces {self.output_resolution}² images, "
                             f"but img_resolution={img_resolution}")
        use_fp16 = sr_num_fp16_res > 0
        clamp = 256 if use_fp16 else None
        self.channels = channels
        self.img_resolution = img_resolution
        self.sr_antialias = sr_antialias
        first = SynthesisBlock if self.first_block_upsamples else SynthesisBlockNoUp
        res0 = self.input_resolution * (2 if self.first_block_upsamples else 1)
        self.block0 = first(channels, self.channels_0, w_dim=512, resolution=res0, img_channels=3,
                            is_last=False, use_fp16=use_fp16, conv_clamp=clamp, **block_kwargs)
        self.block1 = SynthesisBlock(self.channels_0, self.channels_1, w_dim=512, resolution=res0 * 2,
                                     img_channels=3, is_last=True, use_fp16=use_fp16, conv_clamp=clamp,
                                     **block_kwargs)
        if self.has_filter_buffer:
            self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]))

    def forward(self, rgb: torch.Tensor, x: torch.Tensor, ws: torch.Tensor, **block_kwargs) -> torch.Tensor:
        ws = ws[:, -1:, :].repeat(1, 3, 1)
        if x.shape[-1] != self.input_resolution:
            size = (self.input_resolution, self.input_resolution)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=self.sr_antialias)
            rgb = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False,
                                antialias=self.sr_antialias)
        x, rgb = self.block0(x, rgb, ws, **block_kwargs)
        x, rgb = self.block1(x, rgb, ws, **block_kwargs)
        return rgb


class SuperresolutionHybrid8XDC(_SuperresolutionBase):
    """128 → 512 with 256/128 channels (the official PanoHead head)."""

    input_resolution, output_resolution, channels_0, channels_1 = 128, 512, 256, 128
    has_filter_buffer = False


class SuperresolutionHybrid8X(_SuperresolutionBase):
    """128 → 512 with 128/64 channels."""

    input_resolution, output_resolution, channels_0, channels_1 = 128, 512, 128, 64


class SuperresolutionHybrid4X(_SuperresolutionBase):
    """128 → 256: a block at 128 without upsampling, then one 2x block."""

    input_resolution, output_resolution, channels_0, channels_1 = 128, 256, 128, 64
    first_block_upsamples = False


class SuperresolutionHybrid2X(_SuperresolutionBase):
    """64 → 128: a block at 64 without upsampling, then one 2x block."""

    input_resolution, output_resolution, channels_0, channels_1 = 64, 128, 128, 64
    first_block_upsamples = False


SUPERRES_CLASSES: dict[str, type[_SuperresolutionBase]] = {
    f"training.superresolution.{cls.__name__}": cls
    for cls in (SuperresolutionHybrid8XDC, SuperresolutionHybrid8X, SuperresolutionHybrid4X,
                SuperresolutionHybrid2X)
}


def superres_class(name: str) -> type[_SuperresolutionBase]:
    """Look up an SR head by the official ``superresolution_module`` string (or bare class name)."""
    if name in SUPERRES_CLASSES:
        return SUPERRES_CLASSES[name]
    qualified = f"training.superresolution.{name}"
    if qualified in SUPERRES_CLASSES:
        return SUPERRES_CLASSES[qualified]
    raise ValueError(f"unknown superresolution_module {name!r}; expected one of {sorted(SUPERRES_CLASSES)}")
