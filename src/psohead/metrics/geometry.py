"""Geometry metrics: depth-map error and chamfer distance between meshes or point sets.

``depth_error(pred, target, mask=None)`` -> mean absolute depth difference (world units) over the
mask; ``chamfer_distance(a, b, samples=100_000)`` -> symmetric mean nearest-neighbour distance
(mean of both directions) between two point sets [N,3] or trimesh meshes (sampled uniformly on
the surface with a fixed seed).
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def depth_error(pred, target, mask=None, scale_invariant: bool = False) -> float:
    """Mean |pred - target| over ``mask`` (nonzero = counted; default every pixel).

    ``scale_invariant`` first scales ``pred`` by the least-squares factor onto ``target`` (for depth
    from a different camera distance); both maps are squeezed to [H,W].
    """
    p, t = _np(pred).squeeze(), _np(target).squeeze()
    if p.shape != t.shape or p.ndim != 2:
        raise InputError(f"depth maps must be two [H,W] maps of one size, got {p.shape} and {t.shape}")
    m = np.ones(p.shape, bool) if mask is None else _np(mask).squeeze() > 0
    if m.shape != p.shape:
        raise InputError(f"mask size {m.shape} differs from depth size {p.shape}")
    if not m.any():
        raise InputError("depth mask is empty")
    p, t = p[m], t[m]
    if scale_invariant:
        p = p * (p @ t) / max(p @ p, 1e-20)
    return float(np.abs(p - t).mean())


def _points(x, samples: int, seed: int) -> np.ndarray:
    if hasattr(x, "faces") and hasattr(x, "vertices"):
        import trimesh

        if len(x.faces) == 0:
            raise InputError("mesh has no faces")
        pts, _ = trimesh.sample.sample_surface(x, samples, seed=seed)
        return np.asarray(pts, np.float64)
    pts = _np(x)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise InputError(f"points must be a non-empty [N,3] array, got shape {pts.shape}")
    return pts


def chamfer_distance(a, b, samples: int = 100_000, seed: int = 0) -> float:
    """Symmetric chamfer distance: (mean_a min_b |a-b| + mean_b min_a |b-a|) / 2, in world units."""
    from scipy.spatial import cKDTree

    pa, pb = _points(a, samples, seed), _points(b, samples, seed + 1)
    da = cKDTree(pb).query(pa)[0]
    db = cKDTree(pa).query(pb)[0]
    return float((da.mean() + db.mean()) / 2)
