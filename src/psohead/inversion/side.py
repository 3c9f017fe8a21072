"""Side pseudo-labels: the photo itself, warped to cameras turned a little from its own through
the stage-1 pivot's depth.

A turned camera sees much of what the photo sees. Each of its pixels is lifted onto the pivot's
surface (its rendered depth), projected into the photo and given the photo's colour there when
the photo sees that point: the point lies on the pivot's surface seen from the photo's camera
too (no occluder in front of it), inside the photo's foreground mask, and the surface does not
face away from the photo so steeply that one photo pixel would stretch over several. Only those
pixels count in the loss (the view's mask); the rest of the view is left to the generator. The
geometry is the pivot's, so the labels are right where its surface is, and they hold the face's
own colours at the angles where a tuned generator otherwise falls back to its prior.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..camera import split_label, yaw_rotated
from ..synth.render import camera_rays
from .targets import TargetView

SIDE_CYCLE = "side"  # the side views take turns, one per stage-2 step
SURFACE_OPACITY = 0.95  # a pixel is on the surface where the render's opacity is at least this
MIN_FACING = 0.35  # the least cosine between the photo's ray and the surface normal (about 70 degrees)


def _project(points: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """World points [V,M,3] -> image coordinates [V,M,2] (0..1 across the image) of the cameras ``label`` [V,25]."""
    cam2world, k = split_label(label)
    world2cam = torch.linalg.inv(cam2world)
    cam = points @ world2cam[:, :3, :3].transpose(1, 2) + world2cam[:, None, :3, 3]
    return (cam @ k.transpose(1, 2))[..., :2] / cam[..., 2:].clamp_min(1e-6)


def _sample(image: torch.Tensor, uv: torch.Tensor, res: int) -> torch.Tensor:
    """Bilinear samples of ``image`` [1,C,h,w] at uv [V,M,2] (0..1, pixel centres at (i+0.5)/w):
    [V,C,res,res]."""
    grid = (2 * uv - 1).reshape(uv.shape[0], res, res, 2)
    return F.grid_sample(image.expand(uv.shape[0], -1, -1, -1), grid, mode="bilinear",
                         padding_mode="border", align_corners=False)


def _normals(points: torch.Tensor, res: int) -> torch.Tensor:
    """Unit surface normals [V,M,3] from a grid of surface points [V,res*res,3] (central differences)."""
    p = points.reshape(-1, res, res, 3)
    dx = torch.cat([p[:, :, 1:2] - p[:, :, :1], (p[:, :, 2:] - p[:, :, :-2]) / 2, p[:, :, -1:] - p[:, :, -2:-1]], 2)
    dy = torch.cat([p[:, 1:2] - p[:, :1], (p[:, 2:] - p[:, :-2]) / 2, p[:, -1:] - p[:, -2:-1]], 1)
    return F.normalize(torch.cross(dx, dy, dim=-1), dim=-1).reshape(points.shape)


@torch.no_grad()
def warp(photo: torch.Tensor, mask: torch.Tensor | None, depth: torch.Tensor, opacity: torch.Tensor,
         labels: torch.Tensor, tolerance: float = 0.02) -> tuple[torch.Tensor, torch.Tensor]:
    """The photo [1,3,H,W] (in [-1,1]; its foreground ``mask`` [1,1,H,W] or None), seen from
    ``labels[0]``, warped to the cameras ``labels[1:]`` ([1+V,25]) through a surface given by its
    ray ``depth`` (distance along each pixel's unit ray) and ``opacity``, both [1+V,1,H,W] at those
    cameras: images [V,3,H,W] (-1 where not supplied) and the masks [V,1,H,W] of the pixels the
    photo supplies (module docstring). ``tolerance``: how far (world units; the head box is 1 wide)
    a lifted point may lie from the surface the photo sees and still count as seen."""
    res, n = photo.shape[-1], labels.shape[0] - 1
    origins, directions = camera_rays(labels.float(), res)
    dst = origins[1:, None] + directions[1:] * depth[1:].flatten(2).transpose(1, 2)  # [V,M,3] lifted pixels
    uv = _project(dst, labels[:1].float().expand(n, -1))
    seen_depth = _sample(depth[:1], uv, res).flatten(1)
    rays_in = dst - origins[:1, None]
    visible = (rays_in.norm(dim=-1) - seen_depth).abs() < tolerance  # no other surface in front of it
    inside = ((uv >= 0) & (uv <= 1)).all(-1)
    on_surface = ((_sample(opacity[:1], uv, res).flatten(1) >= SURFACE_OPACITY)
                  & (opacity[1:].flatten(1) >= SURFACE_OPACITY))
    facing = (_normals(dst, res) * F.normalize(rays_in, dim=-1)).sum(-1).abs() >= MIN_FACING
    weight = (visible & inside & on_surface & facing).float().reshape(n, 1, res, res)
    if mask is not None:
        weight = weight * (_sample(mask.to(weight), uv, res) >= 0.5).float()
    weight = -F.max_pool2d(-weight, 3, 1, 1)  # one pixel in from every edge of the region
    return _sample(photo.to(weight), uv, res) * weight - (1 - weight), weight


def warp_photo(G, ws: torch.Tensor, photo: torch.Tensor, mask: torch.Tensor | None, label: torch.Tensor,
               targets: torch.Tensor, render_overrides: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`warp` through the surface of the latent ``ws``, rendered by ``G`` at the photo's
    camera ``label`` [1,25] and at ``targets`` [V,25] (the depth and opacity brought to the
    photo's size)."""
    labels = torch.cat([label, targets]).to(ws.device)
    with torch.no_grad():
        out = G.synthesis(ws, labels, noise_mode="const", deterministic=True, render_overrides=render_overrides)
    size = photo.shape[-2:]
    depth, opacity = (F.interpolate(out[k].float(), size=size, mode="bilinear", align_corners=False)
                      for k in ("image_depth", "image_mask"))
    return warp(photo, mask, depth, opacity.clamp(0, 1), labels)


def side_views(G, ws: torch.Tensor, front: TargetView, mask: torch.Tensor | None, degrees: float, weight: float,
               render_overrides: dict | None = None) -> list[TargetView]:
    """The photo warped to its camera turned by +-``degrees`` (module docstring): two views
    sharing ``weight``, taking turns."""
    turns = (degrees, -degrees)
    labels = torch.cat([yaw_rotated(front.label, math.radians(a)) for a in turns])
    images, masks = warp_photo(G, ws, front.image, mask, front.label, labels, render_overrides)
    return [TargetView(f"side{a:+g}", images[i:i + 1], labels[i:i + 1], weight / len(turns), masks[i:i + 1],
                       "side", cycle=SIDE_CYCLE) for i, a in enumerate(turns)]
