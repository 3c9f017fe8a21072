"""Supervised views and the per-view objective shared by both inversion stages.

The official loss 0.5*(MSE_f + 0.3*MSE_b) + (P_f + 0.3*P_b) is the sum over views v of
weight_v * (0.5*MSE_v + P_v), with weight 1 for the front and 0.3 for the pseudo back. A view
may instead (image None) bound the render's opacity (the geometric pseudo-label, :mod:`.shape`):
its term is weight_v * O_v, O_v the opacity's mean squared excursion outside the bounds.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from .losses import PerceptualLoss, masked_mse, opacity_loss

MSE_WEIGHT = 0.5
PERCEPTUAL_WEIGHT = 1.0
BACK_WEIGHT = 0.3
TERMS = ("mse", "perc", "shape")  # rows of the per-view terms


@dataclass
class TargetView:
    """One supervised camera: image [1,3,H,W] in [-1,1] (or None for an opacity-only view),
    render label [1,25] (offset included)."""

    name: str
    image: torch.Tensor | None
    label: torch.Tensor
    weight: float = 1.0
    # [1,1,h,w] in [0,1]: only the foreground is compared (photos whose background is not the
    # generator's: real or FK-Enhance backs); both images are put on black for the perceptual term.
    mask: torch.Tensor | None = None
    source: str = "input"  # input | prior | fk | photo | extra
    # Views with the same cycle name take turns: one of them per step, its weight times the group
    # size, so every view keeps its weight on average at a fraction of the rendering cost.
    cycle: str | None = None
    # [1,2,h,w]: the most (channel 0) and least (channel 1) accumulated opacity allowed per pixel
    # (``shape`` views, which have no image)
    opacity: torch.Tensor | None = None

    def __post_init__(self):
        if (self.image is None) == (self.opacity is None):
            raise ValueError(f"view {self.name}: give an image or opacity bounds, not both or neither")

    def to(self, device) -> "TargetView":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(self, image=move(self.image), label=self.label.to(device), mask=move(self.mask),
                       opacity=move(self.opacity))


def step_views(views: list[TargetView], step: int) -> tuple[list[int], list[TargetView]]:
    """(indices, views) supervised at ``step``: every view without a cycle, plus member
    ``step % k`` of each cycle group of k views with its weight multiplied by k."""
    groups: dict[str, list[int]] = {}
    for i, v in enumerate(views):
        if v.cycle is not None:
            groups.setdefault(v.cycle, []).append(i)
    chosen = {members[step % len(members)]: len(members) for members in groups.values()}
    active = [i for i, v in enumerate(views) if v.cycle is None or i in chosen]
    return active, [views[i] if i not in chosen else replace(views[i], weight=views[i].weight * chosen[i])
                    for i in active]


def full_terms(terms: torch.Tensor, active: list[int], num_views: int) -> torch.Tensor:
    """[3,A] terms of the active views -> [3,V] with NaN for the views not supervised this step."""
    if len(active) == num_views:
        return terms
    out = terms.new_full((len(TERMS), num_views), float("nan"))
    out[:, active] = terms
    return out


@dataclass
class PreparedTargets:
    """Targets of a set of views at the render size: ``raw`` for the MSE with ``masks`` (or None),
    ``compared`` (on black outside the masks, like the renders) and the perceptual features of it."""

    raw: torch.Tensor
    masks: torch.Tensor | None
    compared: torch.Tensor
    weights: torch.Tensor  # [V] per-view loss weights, on the device
    features: object = None


def prepare_targets(views: list[TargetView], size, dtype, device, perceptual: PerceptualLoss | None = None
                    ) -> PreparedTargets:
    raw = torch.cat([v.image for v in views]).to(device=device, dtype=dtype)
    if raw.shape[-2:] != tuple(size):
        raw = F.interpolate(raw, size=tuple(size), mode="area")
    masks, compared = None, raw
    if any(v.mask is not None for v in views):
        masks = torch.cat([torch.ones_like(raw[:1, :1]) if v.mask is None else
                           F.interpolate(v.mask.to(raw), size=tuple(size), mode="bilinear",
                                         align_corners=False, antialias=True).clamp(0, 1)
                           for v in views])
        compared = raw * masks - (1 - masks)
    features = perceptual.target_features(compared) if perceptual is not None else None
    weights = torch.tensor([v.weight for v in views], dtype=dtype).to(device)
    return PreparedTargets(raw, masks, compared, weights, features)


class TargetCache:
    """Prepared targets per set of supervised views (by name), made once per stage instead of every
    step: the targets are fixed, so their resizing, masks and perceptual features are too."""

    def __init__(self):
        self._sets: dict[tuple, PreparedTargets] = {}

    def get(self, views: list[TargetView], images: torch.Tensor, perceptual: PerceptualLoss) -> PreparedTargets:
        key = (tuple((v.name, v.weight) for v in views), tuple(images.shape[-2:]), images.dtype, images.device)
        if key not in self._sets:
            self._sets[key] = prepare_targets(views, images.shape[-2:], images.dtype, images.device, perceptual)
        return self._sets[key]


def views_loss(images: torch.Tensor | None, views: list[TargetView], perceptual: PerceptualLoss,
               mse_weight: float = MSE_WEIGHT, perceptual_weight: float = PERCEPTUAL_WEIGHT,
               cache: TargetCache | None = None, opacity: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted sum over views of mse_weight*MSE + perceptual_weight*P (views with an image;
    ``images`` [P,3,H,W] are their renders, in order) and of the opacity term (views with opacity
    bounds; ``opacity`` [B,1,h,w] their renders' opacity, in order) - as :class:`StepRenderer
    <psohead.inversion.graphs.StepRenderer>` returns them; both are compared in float32.

    Returns (loss, terms) with terms = detached [3,V] (rows :data:`TERMS`, NaN where a view has no
    such term), kept on the device so that logging costs no per-step synchronisation. ``cache`` (a
    TargetCache) keeps the prepared targets between calls with the same views.
    """
    pictured = [i for i, v in enumerate(views) if v.image is not None]
    bounded = [i for i, v in enumerate(views) if v.opacity is not None]
    for rows, given, what in ((pictured, images, "images"), (bounded, opacity, "opacity")):
        if rows and (given is None or given.shape[0] != len(rows)):
            raise ValueError(f"{len(rows)} views need {what}, got {None if given is None else given.shape[0]}")
    images, opacity = (None if x is None else x.float() for x in (images, opacity))
    some = images if images is not None else opacity
    terms = some.new_full((len(TERMS), len(views)), float("nan"))
    loss = some.new_zeros(())
    if pictured:
        seen = [views[i] for i in pictured]
        targets = (cache.get(seen, images, perceptual) if cache is not None else
                   prepare_targets(seen, images.shape[-2:], images.dtype, images.device))
        mse = masked_mse(images, targets.raw, targets.masks)
        shown = images * targets.masks - (1 - targets.masks) if targets.masks is not None else images
        perc = (perceptual(shown, targets.compared, targets.features) if perceptual_weight
                else torch.zeros_like(mse))
        loss = loss + (targets.weights * (mse_weight * mse + perceptual_weight * perc)).sum()
        cols = slice(None) if len(pictured) == len(views) else pictured  # (a list index copies to the device)
        terms[0, cols], terms[1, cols] = mse.detach(), perc.detach()
    if bounded:
        bounds = torch.cat([views[i].opacity for i in bounded]).to(opacity)
        shape = opacity_loss(opacity, bounds)
        weights = torch.tensor([views[i].weight for i in bounded], dtype=shape.dtype).to(shape.device)
        loss = loss + (weights * shape).sum()
        terms[2, bounded] = shape.detach()
    return loss, terms


def terms_dict(terms: torch.Tensor, views: list[TargetView]) -> dict[str, float]:
    """[3,V] terms -> {'mse_front': .., 'perc_front': .., 'shape_shape+90': .., ...} (one device
    sync; only the terms each view has)."""
    values = terms.cpu().tolist()
    return {f"{key}_{v.name}": values[row][i] for i, v in enumerate(views) for row, key in enumerate(TERMS)
            if row_of(v, row)}


def row_of(view: TargetView, row: int) -> bool:
    """Whether the view has the term of row ``row`` of :data:`TERMS`."""
    return view.opacity is not None if TERMS[row] == "shape" else view.image is not None
