"""Tri-grid feature sampling and the OSG feature decoder (spec 1.5-1.7).

A tri-grid is three axis-aligned feature volumes of shape [C, D, H, W] (PanoHead: C = 32, D = 3,
H = W = 256); the backbone emits them as one [N, 3*C*D, H, W] image whose channel
``p*C*D + c*D + d`` is feature c of depth slice d on plane p.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..nn import FullyConnectedLayer

# Axis matrices A_p of the official renderer (`plane_axes`); points are projected as q @ inv(A_p).
PLANE_AXES = (
    ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    ((1, 0, 0), (0, 0, 1), (0, 1, 0)),
    ((0, 1, 0), (0, 0, 1), (1, 0, 0)),
)
# q @ inv(A_p) only permutes coordinates; this is that permutation, as (W, H, D) sampling axes.
PLANE_COORD_ORDER = ((0, 1, 2), (0, 2, 1), (1, 2, 0))


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
    order = torch.tensor(PLANE_COORD_ORDER, device=q.device)
    grid = q[:, :, order].permute(0, 2, 1, 3)  # [N, 3(planes), M, 3(W,H,D)]
    grid = grid.reshape(n * 3, 1, 1, m, 3).to(volumes.dtype)
    out = F.grid_sample(volumes, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.permute(0, 4, 3, 2, 1).reshape(n, 3, m, c)


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
        x = sampled_features.mean(1)
        n, m, c = x.shape
        x = self.net(x.reshape(n * m, c)).reshape(n, m, -1)
        sigma, rgb = x[..., :1], x[..., 1:]
        if self.activation == "sigmoid":
            rgb = torch.sigmoid(rgb) * (1 + 2 * 0.001) - 0.001
        elif self.activation == "lrelu":
            rgb = F.leaky_relu(rgb, 0.2) * math.sqrt(2)
        return {"rgb": rgb, "sigma": sigma}
