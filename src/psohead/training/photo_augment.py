"""Photographic augmentation of an encoder's input.

An encoder trained on the generator's clean renders meets real crops that differ in ways its
latent should not depend on: another background, exposure and white balance, softness (an
upsampled small face, focus), sensor noise. :func:`augment_photos` gives a share of a batch those
differences; the latent to recover and the image loss's target stay the clean sample's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..nn import filtered_resize, gaussian_blur

# Ranges of one draw, in [0, 1] image units where they are intensities.
BACKGROUND_SHARE = 0.5  # of the augmented samples, those put on a new background
GAIN = (0.75, 1.25)  # exposure
WHITE_BALANCE = (0.9, 1.1)  # per-channel gain
GAMMA = (0.8, 1.25)
SATURATION = (0.6, 1.3)
BLUR_SIGMA = (0.0, 1.2)  # pixels at 128², scaled with the image side
BLUR_SHARE = 0.4
RESAMPLE_SCALE = (0.35, 1.0)  # down to this share of the side and back up (a small face upsampled)
RESAMPLE_SHARE = 0.4
NOISE_STD = (0.0, 0.03)


def _uniform(n: int, bounds: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def random_backgrounds(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """[n,3,size,size] in [0,1]: smooth colour fields (a 2x2 to 6x6 grid of random colours
    upsampled), as walls, sky and blurred rooms behind a portrait look at crop scale."""
    out = []
    for cells in torch.randint(2, 7, (n,), generator=gen).tolist():
        base = torch.rand(1, 3, 1, 1, generator=gen)
        field = base + 0.35 * (torch.rand(1, 3, cells, cells, generator=gen) - 0.5)
        grey = field.mean(1, keepdim=True)
        field = grey + float(torch.rand(1, generator=gen)) * (field - grey)  # from grey to full colour
        out.append(F.interpolate(field, size=(size, size), mode="bicubic", align_corners=False))
    return torch.cat(out).clamp(0, 1)


def augment_photos(image: torch.Tensor, mask: torch.Tensor | None, p: float, gen: torch.Generator) -> torch.Tensor:
    """``image`` [N,3,H,W] in [-1,1] with a share ``p`` of its samples given a photograph's
    differences (module docstring); ``mask`` [N,1,h,w] in [0,1] (any h) is the head's opacity,
    needed for new backgrounds (None: backgrounds kept). Draws come from ``gen`` (CPU), so a
    seeded run is reproducible; the other samples are returned unchanged."""
    n, _, h, w = image.shape
    if p <= 0:  # (no draws: a run without augmentation samples as before)
        return image
    chosen = torch.rand(n, generator=gen) < p
    if not bool(chosen.any()):
        return image
    idx = chosen.nonzero()[:, 0]
    k, dev = len(idx), image.device
    x = image[idx].float().add(1).div(2)

    if mask is not None:
        new_bg = torch.rand(k, generator=gen) < BACKGROUND_SHARE
        if bool(new_bg.any()):
            m = F.interpolate(mask[idx].float(), size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
            bg = random_backgrounds(k, h, gen).to(dev)
            keep = (~new_bg).to(dev)[:, None, None, None]
            x = torch.where(keep, x, x * m + bg * (1 - m))

    def per_sample(values: torch.Tensor) -> torch.Tensor:
        return values.to(dev)[:, None, None, None]

    x = x * per_sample(_uniform(k, GAIN, gen))
    x = x * torch.stack([_uniform(k, WHITE_BALANCE, gen) for _ in range(3)], 1).to(dev)[:, :, None, None]
    x = x.clamp(0, 1) ** per_sample(_uniform(k, GAMMA, gen))
    grey = x.mean(1, keepdim=True)
    x = grey + per_sample(_uniform(k, SATURATION, gen)) * (x - grey)

    blur = (torch.rand(k, generator=gen) < BLUR_SHARE).tolist()
    sigma = (_uniform(k, BLUR_SIGMA, gen) * h / 128).tolist()
    resample = (torch.rand(k, generator=gen) < RESAMPLE_SHARE).tolist()
    scale = _uniform(k, RESAMPLE_SCALE, gen).tolist()
    rows = []
    for i in range(k):
        row = x[i:i + 1]
        if blur[i] and sigma[i] > 0.05:
            row = gaussian_blur(row, sigma[i])
        if resample[i]:
            small = max(8, round(h * scale[i]))
            row = F.interpolate(filtered_resize(row, small), size=(h, w), mode="bilinear", align_corners=False)
        rows.append(row)
    x = torch.cat(rows)
    noise = torch.randn(x.shape, generator=gen).to(dev) * per_sample(_uniform(k, NOISE_STD, gen))
    x = (x + noise).clamp(0, 1).mul(2).sub(1).to(image.dtype)
    out = image.clone()
    out[idx] = x
    return out
