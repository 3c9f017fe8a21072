"""Geometry metrics: depth-map error and chamfer distance between meshes or point sets.

``depth_error(pred, target, mask=None)`` -> mean absolute depth difference (world units) over the
mask; ``chamfer_distance(a, b, samples=100_000)`` -> symmetric mean nearest-neighbour distance
(mean of both directions) between two point sets [N,3] or trimesh meshes (sampled uniformly on
the surface with a fixed seed).

Head plausibility with no ground truth: ``cranial_ratio`` (breadth/length of the widest slab above
the brows), ``mirror_chamfer`` (left-right symmetry) and ``head_proportions`` (head size over the
face's landmark distances).
"""
from __future__ import annotations

from dataclasses import dataclass

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


# --- head-shape plausibility without ground truth (world axes: x left-right, y up, z to the face) ---

@dataclass
class CranialMeasure:
    """Cranium above the brows, measured on horizontal slabs of the surface."""

    ratio: float  # breadth / length of the widest slab (cephalic index / 100 for a real head)
    breadth: float  # left-right extent of the widest slab (world units)
    length: float  # front-back extent of that same slab
    slab_y: float  # height of the widest slab's centre


def cranial_ratio(surface, brow_y: float, slab: float = 0.01, samples: int = 200_000, seed: int = 0,
                  min_points: int = 50) -> CranialMeasure:
    """Cranial breadth/length ratio above the brows: the widest horizontal slab (thickness ``slab``,
    from ``brow_y`` up) of the surface, its x extent over its z extent.

    Anthropometry measures head breadth (eu-eu) and length (g-op) above the brow ridge, where only
    the cranium (and hair) is cut; the face, ears, neck and shoulders lie below. ``surface``: mesh or
    points [N,3] in world units; ``brow_y``: the brows' height (e.g. the mean of landmarks 17-26).
    """
    pts = _points(surface, samples, seed)
    y = pts[:, 1]
    if not (y > brow_y).any():
        raise InputError(f"no surface above brow height {brow_y:.3f}")
    best = None
    for lo in np.arange(brow_y, y.max(), slab):
        cut = pts[(y >= lo) & (y < lo + slab)]
        if len(cut) < min_points:
            continue
        breadth = float(np.ptp(cut[:, 0]))
        if best is None or breadth > best.breadth:
            best = CranialMeasure(ratio=breadth / max(float(np.ptp(cut[:, 2])), 1e-12), breadth=breadth,
                                  length=float(np.ptp(cut[:, 2])), slab_y=float(lo + slab / 2))
    if best is None:
        raise InputError(f"fewer than {min_points} surface points in every slab above brow height {brow_y:.3f}")
    return best


def mirror_chamfer(surface, samples: int = 100_000, seed: int = 0) -> float:
    """Left-right asymmetry: chamfer distance between the surface and its mirror image in the x = 0
    plane (the head's mid-sagittal plane in PanoHead's world), world units; 0 for a symmetric head."""
    pts = _points(surface, samples, seed)
    return chamfer_distance(pts, pts * np.array([-1.0, 1.0, 1.0]))


# dlib 68-point indices of the face landmarks the proportions use
BROWS_68 = np.arange(17, 27)
EYE_OUTER_68 = (36, 45)  # exocanthia (ex): biocular width ex-ex
NASION_68, MENTON_68 = 27, 8  # top of the nose bridge, lowest point of the chin: face height n-gn


@dataclass
class HeadProportions:
    """Head size in units of the face's own landmarks (scale-free, comparable with anthropometry)."""

    breadth_per_biocular: float  # cranial breadth / ex-ex distance
    length_per_face_height: float  # cranial length / n-gn distance
    cranium: CranialMeasure


def head_proportions(surface, landmarks3d, **kwargs) -> HeadProportions:
    """Cranial breadth and length (:func:`cranial_ratio`, brows from the landmarks) over the face's
    biocular width and height, from 68 landmarks [68,3] in the surface's world frame."""
    lm = _np(landmarks3d)
    if lm.shape != (68, 3):
        raise InputError(f"landmarks must be [68,3], got {lm.shape}")
    cran = cranial_ratio(surface, float(lm[BROWS_68, 1].mean()), **kwargs)
    biocular = float(np.linalg.norm(lm[EYE_OUTER_68[0]] - lm[EYE_OUTER_68[1]]))
    face_h = float(np.linalg.norm(lm[NASION_68] - lm[MENTON_68]))
    return HeadProportions(cran.breadth / max(biocular, 1e-12), cran.length / max(face_h, 1e-12), cran)
