"""The prior back target: the stage-1 latent's own render of the unseen side, before tuning.

The latent's back is a guess. What it shows beyond the photo's evidence is detail the truth need
not share, so the guess is made more cautious in the ways :class:`~..presets.BackPrior` lists:
``mirror_average`` keeps what is left-right symmetric and halves the rest; several stage-1
members (``stage1.members``) keep what they agree on; ``colour_match`` gives the head the hair
colour the photo shows (seen from behind, a head is mostly hair); ``shrink`` pulls the guess
towards the population's mean back, flat or per pixel where the members scatter.
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F

from ...camera import back_label, mirrored_label, yaw_rotated
from ..targets import BACK_WEIGHT, TargetView
from .colour import ColourTransfer, band_pixels, colour_spread, mask_box

AUGMENT_CYCLE = "back-augment"  # TargetView.cycle of the +-augment views when they take turns


def back_cameras(front_label: torch.Tensor, augment_degrees: float = 0.0, weight: float = BACK_WEIGHT
                 ) -> list[tuple[str, torch.Tensor, float]]:
    """(name, label, weight): the back camera, plus +-augment views sharing the back weight with it."""
    if augment_degrees <= 0:
        return [("back", back_label(front_label), weight)]
    a = math.radians(augment_degrees)
    w = weight / 2
    return [("back", back_label(front_label), w),
            (f"back+{augment_degrees:g}", yaw_rotated(front_label, math.pi + a), w / 2),
            (f"back-{augment_degrees:g}", yaw_rotated(front_label, math.pi - a), w / 2)]


def camera_labels(cams: list[tuple[str, torch.Tensor, float]]) -> torch.Tensor:
    """Labels [V,25] of :func:`back_cameras`' list."""
    return torch.cat([lab for _, lab, _ in cams])


