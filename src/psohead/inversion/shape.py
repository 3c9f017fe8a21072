"""Geometric pseudo-label: an adult head of average proportions fitted to the photo, whose
silhouettes at unseen cameras bound the generator's opacity there.

A photo shows the face, not how far the skull reaches back, and a generator trained on long
skulls fills that in with a long skull. The label is SynthHeads-360's own head (its SDF,
:mod:`psohead.synth.head`) bald and with adult mean proportions (head breadth and length of
:mod:`psohead.synth.params`, cephalic index ~0.79), scaled and moved so that its 68 face
landmarks project onto the crop's detected landmarks through the front camera. Its silhouettes
at the sides and the back become two bounds on the render's accumulated opacity (``image_mask``):
at most the silhouette grown by a margin for hair, at least the silhouette shrunk by a smaller
one. The margin is at least a fixed one and grows with the hair (or hat) the photo shows: how far
the photo's foreground mask reaches above and beside the bald head's front silhouette sets the
room left above it and beside and behind it (hair as thick at the back as at the sides). Only rays
that pass above the chin are bounded (the neck, shoulders and long hair below are anyone's). The
loss is the squared amount by which the opacity leaves the bounds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..camera import apply_offset, split_label, yaw_rotated
from ..io.images import mask_tensor
from ..synth import head as H
from ..synth.params import (CM_WORLD, HEAD_BREADTH_CM, HEAD_LENGTH_CM, NECK_BREADTH_CM, SCENE_KEYS, cranium_from_cm,
                            fixed_scene, sample_head, stack)
from ..synth.render import RenderConfig, camera_rays, render
from .targets import TargetView

SHAPE_YAWS = (90.0, -90.0, 180.0)  # cameras of the label: the photo's camera turned by these (degrees)
SHAPE_CYCLE = "shape"  # TargetView.cycle: the shape views take turns, one per step
INNER_LANDMARKS = slice(17, 68)  # brows, nose, eyes, mouth: the jaw line is a silhouette, not a point
EYES = slice(36, 48)
MENTON = 8
MAX_HAIR_CM = 12.0  # more room than this for hair or a hat would leave the outline unbounded
HAIR_RES = 128  # pixels of the front silhouette and mask compared for the hair's room (about 1 cm each)
FIT_STEPS = 60
# Bounds are drawn on a grid of at least this many pixels a side, then averaged down to a coarser
# render's: grown by whole pixels of a coarse grid (and its softer silhouette edges), the room
# left for hair came out larger, and the label weaker (one photo's skull 0.72 -> 0.65 at 32²).
BOUNDS_RES = 64


def _mean(by_sex: dict) -> float:
    return float(np.mean([mean for mean, _ in by_sex.values()]))


def adult_head() -> dict:
    """A SynthHeads-360 head record: bald, no hair parts, every proportion at its adult mean
    (breadth and length averaged over men and women)."""
    record = sample_head(0)  # colours and the few texture fields the shape does not use
    face_sz = 1.0
    record.update(scale=1.0, cran_ry=0.2, face_sx=0.99, face_sy=0.96, face_sz=face_sz, nose=1.0, lips_full=0.5,
                  jaw_w=1.0, chin=1.0, ear=1.0, neck_r=_mean(NECK_BREADTH_CM) * CM_WORLD / 2, brow_ridge=0.5,
                  cheek=0.5, gaze_x=0.0, gaze_y=0.0, eye_size=1.0, cap_on=0.0, cap_thick=0.0, curtain_on=0.0,
                  bun_on=0.0, tail_on=0.0, curl_amp=0.0,
                  **cranium_from_cm(_mean(HEAD_BREADTH_CM), _mean(HEAD_LENGTH_CM), face_sz))
    return record


@dataclass
class FittedHead:
    """The adult head at ``record["scale"]``, translated by ``offset`` [3] (world units)."""

    record: dict
    offset: torch.Tensor
    rms_px: float | None  # landmark reprojection error of the fit in crop pixels (None: not fitted)

    def landmarks(self) -> torch.Tensor:
        """Its 68 face landmarks in the world [68,3]."""
        return H.face_landmarks(self.record).float() + self.offset

    def silhouettes(self, labels: torch.Tensor, res: int) -> torch.Tensor:
        """Soft silhouettes [V,1,res,res] seen by the cameras ``labels`` [V,25]."""
        n = labels.shape[0]
        heads = stack([self.record]).expand(n, -1)
        scenes = stack([fixed_scene()], SCENE_KEYS).expand(n, -1)
        # the head moved by +offset seen from a camera is the head seen from the camera moved by -offset
        cams = apply_offset(labels.float().cpu(), -self.offset.expand(n, 3))
        return render(cams, heads, scenes, RenderConfig(resolution=res, ao=False)).mask.unsqueeze(1)


def project(points: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """World points [M,3] -> image coordinates in [0,1] [M,2] of the camera ``label`` [1,25]."""
    cam2world, k = split_label(label.reshape(1, -1).to(points.dtype))
    cam = (points - cam2world[0, :3, 3]) @ cam2world[0, :3, :3]
    uv = cam[:, :2] / cam[:, 2:3]
    return uv * k[0, [0, 1], [0, 1]] + k[0, :2, 2]


def fit_head(landmarks_px: np.ndarray | None, size: int, label: torch.Tensor) -> FittedHead:
    """The adult head scaled (about SynthHeads' head centre) and moved so that its inner face
    landmarks project onto ``landmarks_px`` ([68,2] pixels of a ``size``-pixel crop) through the
    camera ``label`` (least squares; depth held near 0, which the scale would otherwise trade for).
    Without landmarks, the head where SynthHeads-360 places it."""
    record = adult_head()
    if landmarks_px is None:
        return FittedHead(record, torch.zeros(3), None)
    base = H.face_landmarks(record)[INNER_LANDMARKS]  # at scale 1, float64
    centre = torch.tensor(H.HEAD_OFFSET, dtype=torch.float64)
    target = torch.as_tensor(np.asarray(landmarks_px, np.float64)[INNER_LANDMARKS]) / size
    log_s = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    t = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_s, t], max_iter=FIT_STEPS, line_search_fn="strong_wolfe")
    label64 = label.detach().double().cpu()

    def closure():
        opt.zero_grad()
        pts = (base - centre) * log_s.exp() + centre + t
        loss = (project(pts, label64) - target).square().sum(1).mean() + 1e-3 * t[2].square()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        s = float(log_s.exp())
        pts = (base - centre) * s + centre + t
        rms = float((project(pts, label64) - target).square().sum(1).mean().sqrt()) * size
    record["scale"] = s
    return FittedHead(record, t.detach().float(), rms)


def crop_landmarks(image) -> np.ndarray | None:
    """The 68 landmarks [68,2] of the largest face dlib finds on an aligned crop (None: no face,
    or the face preprocessing is not installed)."""
    try:
        from ..preprocess.landmarks import detect_faces
        from ..preprocess.native import MissingDependency
    except ImportError:
        return None
    try:
        faces = detect_faces(np.asarray(image.convert("RGB")))
    except MissingDependency:  # dlib is imported on first use
        return None
    return faces[0].landmarks if faces else None


def _grow(mask: torch.Tensor, px: int | tuple[int, int]) -> torch.Tensor:
    """``mask`` [V,1,H,W] dilated by ``px`` pixels (or (vertical, horizontal) pixels)."""
    py, px = (px, px) if isinstance(px, int) else px
    if py <= 0 and px <= 0:
        return mask
    return F.max_pool2d(mask, (2 * py + 1, 2 * px + 1), stride=1, padding=(py, px))


def _pixels_per_unit(labels: torch.Tensor, res: int) -> float:
    """Pixels per world unit at the head's distance, for the cameras ``labels`` (one focal and distance)."""
    cam2world, k = split_label(labels[:1].float().cpu())
    return float(k[0, 0, 0]) * res / float(cam2world[0, :3, 3].norm())


def hair_margins(fitted: FittedHead, label: torch.Tensor, mask: torch.Tensor, res: int) -> tuple[float, float]:
    """(above, beside) in world units: how far the photo's foreground ``mask`` [1,1,res,res] (seen
    by the camera ``label`` [1,25] the head was fitted through) reaches above the fitted bald
    head's front silhouette (median over its middle columns) and beside it (the larger side, upper
    quartile over the rows from its crown down to the eyes). Hair, a hat or a hood widen it; a
    bald or shaved head gives about 0."""
    sil = fitted.silhouettes(label, res)[0, 0] > 0.5
    fg = mask.reshape(res, res).cpu() > 0.5
    cols = sil.any(0).nonzero().squeeze(1)
    rows = sil.any(1).nonzero().squeeze(1)
    if not len(cols) or not fg.any():
        return 0.0, 0.0
    ppu = _pixels_per_unit(label, res)
    eye_row = int(project(fitted.landmarks()[EYES], label.double().cpu())[:, 1].mean() * res)
    left, right = int(cols[0]), int(cols[-1])
    quarter = (right - left) // 4
    above = []
    for c in range(left + quarter, right - quarter + 1):
        if sil[:, c].any() and fg[:, c].any():
            above.append(int(sil[:, c].nonzero()[0]) - int(fg[:, c].nonzero()[0]))
    beside = []
    for r in range(int(rows[0]), min(eye_row, res - 1) + 1):
        s, f = sil[r].nonzero().squeeze(1), fg[r].nonzero().squeeze(1)
        if len(s) and len(f):
            beside.append(max(int(s[0]) - int(f[0]), int(f[-1]) - int(s[-1])))
    up = float(np.median(above)) if above else 0.0
    side = float(np.quantile(beside, 0.75)) if beside else 0.0
    return max(up, 0.0) / ppu, max(side, 0.0) / ppu


def above_chin(fitted: FittedHead, labels: torch.Tensor, res: int) -> torch.Tensor:
    """[V,1,res,res] 1 where the ray's point nearest the head's centre axis lies above the chin."""
    origins, dirs = camera_rays(labels.float().cpu(), res)  # [V,3], [V,R*R,3]
    chin_y = float(fitted.landmarks()[MENTON, 1])
    axis = torch.tensor([fitted.offset[0], 0.0, fitted.offset[2]])  # the vertical line through the head
    rel = (origins - axis)[:, None, :]
    # nearest approach to the vertical axis, in the horizontal plane
    horizontal = dirs[..., [0, 2]]
    t = -(rel[..., [0, 2]] * horizontal).sum(-1) / horizontal.square().sum(-1).clamp_min(1e-9)
    y = origins[:, None, 1] + t * dirs[..., 1]
    return (y > chin_y).float().reshape(-1, 1, res, res)


def hair_room_cm(fitted: FittedHead, label: torch.Tensor, mask, minimum_cm: float) -> tuple[float, float]:
    """The label's margin (above, beside) in cm of the fitted head: the hair the photo's ``mask``
    (a crop mask, any size) shows by :func:`hair_margins`, at least ``minimum_cm`` and at most
    :data:`MAX_HAIR_CM` (or ``minimum_cm``, if larger)."""
    cm = CM_WORLD * fitted.record["scale"]
    measured = hair_margins(fitted, label, mask_tensor(mask, HAIR_RES), HAIR_RES)
    return tuple(float(np.clip(v / cm, minimum_cm, max(minimum_cm, MAX_HAIR_CM))) for v in measured)


def opacity_bounds(fitted: FittedHead, labels: torch.Tensor, res: int, margin: float | tuple[float, float],
                   inner: float) -> torch.Tensor:
    """[V,2,res,res]: the most (channel 0) and least (channel 1) opacity allowed per pixel, from
    the fitted head's silhouettes grown by ``margin`` (world units; or (vertical, horizontal)) and
    shrunk by ``inner``, above the chin; no bound elsewhere. Drawn at :data:`BOUNDS_RES` at least
    and area-averaged down to ``res``."""
    fine = max(res, BOUNDS_RES)
    if fine != res:
        return F.interpolate(opacity_bounds(fitted, labels, fine, margin, inner), size=(res, res), mode="area")
    sil = fitted.silhouettes(labels, res)
    px = _pixels_per_unit(labels, res)
    vertical, horizontal = (margin, margin) if isinstance(margin, (int, float)) else margin
    most = _grow(sil, (round(vertical * px), round(horizontal * px)))
    least = 1 - _grow(1 - sil, round(inner * px))
    region = above_chin(fitted, labels, res)
    return torch.cat([most * region + (1 - region), least * region], 1)


def shape_views(fitted: FittedHead, front_label: torch.Tensor, res: int, weight: float,
                margin_cm: float | tuple[float, float], inner_cm: float) -> list[TargetView]:
    """The label's views: the photo's camera turned by :data:`SHAPE_YAWS` (no camera offset, like
    the back views), sharing ``weight``, taking turns; margins in cm of the fitted head (the
    margin may be (above, beside))."""
    labels = torch.cat([yaw_rotated(front_label.cpu(), math.radians(a)) for a in SHAPE_YAWS])
    cm = CM_WORLD * fitted.record["scale"]
    vertical, horizontal = (margin_cm, margin_cm) if isinstance(margin_cm, (int, float)) else margin_cm
    bounds = opacity_bounds(fitted, labels, res, (vertical * cm, horizontal * cm), inner_cm * cm)
    return [TargetView(f"shape{a:+g}", None, labels[i:i + 1], weight / len(SHAPE_YAWS), source="shape",
                       cycle=SHAPE_CYCLE, opacity=bounds[i:i + 1])
            for i, a in enumerate(SHAPE_YAWS)]
