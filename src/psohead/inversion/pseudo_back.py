"""Pseudo back targets: what stage 2 is shown for the side of the head the photo never saw.

Strategies (the official code leaves the back image to the user):

* ``none``  - front only: plain PTI.
* ``prior`` - the stage-1 latent rendered at the back camera (and optionally at +-N degrees
  around it) before tuning, so tuning the weights cannot wreck the unseen side; optionally
  shifted so the head takes the hair colour the photo shows (``prior_colour_shift``), averaged
  over several stage-1 latents and blended towards the mean latent's back (``shrink_views``).
* ``fk``    - the FK-Enhance back image whose silhouette best matches the expected back
  silhouette, recoloured to the photo's hair colour; stage 2 also gets the prior views (the bank
  image sets silhouette and colour, the prior keeps the latent's own back detail).
* a path    - a real photo of the back of the same head, scaled and placed by its mask onto the
  expected back silhouette (the front mask mirrored).

Photo and FK targets are compared on their foreground only (their background is not the
generator's) and supervise both stages, like the official back target; the prior exists only
after stage 1 and supervises stage 2.
* ``auto``  - ``prior``: measured on 8 held-out heads it beats ``fk``, whose result swings with
  the bank image it retrieves (BENCHMARKS.md); ``fk`` is used when asked for.

Back cameras are the front camera turned by pi about the world y axis (PSO-HEAD's
``data_rotate.json``) and get no camera offset, as in the official projector.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..camera import LABEL_DIM, split_label, build_label
from ..errors import InputError
from .targets import BACK_WEIGHT, TargetView

STRATEGIES = ("auto", "prior", "fk", "none")


@dataclass
class BackPlan:
    """The resolved strategy: kind in prior | fk | photo | none (+ the photo path for ``photo``)."""

    kind: str
    photo: Path | None = None
    fk_bank: Path | None = None
    requested: str = "auto"


def plan_back(back: str | os.PathLike = "auto", fk_bank: str | os.PathLike | None = None) -> BackPlan:
    """Resolve ``--back``; fails early (before any optimisation) on missing files."""
    requested = str(back)
    if fk_bank is not None and not Path(fk_bank).exists():
        raise InputError(f"FK-Enhance bank not found: {fk_bank}")
    if requested in ("prior", "none"):
        return BackPlan(requested, requested=requested)
    if requested == "fk":
        if fk_bank is None:
            raise InputError("--back fk needs an FK-Enhance bank (--fk-bank DIR)")
        return BackPlan("fk", fk_bank=Path(fk_bank), requested=requested)
    if requested == "auto":  # prior even with a bank: fk's gain depends on the retrieved image
        return BackPlan("prior", requested=requested)
    path = Path(requested)
    if not path.is_file():
        raise InputError(f"--back must be one of {', '.join(STRATEGIES)} or an image file; not found: {path}")
    return BackPlan("photo", photo=path, requested=requested)


def yaw_rotated(label: torch.Tensor, angle: float) -> torch.Tensor:
    """Camera(s) turned by ``angle`` radians about the world y axis (positive: toward +x)."""
    cam2world, k = split_label(label)
    c, s = math.cos(angle), math.sin(angle)
    rot = torch.tensor([[c, 0, s, 0], [0, 1, 0, 0], [-s, 0, c, 0], [0, 0, 0, 1]], dtype=cam2world.dtype,
                       device=cam2world.device)
    return build_label(rot @ cam2world, k).reshape(-1, LABEL_DIM)


AUGMENT_CYCLE = "back-augment"  # TargetView.cycle of the +-augment views when they take turns


def back_cameras(front_label: torch.Tensor, augment_degrees: float = 0.0, weight: float = BACK_WEIGHT
                 ) -> list[tuple[str, torch.Tensor, float]]:
    """(name, label, weight): the back camera, plus +-augment views sharing the back weight with it."""
    if augment_degrees <= 0:
        return [("back", yaw_rotated(front_label, math.pi), weight)]
    a = math.radians(augment_degrees)
    w = weight / 2
    return [("back", yaw_rotated(front_label, math.pi), w),
            (f"back+{augment_degrees:g}", yaw_rotated(front_label, math.pi + a), w / 2),
            (f"back-{augment_degrees:g}", yaw_rotated(front_label, math.pi - a), w / 2)]


@torch.no_grad()
def render_prior(G, ws: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [V,3,H,W] and masks [V,1,H,W] of the latent at the given cameras (deterministic rays)."""
    out = G.synthesis(ws, labels.to(ws.device), noise_mode="const",
                      deterministic=True)
    image = out["image"].float()
    mask = F.interpolate(out["image_mask"].float(), size=image.shape[-2:], mode="bilinear",
                         align_corners=False).clamp(0, 1)
    return image, mask


