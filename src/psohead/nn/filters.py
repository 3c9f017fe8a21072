"""Image-level filters used by the discriminator, renderer and training loss."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .upfirdn2d import filter2d


def filtered_resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with antialiasing (the official 'antialiased' filtered resizing)."""
    if isinstance(size, int):
        size = (size, size)
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def gaussian_kernel(sigma: float, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """Normalised 1-D taps 2^-(k/σ)², k = -⌊3σ⌋..⌊3σ⌋ (None when the kernel would be a no-op)."""
    half = math.floor(sigma * 3)
    if half <= 0:
        return None
    f = torch.arange(-half, half + 1, dtype=torch.float32, device=device).div(sigma).square().neg().exp2()
    return f / f.sum()


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable blur used for the discriminator blur fade-in; identity for σ < 1/3."""
    f = gaussian_kernel(sigma, img.device)
    if f is None:
        return img
    return filter2d(img, f)
