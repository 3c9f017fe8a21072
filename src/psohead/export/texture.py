"""UV atlas (xatlas) and texture baking from the generator's super-resolved renders.

Baking: every texel of the atlas is a point on the mesh (rasterised in texture space). Each bake
view is rendered by the generator (its final ``image``) and the mesh is rasterised through the same
camera; a texel takes colour from a view where it is the nearest surface (mesh z-buffer), where the
network's own rendered depth agrees that the surface is there, and where the render is opaque,
weighted by how squarely the view sees it (cos^k of the angle to the normal). Texels that no view
sees keep the colour of the feature field (the vertex colours). Optionally the input photo replaces
the colour where it sees the surface squarely, feathered into the rest. Gutters between charts are
filled by pull-push so bilinear lookups and mipmaps never reach black.

UV convention: u to the right, v down the image (row = v * size), texel centres at
(i + 0.5) / size: glTF's convention; OBJ files store 1 - v.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..camera import HEAD_LOOKAT, RADIUS, apply_offset, label_from_yaw_pitch
from .raster import Camera, interpolate, perspective_bary, rasterize, rasterize_view, sample_texture

# Bake cameras: rings of (pitch in degrees, share of the level ring's yaws, weight). Chosen by
# measurement (docs/export.md): the level ring does the face, sides and back; rings above and below,
# within the pitches generators are trained on, add the top of the head and under the chin. They get
# a low weight because the networks' colours agree less across pitch than across yaw.
BAKE_RINGS = ((0.0, 1.0, 1.0), (25.0, 1 / 3, 0.3), (-20.0, 1 / 3, 0.3))
# Weight of a view on a texel: cos(angle to the normal) ** ANGLE_POWER. Blending several views
# averages out the renders' view-dependent detail; more selective weights scored lower.
ANGLE_POWER = 2.0
# A view's colour is used only where the network's rendered depth (ray distance) lies within this
# many world units of the mesh (about 2 cm on a real head): elsewhere the render shows another surface.
DEPTH_TOLERANCE = 0.05
# Xatlas charts whose boundary is longer than this (world units; the head is about 0.4 across) are
# split: large charts cost xatlas seconds of CPU to parametrise, and small ones pack well enough.
MAX_CHART_BOUNDARY = 0.6
PADDING_TEXELS = 2  # empty texels xatlas keeps between charts (filled by pull-push)


@dataclass
class Atlas:
    """A mesh split along chart seams with one UV per vertex.

    ``vertices`` [V,3] float32, ``faces`` [F,3] int64, ``uv`` [V,2] float32 in [0,1] (u right,
    v down), ``source`` [V] int64: the input vertex each one copies (for normals and colours)."""
    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    source: np.ndarray
    charts: int
    utilization: float


def unwrap(vertices: np.ndarray, faces: np.ndarray, size: int, max_chart_boundary: float = MAX_CHART_BOUNDARY,
           padding: int = PADDING_TEXELS) -> Atlas:
    """UV atlas of a triangle mesh with xatlas, packed for a ``size``² texture."""
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(np.ascontiguousarray(vertices, np.float32), np.ascontiguousarray(faces, np.uint32))
    charts = xatlas.ChartOptions()
    charts.max_boundary_length = max_chart_boundary
    pack = xatlas.PackOptions()
    pack.resolution = size
    pack.padding = padding
    pack.bilinear = True
    pack.blockAlign = True
    atlas.generate(charts, pack)
    source, new_faces, uv = atlas[0]
    source = source.astype(np.int64)
    return Atlas(np.asarray(vertices, np.float32)[source], new_faces.astype(np.int64), uv.astype(np.float32),
                 source, int(atlas.chart_count), float(atlas.utilization))


@dataclass
class TexelMap:
    """The surface point under every covered texel: ``index`` [N] flat texel indices (row-major),
    ``points`` [N,3] and unit ``normals`` [N,3] (world), ``face`` [N] and ``bary`` [N,3]."""
    size: int
    index: torch.Tensor
    points: torch.Tensor
    normals: torch.Tensor
    face: torch.Tensor
    bary: torch.Tensor


def texel_map(atlas: Atlas, normals: np.ndarray, size: int, device) -> TexelMap:
    """Rasterise the atlas in texture space; ``normals`` are per input vertex."""
    uv = torch.from_numpy(atlas.uv).to(device)
    faces = torch.from_numpy(atlas.faces).to(device)
    frags = rasterize(uv * size, faces, (size, size))
    verts = torch.from_numpy(atlas.vertices).to(device)
    nrm = torch.from_numpy(np.asarray(normals, np.float32)[atlas.source]).to(device)
    m = frags.covered.reshape(-1)
    index = torch.nonzero(m, as_tuple=True)[0]
    face = frags.face.reshape(-1)[index]
    bary = frags.bary.reshape(-1, 3)[index]
    tri = faces[face]
    points = (bary.unsqueeze(-1) * verts[tri]).sum(1)
    n = F.normalize((bary.unsqueeze(-1) * nrm[tri]).sum(1), dim=-1)
    return TexelMap(size, index, points, n, face, bary)


def bake_views(views: int, rings: Sequence[tuple[float, float, float]] = BAKE_RINGS,
               delta=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cameras of the bake views: (labels [K,25], weights [K]) for ``views`` yaws on the level ring
    (from the face) and the other rings' shares of that; orbit cameras looking at the head centre,
    shifted by the camera offset ``delta`` [1,3] if given."""
    labels, weights = [], []
    for pitch, share, weight in rings:
        n = max(1, round(views * share))
        yaws = torch.arange(n, dtype=torch.float32) * (2 * math.pi / n)
        labels.append(label_from_yaw_pitch(yaws, math.radians(pitch), radius=RADIUS, lookat=HEAD_LOOKAT))
        weights.append(torch.full((n,), weight))
    labels = torch.cat(labels)
    if delta is not None:
        labels = apply_offset(labels, torch.as_tensor(delta).reshape(1, 3).cpu())
    return labels, torch.cat(weights)