def mirrored_label(label: torch.Tensor) -> torch.Tensor:
    """Camera(s) mirrored in the head's plane of symmetry (world x -> -x). A render at the mirrored
    camera, flipped left-right, is the view the original camera has of the mirrored head (camera x
    is negated too, so the frame stays right-handed and the image x axis flips)."""
    cam2world, k = split_label(label)
    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=cam2world.dtype, device=cam2world.device))
    return build_label(flip @ cam2world @ flip, k).reshape(-1, LABEL_DIM)


def prior_views(G, ws: torch.Tensor, front_label: torch.Tensor, augment_degrees: float = 0.0,
                alternate: bool = False, colour_shift: torch.Tensor | None = None,
                weight: float = BACK_WEIGHT, mirror_average: bool = False) -> list[TargetView]:
    """The prior back target(s); ``alternate``: the +-augment views take turns (one per step, twice
    the weight), which keeps their average weight and saves one render per step. ``colour_shift``
    [3] is added to the heads (weighted by each render's mask), see :func:`prior_colour_shift`.

    The latent's back is a guess: what it shows beyond the photo's evidence is detail the truth
    need not share. ``mirror_average`` averages each view with the flipped view from the mirrored
    camera: it keeps what is left-right symmetric and halves the rest (+0.3 dB on held-out backs,
    BENCHMARKS.md; a Gaussian blur of the target, tried as well, adds nothing on top).

    ``ws`` [K,num_ws,w_dim] with K > 1 (stage 1's members, see projector.py): the targets are the
    mean of the members' views, the part of the unseen side they agree on."""
    cams = back_cameras(front_label, augment_degrees, weight)
    images, masks = prior_renders(G, ws, camera_labels(cams), mirror_average)
    return views_from_renders(cams, images, masks, alternate, colour_shift)


def camera_labels(cams: list[tuple[str, torch.Tensor, float]]) -> torch.Tensor:
    """Labels [V,25] of :func:`back_cameras`' list."""
    return torch.cat([lab for _, lab, _ in cams])


def views_from_renders(cams: list[tuple[str, torch.Tensor, float]], images: torch.Tensor, masks: torch.Tensor,
                       alternate: bool = False, colour_shift: torch.Tensor | None = None) -> list[TargetView]:
    """Prior TargetViews from renders [V,3,H,W] + masks [V,1,H,W] at the cameras ``cams``."""
    if colour_shift is not None:
        images = shift_colour(images, masks, colour_shift)
    return [TargetView(name, images[i:i + 1].cpu(), lab.cpu(), view_weight, None, "prior",
                       AUGMENT_CYCLE if alternate and i > 0 else None)
            for i, (name, lab, view_weight) in enumerate(cams)]


def shrink_views(views: list[TargetView], towards: list[TargetView], amount: float | torch.Tensor
                 ) -> list[TargetView]:
    """Each target blended with weight ``amount`` (a number, or per-pixel weights [V,1,H,W], one
    row per view) towards the same camera's target in ``towards``.

    With the mean latent's views as ``towards`` this shrinks the latent's guess at the unseen side
    towards the population's mean back: 0.1 brings the prior 0.15 dB closer to held-out backs
    (24 heads, benchmarks/prior_targets.py); 0.2 no closer, 0.3 further. Per-pixel weights from
    :func:`spread_weights` shrink most where stage 1's members disagree."""
    amounts = amount.split(1) if isinstance(amount, torch.Tensor) else [float(amount)] * len(views)
    return [replace(v, image=(1 - a) * v.image + a * t.image)
            for v, t, a in zip(views, towards, amounts, strict=True)]


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


def local_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over a centred size x size window (odd size; the border averages what it covers)."""
    return F.avg_pool2d(x, size, stride=1, padding=size // 2, count_include_pad=False)


def member_renders(G, ws: torch.Tensor, labels: torch.Tensor, mirror_average: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [K,V,3,H,W] and masks [K,V,1,H,W] of each latent in ``ws`` [K,num_ws,w_dim] at
    ``labels`` [V,25]; with ``mirror_average`` each averaged with the flipped views from the
    mirrored cameras."""
    n = len(labels)
    cameras = torch.cat([labels, mirrored_label(labels)]) if mirror_average else labels
    images, masks = [], []
    for member in ws.split(1):  # one render call per latent: its views share one tri-grid
        im, m = render_prior(G, member, cameras)
        if mirror_average:
            im, m = 0.5 * (im[:n] + im[n:].flip(-1)), 0.5 * (m[:n] + m[n:].flip(-1))
        images.append(im)
        masks.append(m)
    return torch.stack(images), torch.stack(masks)


