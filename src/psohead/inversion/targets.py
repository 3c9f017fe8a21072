"""Supervised views and the per-view objective shared by both inversion stages.

The official loss 0.5*(MSE_f + 0.3*MSE_b) + (P_f + 0.3*P_b) is the sum over views v of
weight_v * (0.5*MSE_v + P_v), with weight 1 for the front and 0.3 for the pseudo back.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from .losses import PerceptualLoss, masked_mse

MSE_WEIGHT = 0.5
PERCEPTUAL_WEIGHT = 1.0
BACK_WEIGHT = 0.3


@dataclass
class TargetView:
    """One supervised camera: image [1,3,H,W] in [-1,1], render label [1,25] (offset included)."""

    name: str
    image: torch.Tensor
    label: torch.Tensor
    weight: float = 1.0
    # [1,1,h,w] in [0,1]: only the foreground is compared (photos whose background is not the
    # generator's: real or FK-Enhance backs); both images are put on black for the perceptual term.
    mask: torch.Tensor | None = None
    source: str = "input"  # input | prior | fk | photo | extra
    # Views with the same cycle name take turns: one of them per step, its weight times the group
    # size, so every view keeps its weight on average at a fraction of the rendering cost.
    cycle: str | None = None

    def to(self, device) -> "TargetView":
        return replace(self, image=self.image.to(device), label=self.label.to(device),
                       mask=None if self.mask is None else self.mask.to(device))


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
    """[2,A] terms of the active views -> [2,V] with NaN for the views not supervised this step."""
    if len(active) == num_views:
        return terms
    out = terms.new_full((2, num_views), float("nan"))
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


def views_loss(images: torch.Tensor, views: list[TargetView], perceptual: PerceptualLoss,
               mse_weight: float = MSE_WEIGHT, perceptual_weight: float = PERCEPTUAL_WEIGHT,
               cache: TargetCache | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted sum over views of mse_weight*MSE + perceptual_weight*P.

    Returns (loss, terms) with terms = detached [2,V] (MSE row, perceptual row), kept on the
    device so that logging costs no per-step synchronisation. ``cache`` (a TargetCache) keeps the
    prepared targets between calls with the same views.
    """
    targets = (cache.get(views, images, perceptual) if cache is not None else
               prepare_targets(views, images.shape[-2:], images.dtype, images.device))
    mse = masked_mse(images, targets.raw, targets.masks)
    if targets.masks is not None:
        images = images * targets.masks - (1 - targets.masks)
    perc = (perceptual(images, targets.compared, targets.features) if perceptual_weight
            else torch.zeros_like(mse))
    loss = (targets.weights * (mse_weight * mse + perceptual_weight * perc)).sum()
    return loss, torch.stack([mse, perc]).detach()


def terms_dict(terms: torch.Tensor, views: list[TargetView]) -> dict[str, float]:
    """[2,V] terms -> {'mse_front': .., 'perc_front': .., ...} (one device sync)."""
    values = terms.cpu().tolist()
    out = {}
    for i, v in enumerate(views):
        out[f"mse_{v.name}"] = values[0][i]
        out[f"perc_{v.name}"] = values[1][i]
    return out
