"""Signed-distance primitives and operators on torch tensors (points [..., 3], params broadcast)."""
from __future__ import annotations

import torch


def smin(a: torch.Tensor, b: torch.Tensor, k) -> torch.Tensor:
    """Polynomial smooth minimum (union) with blend radius k (k > 0)."""
    h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def ellipsoid(p: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Approximate (bound-preserving near the surface) ellipsoid distance; radii [..., 3]."""
    k0 = (p / radii).norm(dim=-1)
    k1 = (p / (radii * radii)).norm(dim=-1).clamp_min(1e-8)
    return k0 * (k0 - 1.0) / k1


def capsule(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor, r) -> torch.Tensor:
    pa, ba = p - a, b - a
    h = ((pa * ba).sum(-1) / (ba * ba).sum(-1)).clamp(0.0, 1.0)
    return (pa - ba * h.unsqueeze(-1)).norm(dim=-1) - r


def sphere(p: torch.Tensor, c: torch.Tensor, r) -> torch.Tensor:
    return (p - c).norm(dim=-1) - r