def prior_renders(G, ws: torch.Tensor, labels: torch.Tensor, mirror_average: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [V,3,H,W] and masks [V,1,H,W] at ``labels`` [V,25], averaged over the latents ``ws``
    [K,num_ws,w_dim] and, with ``mirror_average``, with the flipped views from the mirrored cameras."""
    images, masks = member_renders(G, ws, labels, mirror_average)
    return images.mean(0), masks.mean(0)


def shift_colour(images: torch.Tensor, masks: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Add colour ``shift`` [3] to images [N,3,H,W] in [-1,1], weighted by their masks [N,1,H,W]."""
    return (images + shift.to(images).reshape(1, 3, 1, 1) * masks).clamp(-1, 1)


def prior_colour_shift(front: TargetView, front_mask: torch.Tensor, back_image: torch.Tensor,
                       back_mask: torch.Tensor) -> torch.Tensor:
    """Colour [3] to add to the prior's head: the photo's hair colour (median of the top quarter
    of its mask [1,1,h,w]) minus the median colour of the top half of the prior back render
    [1,3,H,W] on its mask [1,1,H,W] (the head seen from behind, mostly hair; the lower half may be
    shoulders and clothes). The hair the photo shows is the best evidence of the back's colour: on
    8 held-out heads this target beats the latent's own back by 0.99 dB, shifting by the latent's
    colour error on the front by 0.11 dB (benchmarks/back_targets.py)."""
    size = front.image.shape[-2:]
    mask = F.interpolate(front_mask.float().cpu(), size=size, mode="bilinear", align_corners=False)
    if mask_box(back_mask[0, 0].cpu()) is None:
        return torch.zeros(3)
    return hair_colour(front.image.cpu().float(), mask) - hair_colour(back_image.cpu().float(), back_mask.cpu(),
                                                                      band=0.5)


# ---------------------------------------------------------------------------------------------
# Placing a foreground (given by its mask) onto a reference silhouette.

def mask_box(mask: torch.Tensor, threshold: float = 0.5) -> tuple[float, float, float, float] | None:
    """(top, bottom, left, right) pixel extent of mask [H,W] > threshold, or None if empty."""
    rows = torch.nonzero((mask > threshold).any(1)).flatten()
    cols = torch.nonzero((mask > threshold).any(0)).flatten()
    if rows.numel() == 0 or cols.numel() == 0:
        return None
    return float(rows[0]), float(rows[-1] + 1), float(cols[0]), float(cols[-1] + 1)


def place_by_mask(image: torch.Tensor, mask: torch.Tensor, ref_mask: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale/shift image [1,3,h,w] + mask [1,1,h,w] so the mask's width and top edge match ref_mask
    [1,1,H,W]; horizontally centred on the reference. Returns image, mask at H x W."""
    size = ref_mask.shape[-2:]
    src = mask_box(mask[0, 0])
    ref = mask_box(ref_mask[0, 0])
    if src is None:
        raise InputError("back photo: no foreground found to align (its mask is empty)")
    if ref is None:
        ref = (0.1 * size[0], float(size[0]), 0.25 * size[1], 0.75 * size[1])
    scale = (ref[3] - ref[2]) / max(src[3] - src[2], 1.0)
    # Affine grid: output pixel -> source pixel.
    h, w = image.shape[-2:]
    cx_src, cx_ref = (src[2] + src[3]) / 2, (ref[2] + ref[3]) / 2
    ys = torch.arange(size[0], dtype=torch.float32) + 0.5
    xs = torch.arange(size[1], dtype=torch.float32) + 0.5
    sy = (ys - ref[0]) / scale + src[0]
    sx = (xs - cx_ref) / scale + cx_src
    grid = torch.stack(torch.meshgrid(sy / h * 2 - 1, sx / w * 2 - 1, indexing="ij")[::-1], -1)[None]
    both = torch.cat([image, mask], 1).float()
    out = F.grid_sample(both, grid.to(both), mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, :3], out[:, 3:].clamp(0, 1)


def composite(fg: torch.Tensor, mask: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    return fg * mask + bg * (1 - mask)


# ---------------------------------------------------------------------------------------------
# User photo of the back of the head.

def reference_back_mask(G, w_avg: torch.Tensor, front_label: torch.Tensor, front_mask: torch.Tensor | None,
                        size: int) -> torch.Tensor:
    """Where the head should appear in the back view [1,1,S,S]: the photo's own foreground mask
    mirrored (a head seen from behind has the mirrored silhouette), else the mean head's."""
    if front_mask is not None:
        m = F.interpolate(front_mask.float().cpu(), size=(size, size), mode="bilinear", align_corners=False)
        return torch.flip(m, dims=[-1]).clamp(0, 1)
    num_ws = int(G.backbone.num_ws)
    _, mask = render_prior(G, w_avg.repeat(1, num_ws, 1), yaw_rotated(front_label, math.pi))
    return F.interpolate(mask.cpu(), size=(size, size), mode="bilinear", align_corners=False)


def photo_view(path: Path, ref_mask: torch.Tensor, back_label: torch.Tensor, mask_fn) -> TargetView:
    """A real back photo placed on the reference silhouette; ``mask_fn(PIL) -> [1,1,h,w]`` in [0,1]."""
    from .imageio import open_rgb, to_tensor

    pil = open_rgb(path, "back photo")
    placed, placed_mask = place_by_mask(to_tensor(pil), mask_fn(pil), ref_mask)
    return TargetView("back", placed, back_label.cpu().reshape(1, LABEL_DIM), BACK_WEIGHT, placed_mask, "photo")


# ---------------------------------------------------------------------------------------------
# FK-Enhance retrieval.

def hair_colour(image: torch.Tensor, mask: torch.Tensor, band: float = 0.25) -> torch.Tensor:
    """Median colour [3] of the top ``band`` of the foreground (the hair on a frontal crop)."""
    box = mask_box(mask[0, 0])
    if box is None:
        return image[0].flatten(1).median(1).values
    top, bottom = int(box[0]), int(box[0] + band * (box[1] - box[0])) + 1
    sel = mask[0, 0, top:bottom] > 0.5
    pix = image[0, :, top:bottom][:, sel]
    return pix.median(1).values if pix.numel() else image[0].flatten(1).median(1).values


def recolour(image: torch.Tensor, mask: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Shift the foreground's median colour to ``colour`` (keeps the bank image's texture)."""
    sel = mask[0, 0] > 0.5
    if not sel.any():
        return image
    current = image[0][:, sel].median(1).values
    shifted = (image + (colour - current).reshape(1, 3, 1, 1)).clamp(-1, 1)
    return composite(shifted, mask, image)


def _small(mask: torch.Tensor, size: int = 32) -> torch.Tensor:
    return F.interpolate(mask.float(), size=(size, size), mode="area")[0, 0]


def fk_view(bank: Path, front_image: torch.Tensor, front_mask: torch.Tensor | None, ref_mask: torch.Tensor
            ) -> tuple[TargetView, dict]:
    """The bank back view whose silhouette best matches ``ref_mask`` (IoU, minus 0.1 x hair-colour
    distance), recoloured to the photo's hair colour; compared on its own foreground only."""
    from ..training.dataset import HeadDataset

    ds = HeadDataset(bank, min_yaw=90.0, max_yaw=180.0)
    if front_mask is None:
        front_mask = torch.flip(ref_mask, dims=[-1])
    colour = hair_colour(front_image.cpu(), F.interpolate(front_mask.float().cpu(), size=front_image.shape[-2:],
                                                          mode="bilinear", align_corners=False))
    ref = _small(ref_mask.cpu()) > 0.5
    best = None
    for i in range(len(ds)):
        img, mask, _ = ds[i]
        m = mask[None].float() / 255
        small = _small(m) > 0.5
        iou = float((small & ref).sum()) / max(float((small | ref).sum()), 1.0)
        dist = float((hair_colour(img[None].float() / 127.5 - 1, m, band=1.0) - colour).norm())
        score = iou - 0.1 * dist
        if best is None or score > best[0]:
            best = (score, i, iou, dist)
    if best is None:
        raise InputError(f"FK-Enhance bank {bank}: no back views (|yaw| >= 90 degrees)")
    _, i, iou, dist = best
    img, mask, label = ds[i]
    size = ref_mask.shape[-1]
    img_t = F.interpolate(img[None].float() / 127.5 - 1, size=(size, size), mode="area")
    m_t = F.interpolate(mask[None].float() / 255, size=(size, size), mode="area")
    target = recolour(img_t, m_t, colour)
    record = {"bank": str(bank), "item": ds.names[ds.index[i][0]], "silhouette_iou": round(iou, 4),
              "colour_distance": round(dist, 4)}
    return TargetView("back", target, label.reshape(1, LABEL_DIM), BACK_WEIGHT, m_t, "fk"), record