def _zbuffer(vertices: torch.Tensor, faces: torch.Tensor, cam: Camera) -> torch.Tensor:
    """Nearest mesh depth (camera z) per pixel [H,W], +inf where empty, eroded by one pixel so
    texels just behind an occluding edge count as hidden."""
    frags, bary = rasterize_view(vertices, faces, cam, closed=True)
    z = cam.to_camera(vertices)[:, 2:3]
    depth = interpolate(z, faces, frags, bary)[..., 0]
    depth = torch.where(frags.covered, depth, torch.full_like(depth, float("inf")))
    return -F.max_pool2d(-depth[None, None], 3, stride=1, padding=1)[0, 0]


def _lookup(image: torch.Tensor, xy: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Sample image [C,h,w] at pixel positions ``xy`` [N,2] given for an image of ``size`` (H, W)
    (the same normalised position, whatever the image's own resolution) -> [N,C]."""
    h, w = size
    grid = torch.stack((xy[:, 0] / w * 2 - 1, xy[:, 1] / h * 2 - 1), -1).reshape(1, 1, -1, 2)
    out = F.grid_sample(image[None].float(), grid.float(), mode=mode, padding_mode="border", align_corners=False)
    return out[0, :, 0].T


def _depth_agrees(depth: torch.Tensor, xy: torch.Tensor, size: tuple[int, int], dist: torch.Tensor,
                  tolerance: float) -> torch.Tensor:
    """Whether any of the four depth pixels around each position lies within ``tolerance`` of
    ``dist`` (one is enough: at a silhouette the others show the background)."""
    h, w = size
    dh, dw = depth.shape[-2:]
    ok = torch.zeros(len(dist), dtype=torch.bool, device=dist.device)
    for ox in (-0.5, 0.5):
        for oy in (-0.5, 0.5):
            shifted = torch.stack((xy[:, 0] + ox * w / dw, xy[:, 1] + oy * h / dh), -1)
            ok |= (_lookup(depth, shifted, size, mode="nearest")[:, 0] - dist).abs() < tolerance
    return ok


@dataclass
class ViewSample:
    """What one view says about the texels: ``weight`` [N] (0 = not seen) and ``color`` [N,3] in [-1,1]."""
    weight: torch.Tensor
    color: torch.Tensor


def sample_view(texels: TexelMap, vertices: torch.Tensor, faces: torch.Tensor, label: torch.Tensor,
                image: torch.Tensor, depth: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                angle_power: float = ANGLE_POWER, depth_tolerance: float = DEPTH_TOLERANCE) -> ViewSample:
    """Colour and weight of every texel seen in ``image`` [3,H,W] taken by camera ``label``.

    Visibility is the mesh's own z-buffer at the image's resolution (within 1.5 % of the depth).
    ``depth`` [1,h,w] (the network's rendered ray distance, any resolution) rejects texels whose
    surface the render puts elsewhere (more than ``depth_tolerance`` world units away: hair the
    mesh does not have, soft edges); ``mask`` [1,h,w] (render opacity) weights out the background.
    """
    size = tuple(image.shape[-2:])
    cam = Camera.from_label(label, size)
    n = len(texels.index)
    weight = torch.zeros(n, device=texels.points.device)
    color = torch.zeros(n, image.shape[0], device=texels.points.device)
    to_cam = cam.origin.to(texels.points) - texels.points
    dist = to_cam.norm(dim=-1)
    cos = (texels.normals * to_cam).sum(-1) / dist.clamp_min(1e-8)
    sel = torch.nonzero(cos > 1e-3, as_tuple=True)[0]  # the rest faces away: weight 0
    if len(sel) == 0:
        return ViewSample(weight, color)
    zbuf = _zbuffer(vertices, faces, cam)
    xy, z = cam.project(texels.points[sel])
    h, w = size
    px = xy[:, 0].long().clamp(0, w - 1)
    py = xy[:, 1].long().clamp(0, h - 1)
    inside = (z > 0) & (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    wt = cos[sel] ** angle_power * (inside & (z <= zbuf[py, px] * 1.015))
    if depth is not None:
        wt = wt * _depth_agrees(depth, xy, size, dist[sel], depth_tolerance)
    if mask is not None:
        wt = wt * _lookup(mask, xy, size)[:, 0].clamp(0, 1)
    weight[sel] = wt
    color[sel] = _lookup(image, xy, size)
    return ViewSample(weight, color)


def photo_weight(texels: TexelMap, vertices: torch.Tensor, faces: torch.Tensor, label: torch.Tensor,
                 size: tuple[int, int], full: float = 0.6, none: float = 0.3, feather: float = 0.04) -> torch.Tensor:
    """Blend weight [N] of a photo taken by camera ``label``: 1 where it sees the surface within
    acos(``full``) of the normal, falling to 0 at acos(``none``) and within ``feather`` (fraction of
    the image) of the mesh's silhouette in the photo, where a crop's background lies close."""
    from scipy import ndimage

    sample = sample_view(texels, vertices, faces, label, torch.zeros(1, *size, device=texels.points.device),
                         angle_power=1.0)
    cos = sample.weight  # cos of the angle where visible, 0 elsewhere
    w = ((cos - none) / (full - none)).clamp(0, 1)
    w = w * w * (3 - 2 * w)  # smoothstep
    cam = Camera.from_label(label, size)
    frags, _ = rasterize_view(vertices, faces, cam, closed=True)
    # distance in pixels from each pixel of the mesh's silhouette to the nearest pixel outside it
    dist = ndimage.distance_transform_edt(frags.covered.cpu().numpy())
    dist = torch.from_numpy(dist.astype(np.float32)).to(texels.points.device)
    radius = max(1.0, feather * max(size))
    xy, _ = cam.project(texels.points)
    edge = _lookup(dist[None], xy, size, mode="nearest")[:, 0] / radius
    return w * edge.clamp(0, 1)


def pull_push(texture: torch.Tensor, filled: torch.Tensor) -> torch.Tensor:
    """Fill empty texels of ``texture`` [C,S,S] (``filled`` [S,S] bool) from ever coarser averages of
    the filled ones, so gutters and unseen texels take the colour of their surroundings."""
    levels = [(texture * filled, filled.float())]
    while levels[-1][1].shape[-1] > 1:
        c, w = levels[-1]
        levels.append((F.avg_pool2d(c[None], 2, ceil_mode=True)[0], F.avg_pool2d(w[None, None], 2, ceil_mode=True)[0, 0]))
    c, w = levels[-1]
    colour = c / w.clamp_min(1e-8)
    for c, w in reversed(levels[:-1]):
        up = F.interpolate(colour[None], size=w.shape, mode="bilinear", align_corners=False)[0]
        have = w > 0
        colour = torch.where(have, c / w.clamp_min(1e-8), up)
    return torch.where(filled, texture, colour)


def bake_texture(texels: TexelMap, atlas: Atlas, renders: Callable, labels: torch.Tensor, fallback: np.ndarray,
                 photo: tuple[torch.Tensor, torch.Tensor] | None = None, angle_power: float = ANGLE_POWER,
                 view_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Texture [3,S,S] float in [0,1] of the atlas from the views, plus statistics.

    ``renders(labels)`` yields, per batch of views in order, (image [B,3,H,W] in [-1,1], depth
    [B,1,h,w], mask [B,1,h,w]); ``labels`` [K,25] are the views' cameras. ``fallback`` [V,3] (per
    input vertex, [0,1]) colours texels no view sees. ``photo`` = (image [3,H,W] in [-1,1], label
    [1,25]) replaces colours where the photo sees the surface squarely.
    """
    dev = texels.points.device
    verts = torch.from_numpy(atlas.vertices).to(dev)
    faces = torch.from_numpy(atlas.faces).to(dev)
    n = len(texels.index)
    acc = torch.zeros(n, 3, device=dev)
    wsum = torch.zeros(n, device=dev)
    done = 0
    for images, depths, masks in renders(labels):
        for j in range(images.shape[0]):
            s = sample_view(texels, verts, faces, labels[done + j], images[j], depths[j], masks[j], angle_power)
            wv = s.weight if view_weights is None else s.weight * float(view_weights[done + j])
            acc += wv[:, None] * s.color
            wsum += wv
        done += images.shape[0]
    fb = torch.from_numpy(np.asarray(fallback, np.float32)[atlas.source]).to(dev)
    fb = (fb[faces[texels.face]] * texels.bary.unsqueeze(-1)).sum(1) * 2 - 1
    eps = 1e-6  # the fallback's weight: it colours texels no view sees and nothing else
    colour = (acc + eps * fb) / (wsum + eps)[:, None]
    stats = {"texels": int(n), "texels_unseen": int((wsum < eps).sum())}
    if photo is not None:
        image, label = photo
        image = image.to(dev)
        wp = photo_weight(texels, verts, faces, label, tuple(image.shape[-2:]))
        pc = _lookup(image, Camera.from_label(label, tuple(image.shape[-2:])).project(texels.points)[0],
                     tuple(image.shape[-2:]))
        colour = colour * (1 - wp[:, None]) + pc * wp[:, None]
        stats["texels_from_photo"] = float(wp.sum())
    size = texels.size
    tex = torch.zeros(3, size * size, device=dev)
    tex[:, texels.index] = ((colour + 1) / 2).clamp(0, 1).T
    filled = torch.zeros(size * size, dtype=torch.bool, device=dev)
    filled[texels.index] = True
    tex = pull_push(tex.reshape(3, size, size), filled.reshape(size, size))
    return tex, stats
