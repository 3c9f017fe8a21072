"""Tri-grid feature sampling and the OSG feature decoder (spec 1.5-1.7).

A tri-grid is three axis-aligned feature volumes of shape [C, D, H, W] (PanoHead: C = 32, D = 3,
H = W = 256); the backbone emits them as one [N, 3*C*D, H, W] image whose channel
``p*C*D + c*D + d`` is feature c of depth slice d on plane p.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ..nn import FullyConnectedLayer

# Axis matrices A_p of the official renderer (`plane_axes`); points are projected as q @ inv(A_p).
PLANE_AXES = (
    ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    ((1, 0, 0), (0, 0, 1), (0, 1, 0)),
    ((0, 1, 0), (0, 0, 1), (1, 0, 0)),
)
# q @ inv(A_p) only permutes coordinates; this is that permutation, as (W, H, D) sampling axes.
PLANE_COORD_ORDER = ((0, 1, 2), (0, 2, 1), (1, 2, 0))


def plane_coordinates(q: torch.Tensor) -> torch.Tensor:
    """[..., 3] points -> [..., 3(planes), 3] in each plane's (W, H, D) axis order. Built by slicing,
    not by indexing with an index tensor: that would be a host-to-device copy (a synchronisation,
    and not allowed inside a CUDA graph) on every call."""
    return torch.stack([torch.stack([q[..., i] for i in axes], -1) for axes in PLANE_COORD_ORDER], -2)


def sample_trigrid(planes: torch.Tensor, coordinates: torch.Tensor, box_warp: float,
                   triplane_depth: int) -> torch.Tensor:
    """Trilinearly sample every plane's volume at world points.

    planes [N, 3, C*D, H, W]; coordinates [N, M, 3] in world units. Returns per-plane features
    [N, 3, M, C] (zero outside the box [-box_warp/2, box_warp/2]^3); the decoder averages planes.
    """
    n, n_planes, cd, h, w = planes.shape
    if n_planes != 3 or cd % triplane_depth:
        raise ValueError(f"planes of shape {tuple(planes.shape)} do not hold 3 planes of depth {triplane_depth}")
    c = cd // triplane_depth
    m = coordinates.shape[1]
    volumes = planes.reshape(n * 3, c, triplane_depth, h, w)
    q = (2 / box_warp) * coordinates
    grid = plane_coordinates(q).permute(0, 2, 1, 3)  # [N, 3(planes), M, 3(W,H,D)]
    grid = grid.reshape(n * 3, 1, 1, m, 3).to(volumes.dtype)
    out = F.grid_sample(volumes, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.permute(0, 4, 3, 2, 1).reshape(n, 3, m, c)


def sample_trigrid_mean(planes: torch.Tensor, coordinates: torch.Tensor, box_warp: float,
                        triplane_depth: int) -> torch.Tensor:
    """Mean over the three planes of :func:`sample_trigrid`: features [N, M, C] (what the decoder uses).

    ``planes`` may have batch 1 and then serves all N coordinate sets (one head seen by N cameras).
    On CPU this gathers texel rows of a channels-last copy (about 3x faster forward + backward
    than ``grid_sample`` on 5-D input there, which reads 32 strided channels per corner); the
    result is the same trilinear interpolation with zero padding up to float rounding.
    """
    n = coordinates.shape[0]
    if planes.shape[0] not in (1, n):
        raise ValueError(f"planes batch {planes.shape[0]} does not match coordinates batch {n}")
    if (planes.device.type == "cpu" and planes.dtype in (torch.float32, torch.float64)
            and not coordinates.requires_grad and coordinates.shape[1] > 0):
        return _gather_trigrid_mean(planes, coordinates, box_warp, triplane_depth)
    return sample_trigrid(planes.expand(n, -1, -1, -1, -1), coordinates, box_warp, triplane_depth).mean(1)


def _gather_trigrid_mean(planes: torch.Tensor, coordinates: torch.Tensor, box_warp: float,
                         depth: int) -> torch.Tensor:
    nb, n_planes, cd, h, w = planes.shape
    if n_planes != 3 or cd % depth:
        raise ValueError(f"planes of shape {tuple(planes.shape)} do not hold 3 planes of depth {depth}")
    c = cd // depth
    n, m, _ = coordinates.shape
    # Channels-last table, row pad + ((b*3 + p)*depth + z)*h*w + y*w + x = texel (x, y, z) of plane p of
    # item b, with zero rows around it so that every corner index of a clamped position is in range.
    pad = h * w + w + 1
    body = planes.reshape(nb * 3, c, depth * h * w).transpose(1, 2).reshape(-1, c)
    table = F.pad(body, (0, 0, pad, 2 * pad))
    q = (2 / box_warp) * coordinates.to(planes.dtype)
    size = torch.tensor([w, h, depth], dtype=q.dtype, device=q.device)
    pos = ((plane_coordinates(q) + 1) * size - 1) / 2  # [N, M, plane, (W, H, D)] texel units (align_corners=False)
    pos = torch.nan_to_num(pos, nan=-1.0).clamp(min=-1.0).minimum(size)  # NaN samples 0, as grid_sample
    low = pos.floor()
    frac = pos - low
    # Corner weights; corners outside the volume get weight 0 (grid_sample's zero padding).
    w_low = (1 - frac) * ((low >= 0) & (low < size))
    w_high = frac * ((low >= -1) & (low < size - 1))
    low = low.long()
    block = torch.arange(3, device=q.device) + (3 * torch.arange(n, device=q.device)[:, None, None] if nb > 1 else 0)
    base = pad + ((block * depth + low[..., 2]) * h + low[..., 1]) * w + low[..., 0]  # [N, M, 3]
    wx, wy, wz = (torch.stack([w_low[..., i], w_high[..., i]], -1) for i in range(3))
    weights = (wz[..., :, None, None] * wy[..., None, :, None] * wx[..., None, None, :]).reshape(n * m, 3, 8)
    corners = torch.tensor([dz * h * w + dy * w + dx for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)],
                           device=q.device)
    summed = _CornerGather.apply(table, base.reshape(n * m, 3), weights, corners)
    return (summed / 3).reshape(n, m, c)


class _CornerGather(torch.autograd.Function):
    """out[i] = sum_{k,j} weights[i,k,j] * table[base[i,k] + corners[j]]; gradient for ``table`` only.

    The backward is the transpose (splatting) done as gathers: sort the base rows once, then for
    each corner offset sum the weighted output gradients per base row and add them shifted by it.
    """

    @staticmethod
    def forward(ctx, table, base, weights, corners):
        rows = (base.unsqueeze(-1) + corners).reshape(base.shape[0], -1)
        out = F.embedding_bag(rows, table, per_sample_weights=weights.reshape(base.shape[0], -1), mode="sum")
        ctx.save_for_backward(base, weights, corners)
        ctx.table_rows = table.shape[0]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        base, weights, corners = ctx.saved_tensors
        rows = ctx.table_rows
        keys, perm = torch.sort(base.reshape(-1), stable=True)  # stable: a fixed summation order
        point = perm // base.shape[1]
        w = weights.reshape(-1, weights.shape[-1]).index_select(0, perm)
        counts = torch.bincount(keys, minlength=rows)
        starts = counts.cumsum(0) - counts
        grad = grad.contiguous()
        out = grad.new_zeros(rows, grad.shape[1])
        for j, offset in enumerate(corners.tolist()):
            part = F.embedding_bag(point, grad, starts, per_sample_weights=w[:, j].contiguous(), mode="sum")
            out[offset:] += part[:rows - offset]
        return out, None, None, None


class OSGDecoder(torch.nn.Module):
    """Small MLP: mean tri-grid feature (32) → raw density σ (1) + feature "rgb" (32).

    Child names `net.0`, `net.2` and the Softplus in between follow the official module.
    ``activation``: 'none' (PanoHead), 'sigmoid' (EG3D, stretched to [-0.001, 1.001]) or 'lrelu'.
    The ray directions are accepted for interface compatibility and ignored, as officially.
    """

    ACTIVATIONS = ("none", "sigmoid", "lrelu")

    def __init__(self, n_features: int = 32, output_dim: int = 32, hidden_dim: int = 64,
                 lr_multiplier: float = 1, activation: str = "none"):
        super().__init__()
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"decoder_activation must be one of {self.ACTIVATIONS}, got {activation!r}")
        self.hidden_dim = hidden_dim
        self.activation = activation
        self.net = torch.nn.Sequential(
            FullyConnectedLayer(n_features, hidden_dim, lr_multiplier=lr_multiplier),
            torch.nn.Softplus(),
            FullyConnectedLayer(hidden_dim, 1 + output_dim, lr_multiplier=lr_multiplier),
        )

    def forward(self, sampled_features: torch.Tensor, ray_directions: torch.Tensor | None = None) -> dict:
        return self.decode(sampled_features.mean(1))

    def decode(self, x: torch.Tensor) -> dict:
        """Decoder outputs from plane-averaged features [N, M, C] (see sample_trigrid_mean)."""
        n, m, c = x.shape
        x = self.net(x.reshape(n * m, c)).reshape(n, m, -1)
        sigma, rgb = x[..., :1], x[..., 1:]
        if self.activation == "sigmoid":
            rgb = torch.sigmoid(rgb) * (1 + 2 * 0.001) - 0.001
        elif self.activation == "lrelu":
            rgb = F.leaky_relu(rgb, 0.2) * math.sqrt(2)
        return {"rgb": rgb, "sigma": sigma}