@torch.no_grad()
def render_prior(G, ws: torch.Tensor, labels: torch.Tensor, render_overrides: dict | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [V,3,H,W] and masks [V,1,H,W] of the latent at the given cameras (deterministic rays)."""
    out = G.synthesis(ws, labels.to(ws.device), noise_mode="const", deterministic=True,
                      render_overrides=render_overrides)
    image = out["image"].float()
    mask = F.interpolate(out["image_mask"].float(), size=image.shape[-2:], mode="bilinear",
                         align_corners=False).clamp(0, 1)
    return image, mask


def member_renders(G, ws: torch.Tensor, labels: torch.Tensor, mirror_average: bool = False,
                   render_overrides: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [K,V,3,H,W] and masks [K,V,1,H,W] of each latent in ``ws`` [K,num_ws,w_dim] at
    ``labels`` [V,25]; with ``mirror_average`` each averaged with the flipped views from the
    mirrored cameras."""
    n = len(labels)
    cameras = torch.cat([labels, mirrored_label(labels)]) if mirror_average else labels
    images, masks = [], []
    for member in ws.split(1):  # one render call per latent: its views share one tri-grid
        im, m = render_prior(G, member, cameras, render_overrides)
        if mirror_average:
            im, m = 0.5 * (im[:n] + im[n:].flip(-1)), 0.5 * (m[:n] + m[n:].flip(-1))
        images.append(im)
        masks.append(m)
    return torch.stack(images), torch.stack(masks)


def views_from_renders(cams: list[tuple[str, torch.Tensor, float]], images: torch.Tensor, masks: torch.Tensor,
                       alternate: bool = False, colour: ColourTransfer | None = None) -> list[TargetView]:
    """Prior TargetViews from renders [V,3,H,W] + masks [V,1,H,W] at the cameras ``cams``, their
    heads recoloured by ``colour``; ``alternate``: the +-augment views take turns (one per step,
    twice the weight)."""
    if colour is not None:
        images = colour.apply(images, masks)
    return [TargetView(name, images[i:i + 1], lab.to(images.device), view_weight, None, "prior",
                       AUGMENT_CYCLE if alternate and i > 0 else None)
            for i, (name, lab, view_weight) in enumerate(cams)]


def shrink_views(views: list[TargetView], towards: list[TargetView], amount: float | torch.Tensor
                 ) -> list[TargetView]:
    """Each target blended with weight ``amount`` (a number, or per-pixel weights [V,1,H,W], one
    row per view) towards the same camera's target in ``towards``."""
    amounts = amount.split(1) if isinstance(amount, torch.Tensor) else [float(amount)] * len(views)
    return [replace(v, image=(1 - a) * v.image + a * t.image)
            for v, t, a in zip(views, towards, amounts, strict=True)]


def local_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over a centred size x size window (odd size; the border averages what it covers)."""
    return F.avg_pool2d(x, size, stride=1, padding=size // 2, count_include_pad=False)


def spread_weights(member_images: torch.Tensor, prior: torch.Tensor, towards: torch.Tensor, scale: float
                   ) -> torch.Tensor:
    """Per-pixel blend weights [V,1,H,W] of the prior views [V,3,H,W] towards ``towards`` [V,3,H,W]:
    empirical-Bayes shrinkage ``scale * v / (scale * v + d)``, v the variance of the members'
    renders [K,V,3,H,W] and d the squared gap between prior and ``towards`` (both local means over
    ~3 % of the width, channels averaged). Where the members agree, or the gap is large against
    their spread, the prior stays; where their guesses scatter it moves towards the mean head."""
    size = max(1, round(0.0275 * member_images.shape[-1])) | 1  # 7 pixels at 256; odd: a centred window
    spread = local_mean(member_images.var(0, unbiased=False).mean(1, keepdim=True), size)
    gap = local_mean((prior - towards).square().mean(1, keepdim=True), size)
    return scale * spread / (scale * spread + gap + 1e-6)


def prior_colour(front: TargetView, front_mask: torch.Tensor, back_image: torch.Tensor, back_mask: torch.Tensor,
                 spread: bool = False) -> ColourTransfer:
    """The prior head's recolouring to the photo's hair colour: the median of the top quarter of
    the photo's mask [1,1,h,w] minus the median colour of the top half of the prior back render
    [1,3,H,W] on its mask [1,1,H,W] (the head seen from behind, mostly hair; the lower half may be
    shoulders and clothes). With ``spread``, the render's colour variation there is also scaled
    down, axis by axis, to the photo's hair's where the photo's varies less (never up)."""
    device = back_image.device
    mask = F.interpolate(front_mask.float().to(device), size=front.image.shape[-2:], mode="bilinear",
                         align_corners=False)
    if mask_box(back_mask[0, 0]) is None:
        return ColourTransfer(torch.zeros(3, device=device), torch.zeros(3, device=device))
    photo = band_pixels(front.image.to(device).float(), mask)
    prior = band_pixels(back_image.float(), back_mask, band=0.5)
    source = prior.median(1).values
    scale = None
    if spread:
        scale = (colour_spread(photo) / colour_spread(prior).clamp_min(1e-6)).clamp(max=1.0)
    return ColourTransfer(photo.median(1).values - source, source, scale)


def prior_views(G, ws: torch.Tensor, front_label: torch.Tensor, cfg=None, colour: ColourTransfer | None = None,
                render_overrides: dict | None = None) -> list[TargetView]:
    """The prior back views of the latents ``ws`` [K,num_ws,w_dim] (their mean over K) for the
    front camera ``front_label``, as the :class:`~..presets.BackPrior` ``cfg`` says (cameras,
    weights, mirror average, turns), recoloured by ``colour`` where they show the head."""
    from ..presets import BackPrior

    cfg = cfg or BackPrior()
    cams = back_cameras(front_label, cfg.augment_degrees, cfg.weight)
    images, masks = member_renders(G, ws, camera_labels(cams), cfg.mirror_average, render_overrides)
    return views_from_renders(cams, images.mean(0), masks.mean(0), cfg.augment_alternate, colour)


def prior_targets(G, cfg, members: torch.Tensor, w_avg: torch.Tensor, label: torch.Tensor, front: TargetView,
                  front_mask: torch.Tensor | None, pivot_back: tuple, record: dict,
                  render_overrides: dict | None = None) -> list[TargetView]:
    """The prior back views of stage 1's ``members`` [K,num_ws,w_dim] under the settings ``cfg``
    (a :class:`~..presets.BackPrior`): in the photo's hair colour when ``front_mask`` is given
    (shift measured on the pivot's back render ``pivot_back`` = (image, mask)), blended towards the
    mean latent's views by ``cfg.shrink``; what was used goes into ``record``."""
    cams = back_cameras(label, cfg.augment_degrees, cfg.weight)

    def views_of(ws, colour_from):
        colour = (None if front_mask is None else
                  prior_colour(front, front_mask, *colour_from, spread=cfg.colour_spread))
        images, masks = member_renders(G, ws, camera_labels(cams), cfg.mirror_average, render_overrides)
        return colour, images, views_from_renders(cams, images.mean(0), masks.mean(0), cfg.augment_alternate, colour)

    colour, member_images, prior = views_of(members, pivot_back)
    if colour is not None:
        record["prior_colour_shift"] = [round(float(v), 4) for v in colour.shift]
        if colour.scale is not None:
            record["prior_colour_scale"] = [round(float(v), 4) for v in colour.scale]
    record["prior_members"] = len(members)
    if cfg.shrink == "none":
        return prior
    mean_head = w_avg.repeat(1, int(G.backbone.num_ws), 1)
    head = views_of(mean_head, render_prior(G, mean_head, back_label(label), render_overrides))[2]
    if cfg.shrink == "spread":
        amount = spread_weights(member_images, torch.cat([v.image for v in prior]),
                                torch.cat([v.image for v in head]), cfg.shrink_amount)
        record["prior_shrink_spread"] = cfg.shrink_amount
        record["prior_shrink_mean_weight"] = round(float(amount.mean()), 4)
    else:
        amount = cfg.shrink_amount
        record["prior_shrink"] = cfg.shrink_amount
    return shrink_views(prior, head, amount)
