"""FIR-filtered up/down-sampling (upsample, pad, FIR filter, downsample) in plain PyTorch.

Conventions follow the official op (spec 5.2): zero insertion *after* each sample, padding given as
[x0, x1, y0, y1] (negative = crop), true convolution unless ``flip_filter``, gain applied as
gain**(ndim(f)/2) per filter so a separable 1-D filter gets the full gain over both axes.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

Pair = int | Sequence[int]


def _pair(v: Pair) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    vx, vy = v
    return int(vx), int(vy)


def parse_padding(padding: Pair) -> tuple[int, int, int, int]:
    """int -> all four; (px, py) -> (px, px, py, py); (x0, x1, y0, y1) as is."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) == 4:
        return tuple(padding)  # type: ignore[return-value]
    raise ValueError(f"padding must have 1, 2 or 4 entries, got {padding}")


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(width, height) of a filter; a 1-D filter is applied along both axes."""
    if f is None:
        return 1, 1
    if f.ndim not in (1, 2):
        raise ValueError(f"filter must be 1-D or 2-D, got shape {tuple(f.shape)}")
    return int(f.shape[-1]), int(f.shape[0])


def setup_filter(f, device: torch.device | str | None = None, normalize: bool = True,
                 flip_filter: bool = False, gain: float = 1, separable: bool | None = None) -> torch.Tensor:
    """Turn a list of taps into the filter tensor upfirdn2d expects.

    Short 1-D filters (< 8 taps) become their outer product (2-D); long ones stay separable.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError(f"cannot use filter of shape {tuple(f.shape)} as separable={separable}")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    # device None keeps the default device (so modules can be built on the meta device).
    return f if device is None else f.to(device=device)


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: Pair = 1, down: Pair = 1, padding: Pair = 0,
              flip_filter: bool = False, gain: float = 1) -> torch.Tensor:
    """Upsample (zero insertion), pad, FIR-filter and downsample every channel of x [N,C,H,W]."""
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects x of shape [N,C,H,W], got {tuple(x.shape)}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    upx, upy = _pair(up)
    downx, downy = _pair(down)
    px0, px1, py0, py1 = parse_padding(padding)
    n, c, h, w = x.shape
    upsampling, downsampling = upx > 1 or upy > 1, downx > 1 or downy > 1
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    # on CUDA the zero-insert form is the faster one: its depthwise kernels beat the strided
    # transposed one there (BENCHMARKS.md, "Generator throughput")
    if f.ndim == 2 and upsampling != downsampling and x.device.type == "cpu":
        return _polyphase(x, f, (upx, upy), (downx, downy), (px0, px1, py0, py1), flip_filter)

    if upsampling:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)

    # F.pad crops on negative values, which is exactly the official pad-or-crop rule.
    x = F.pad(x, [px0, px1, py0, py1])

    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].expand(c, 1, *f.shape), groups=c)
    else:
        x = F.conv2d(x, f.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        x = F.conv2d(x, f.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)

    if downsampling:
        x = x[:, :, ::downy, ::downx]
    return x


def _polyphase(x: torch.Tensor, f: torch.Tensor, up: tuple[int, int], down: tuple[int, int],
               padding: tuple[int, int, int, int], flip_filter: bool) -> torch.Tensor:
    """:func:`upfirdn2d` with a 2-D filter (gain applied) that only up- or only downsamples, without the zeros:
    upsampling is a strided transposed convolution (the inserted zeros never multiplied; ``up``²
    times fewer products), downsampling a strided convolution (only the kept outputs computed).
    The same sums as the zero-insert / subsample form, up to float rounding."""
    (upx, upy), (downx, downy) = up, down
    px0, px1, py0, py1 = padding
    c = x.shape[1]
    kh, kw = f.shape
    if downx > 1 or downy > 1:
        taps = f if flip_filter else f.flip([0, 1])  # conv2d correlates: a true convolution flips the taps
        x = F.pad(x, [px0, px1, py0, py1])
        return F.conv2d(x, taps[None, None].expand(c, 1, kh, kw), stride=(downy, downx), groups=c)
    # the transposed convolution scatters each sample through the unflipped taps, a true convolution
    taps = f.flip([0, 1]) if flip_filter else f
    x = F.conv_transpose2d(x, taps[None, None].expand(c, 1, kh, kw), stride=(upy, upx), groups=c)
    # its output starts kh-1 (kw-1) rows before the zero-inserted, padded input's first output
    return F.pad(x, [px0 - kw + 1, upx + px1 - kw, py0 - kh + 1, upy + py1 - kh])


def filter2d(x: torch.Tensor, f: torch.Tensor, padding: Pair = 0, flip_filter: bool = False,
             gain: float = 1) -> torch.Tensor:
    """Same-size FIR filtering."""
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain)


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: Pair = 2, padding: Pair = 0,
               flip_filter: bool = False, gain: float = 1) -> torch.Tensor:
    """Upsample by ``up`` with FIR interpolation (gain up_x*up_y keeps the mean)."""
    upx, upy = _pair(up)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    p = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2,
         py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: Pair = 2, padding: Pair = 0,
                 flip_filter: bool = False, gain: float = 1) -> torch.Tensor:
    """Downsample by ``down`` after FIR anti-alias filtering."""
    downx, downy = _pair(down)
    px0, px1, py0, py1 = parse_padding(padding)
    fw, fh = filter_size(f)
    p = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2,
         py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain)
