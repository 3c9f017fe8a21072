"""Image metrics: PSNR, SSIM (Gaussian 11x11, sigma 1.5, as Wang et al. 2004), MS-SSIM
(psohead.nn.ssim), their masked variants, and mask IoU.

Inputs: torch tensors [N,C,H,W] / [C,H,W] or numpy arrays [H,W,C] / [N,H,W,C] / [H,W]. uint8
arrays are scaled to [0,1]; float inputs are used as given with ``data_range`` (1 for [0,1],
2 for generator outputs in [-1,1]). Results are per image: a float for one image, a tensor [N]
for a batch.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from ..nn.ssim import MS_SSIM_WEIGHTS, gaussian_window, ssim_maps
from ..nn.ssim import ms_ssim as _ms_ssim

SSIM_WIN = 11
SSIM_SIGMA = 1.5


def as_nchw(x) -> tuple[torch.Tensor, bool]:
    """(float64 tensor [N,C,H,W], whether the input was a single image)."""
    if isinstance(x, np.ndarray):
        is_uint8 = x.dtype == np.uint8
        t = torch.from_numpy(np.ascontiguousarray(x)).double()
        if is_uint8:
            t = t / 255
        if t.ndim == 2:
            t = t[None, None]
        elif t.ndim == 3:
            t = t.permute(2, 0, 1)[None]
        elif t.ndim == 4:
            t = t.permute(0, 3, 1, 2)
        single = x.ndim <= 3
    elif isinstance(x, torch.Tensor):
        t = x.detach().double()
        if x.dtype == torch.uint8:
            t = t / 255
        single = t.ndim <= 3
        if t.ndim == 2:
            t = t[None, None]
        elif t.ndim == 3:
            t = t[None]
    else:
        raise InputError(f"expected an image array or tensor, got {type(x).__name__}")
    if t.ndim != 4:
        raise InputError(f"expected an image of 2-4 dimensions, got shape {tuple(t.shape)}")
    return t.cpu(), single


def _pair(a, b):
    ta, single = as_nchw(a)
    tb, _ = as_nchw(b)
    if ta.shape != tb.shape:
        raise InputError(f"images differ in shape: {tuple(ta.shape)} vs {tuple(tb.shape)}")
    return ta, tb, single


def _mask(mask, like: torch.Tensor) -> torch.Tensor:
    """Mask -> float [N,1,H,W] in [0,1] (uint8 255 = inside), broadcast over channels."""
    m, _ = as_nchw(mask)
    if m.shape[1] != 1:
        m = m.mean(1, keepdim=True)
    if m.shape[-2:] != like.shape[-2:]:
        raise InputError(f"mask size {tuple(m.shape[-2:])} differs from image size {tuple(like.shape[-2:])}")
    return m.expand(like.shape[0], 1, -1, -1)


def _out(v: torch.Tensor, single: bool):
    return float(v[0]) if single else v.float()


def mse(a, b, mask=None):
    ta, tb, single = _pair(a, b)
    err = (ta - tb) ** 2
    if mask is None:
        return _out(err.mean((1, 2, 3)), single)
    m = _mask(mask, ta)
    w = m.sum((1, 2, 3)) * ta.shape[1]
    if (w <= 0).any():
        raise InputError("mask is empty")
    return _out((err * m).sum((1, 2, 3)) / w, single)


def psnr(a, b, data_range: float = 1.0, mask=None):
    """10*log10(range^2 / MSE) over all pixels, or over the mask (weighted by mask values)."""
    m = mse(a, b, mask)
    m = torch.as_tensor(m, dtype=torch.float64)
    out = 10 * torch.log10(data_range ** 2 / m.clamp_min(1e-20))
    return float(out) if out.ndim == 0 else out.float()


def ssim_map(a, b, data_range: float = 1.0) -> torch.Tensor:
    """Per-pixel SSIM [N,C,H-10,W-10] (valid filtering, no padding, as pytorch-msssim)."""
    ta, tb, _ = _pair(a, b)
    if min(ta.shape[-2:]) < SSIM_WIN:
        raise InputError(f"SSIM needs images of at least {SSIM_WIN}x{SSIM_WIN}, got {tuple(ta.shape[-2:])}")
    return ssim_maps(ta, tb, gaussian_window(SSIM_WIN, SSIM_SIGMA, torch.float64), data_range)[0]


def ssim(a, b, data_range: float = 1.0, mask=None):
    """Mean SSIM; with a mask, the SSIM map is averaged with the mask (cropped to the valid area)
    as weights, so only windows centred on masked pixels count."""
    smap = ssim_map(a, b, data_range)
    single = as_nchw(a)[1]
    if mask is None:
        return _out(smap.mean((1, 2, 3)), single)
    ta, _ = as_nchw(a)
    half = SSIM_WIN // 2
    m = _mask(mask, ta)[..., half:-half, half:-half]
    w = m.sum((1, 2, 3)) * smap.shape[1]
    if (w <= 0).any():
        raise InputError("mask is empty inside the SSIM valid area")
    return _out((smap * m).sum((1, 2, 3)) / w, single)


def ms_ssim(a, b, data_range: float = 1.0):
    """Multi-scale SSIM (5 scales, standard weights); images > 160 px."""
    ta, tb, single = _pair(a, b)
    if min(ta.shape[-2:]) <= 160:
        raise InputError(f"MS-SSIM needs images larger than 160 px, got {tuple(ta.shape[-2:])}")
    window = gaussian_window(SSIM_WIN, SSIM_SIGMA, torch.float64)
    return _out(_ms_ssim(ta, tb, window, torch.tensor(MS_SSIM_WEIGHTS, dtype=torch.float64), data_range), single)


def mask_iou(a, b, threshold: float = 0.5):
    """Intersection over union of two masks binarised at ``threshold`` (uint8 masks: of 1 = 255).
    Two empty masks give 1."""
    ta, tb, single = _pair(a, b)
    pa, pb = ta > threshold, tb > threshold
    inter = (pa & pb).sum((1, 2, 3)).double()
    union = (pa | pb).sum((1, 2, 3)).double()
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
    return _out(iou, single)


def _pixels(x) -> np.ndarray:
    """Image -> float64 [H*W, 3] in [0,1] (as :func:`as_nchw`: uint8 scaled, floats as given)."""
    t, single = as_nchw(x)
    if not single or t.shape[1] != 3:
        raise InputError(f"expected one RGB image, got shape {tuple(t.shape)}")
    return t[0].permute(1, 2, 0).reshape(-1, 3).numpy()


def _region(mask, n: int, what: str) -> np.ndarray:
    m, _ = as_nchw(mask)
    m = m.mean(1).reshape(-1).numpy()
    if m.size != n:
        raise InputError(f"{what} has {m.size} pixels, the image {n}")
    return m


def _palette(colours: np.ndarray, k: int, seed: int, cap: int = 20_000) -> np.ndarray:
    from scipy.cluster.vq import kmeans2

    rng = np.random.default_rng(seed)
    if len(colours) > cap:
        colours = colours[rng.choice(len(colours), cap, replace=False)]
    centres, _ = kmeans2(colours, min(k, len(colours)), seed=seed, minit="++")
    return centres


def colour_leakage(render, render_mask, photo, photo_mask, clusters: int = 8, threshold: float = 0.08,
                   seed: int = 0) -> float:
    """Share of the render's head area (``render_mask`` >= 0.5) whose colour comes from the photo's
    background: nearer to the background palette (k-means of the photo's pixels with mask < 0.1)
    than to the subject palette (mask >= 0.5), and within ``threshold`` (RGB distance in [0,1]) of it.

    For a reconstruction's back view: a head that carries the backdrop (a flag, a wall) scores high,
    one painted in the subject's own hair and skin colours scores 0.
    """
    rp, pp = _pixels(render), _pixels(photo)
    head = _region(render_mask, len(rp), "render mask") >= 0.5
    pm = _region(photo_mask, len(pp), "photo mask")
    bg, fg = pp[pm < 0.1], pp[pm >= 0.5]
    if not head.any():
        raise InputError("render mask is empty")
    if len(bg) == 0 or len(fg) == 0:
        raise InputError("photo mask must have both background (< 0.1) and subject (>= 0.5) pixels")
    pix = rp[head]
    d_bg = np.linalg.norm(pix[:, None] - _palette(bg, clusters, seed)[None], axis=2).min(1)
    d_fg = np.linalg.norm(pix[:, None] - _palette(fg, 2 * clusters, seed)[None], axis=2).min(1)
    return float(((d_bg < threshold) & (d_bg < d_fg)).mean())
