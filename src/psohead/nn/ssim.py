"""SSIM and MS-SSIM (Wang et al. 2003/2004) as differentiable tensor ops on any device.

Gaussian window (default 11 taps, sigma 1.5), valid filtering (no padding), K = (0.01, 0.03);
MS-SSIM over 5 scales with the standard weights, 2x2 average pooling between scales (padding
the odd sides), negative contrast terms clamped to 0 - the conventions of pytorch-msssim, which
the tests compare against. The window and weights are made once and passed in, so a loss can
keep them on its device: no host-to-device copy (and no synchronisation) per call.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
K1, K2 = 0.01, 0.03


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian [size]."""
    x = torch.arange(size, dtype=dtype, device=device) - size // 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def blur_valid(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable per-channel filtering of [N,C,H,W] with a 1-D window, valid area only."""
    c, k = x.shape[1], window.numel()
    w = window.to(x.dtype)
    x = F.conv2d(x, w.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(x, w.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def ssim_maps(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, data_range: float = 1.0
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(SSIM map, contrast-structure map), both [N,C,H-k+1,W-k+1]. The five local moments are
    filtered in one call (x, y, x², y², xy stacked on channels)."""
    c = x.shape[1]
    moments = blur_valid(torch.cat([x, y, x * x, y * y, x * y], 1), window)
    mu_x, mu_y, xx, yy, xy = moments.split(c, 1)
    var_x, var_y, cov = xx - mu_x ** 2, yy - mu_y ** 2, xy - mu_x * mu_y
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    return (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1) * cs, cs


def ssim(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM per image [N]."""
    return ssim_maps(x, y, window, data_range)[0].flatten(1).mean(1)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, weights: torch.Tensor,
            data_range: float = 1.0) -> torch.Tensor:
    """MS-SSIM per image [N] over ``len(weights)`` scales; needs min side > (k-1) * 2^(scales-1)."""
    levels = weights.numel()
    need = (window.numel() - 1) * 2 ** (levels - 1)
    if min(x.shape[-2:]) <= need:
        raise ValueError(f"MS-SSIM with a {window.numel()}-tap window needs images larger than {need} px, "
                         f"got {tuple(x.shape[-2:])}")
    factors = []
    for level in range(levels):
        smap, cs = ssim_maps(x, y, window, data_range)
        if level < levels - 1:
            factors.append(cs.flatten(2).mean(-1).relu())
            pad = [s % 2 for s in x.shape[-2:]]
            x, y = (F.avg_pool2d(t, kernel_size=2, padding=pad) for t in (x, y))
    factors.append(smap.flatten(2).mean(-1).relu())
    per_channel = torch.prod(torch.stack(factors) ** weights.to(x.dtype).view(-1, 1, 1), dim=0)
    return per_channel.mean(1)
