"""A small triangle rasteriser in PyTorch: coverage, z-buffer, barycentrics, perspective-correct
interpolation and textured rendering through the generator's cameras.

Texture baking uses it twice: in texture space (which surface point every texel holds) and in each
view (the mesh's own depth, for visibility). The mesh-quality benchmark and the docs pictures render
textured meshes with it. Everything is vectorised over triangles (each triangle's pixel bounding box
is enumerated), so it runs on the CPU or the GPU the tensors live on.

Pixel convention: pixel (row i, column j) has its centre at (x, y) = (j + 0.5, i + 0.5), the
generator's ray sampler's convention (a normalised image coordinate u maps to x = u * width).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..camera import split_label

_EMPTY = torch.iinfo(torch.int64).max
NEAR = 1e-4  # triangles with a vertex closer to the camera plane than this are dropped
FRONT_FACING = -1  # screen-area sign of outward-wound faces seen from outside (y down flips it)


@dataclass
class Fragments:
    """What a rasterisation found per pixel: ``face`` [H,W] (-1 where empty) and the screen-space
    barycentric coordinates ``bary`` [H,W,3] of the pixel centre in that face (0 where empty)."""
    face: torch.Tensor
    bary: torch.Tensor

    @property
    def covered(self) -> torch.Tensor:
        return self.face >= 0


def _planes(tri: torch.Tensor, origin: torch.Tensor, inv_z: torch.Tensor | None) -> torch.Tensor:
    """Per triangle, coefficients [F,k,3] of the planes (a, b, c) with value a*x + b*y + c at pixel
    position (x, y) relative to ``origin`` [F,2]: barycentrics w0, w1 and, given per-vertex
    ``inv_z`` [F,3], 1/z (linear in screen space). Relative to a corner of the triangle's box the
    numbers stay small, so float32 is exact enough for any image size."""
    t = tri - origin[:, None]
    x0, y0, x1, y1, x2, y2 = t[:, 0, 0], t[:, 0, 1], t[:, 1, 0], t[:, 1, 1], t[:, 2, 0], t[:, 2, 1]
    area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
    # w0 = edge(p1, p2, p) / area, w1 = edge(p2, p0, p) / area, each linear in p
    a0, b0 = (y1 - y2) / area, (x2 - x1) / area
    c0 = -(a0 * x1 + b0 * y1)
    a1, b1 = (y2 - y0) / area, (x0 - x2) / area
    c1 = -(a1 * x2 + b1 * y2)
    planes = [a0, b0, c0, a1, b1, c1]
    if inv_z is not None:
        # 1/z = q0*w0 + q1*w1 + q2*(1 - w0 - w1)
        d0, d1, q2 = inv_z[:, 0] - inv_z[:, 2], inv_z[:, 1] - inv_z[:, 2], inv_z[:, 2]
        planes += [d0 * a0 + d1 * a1, d0 * b0 + d1 * b1, d0 * c0 + d1 * c1 + q2]
    return torch.stack(planes, 1).reshape(len(tri), -1, 3), area


def rasterize(xy: torch.Tensor, faces: torch.Tensor, size: tuple[int, int], depth: torch.Tensor | None = None,
              area_sign: int | None = None, max_candidates: int = 1 << 23) -> Fragments:
    """Rasterise triangles given by vertex pixel positions ``xy`` [V,2] (x = column, y = row).

    With ``depth`` [V] (camera z, > 0) the nearest triangle wins each pixel (z interpolated
    perspective-correctly); triangles with a vertex at z <= NEAR are dropped. Without it (a UV
    atlas, where triangles do not overlap) the triangle of lowest index among those covering a
    pixel wins. A pixel is covered when its centre lies inside or on the edge of a triangle;
    degenerate triangles cover nothing. ``area_sign`` = +1 or -1 keeps only the triangles whose
    signed screen area (x right, y down) has that sign: FRONT_FACING for the faces of an
    outward-wound mesh that face the camera. ``max_candidates`` bounds the pixels tested
    at once.
    """
    h, w = size
    dev = xy.device
    faces = faces.long()
    tri = xy.float()[faces]                                            # [F,3,2]
    lo = torch.ceil(tri.min(1).values - 0.5)
    hi = torch.floor(tri.max(1).values - 0.5)
    lo[:, 0].clamp_(min=0)
    lo[:, 1].clamp_(min=0)
    hi[:, 0].clamp_(max=w - 1)
    hi[:, 1].clamp_(max=h - 1)
    nx = (hi[:, 0] - lo[:, 0] + 1).clamp(min=0).long()
    ny = (hi[:, 1] - lo[:, 1] + 1).clamp(min=0).long()
    inv_z = None
    keep = torch.ones(len(faces), dtype=torch.bool, device=dev)
    if depth is not None:
        zf = depth.float()[faces]
        keep &= (zf > NEAR).all(1)
        inv_z = 1 / zf.clamp_min(NEAR)
    planes, area = _planes(tri, lo, inv_z)
    keep &= area.abs() > 1e-10
    if area_sign is not None:
        keep &= area * area_sign > 0
    count = torch.where(keep, nx * ny, torch.zeros_like(nx))
    ids = torch.nonzero(count, as_tuple=True)[0]
    buffer = torch.full((h * w,), _EMPTY, dtype=torch.int64, device=dev)
    if len(ids):
        cum = torch.cumsum(count[ids], 0)
        start = 0
        while start < len(ids):
            # faces [start, end) hold at most max_candidates pixels (at least one face per chunk)
            base = int(cum[start - 1]) if start else 0
            end = max(int(torch.searchsorted(cum, base + max_candidates, right=True)), start + 1)
            _scatter_chunk(ids[start:end], count, lo, nx, planes, w, buffer)
            start = end
    covered = buffer != _EMPTY
    face = torch.full((h * w,), -1, dtype=torch.int64, device=dev)
    face[covered] = buffer[covered] & 0xFFFFFFFF
    bary = torch.zeros(h * w, 3, dtype=torch.float32, device=dev)
    pix = torch.nonzero(covered, as_tuple=True)[0]
    if len(pix):
        f = face[pix]
        px = (pix % w).float() + 0.5 - lo[f, 0]
        py = torch.div(pix, w, rounding_mode="floor").float() + 0.5 - lo[f, 1]
        pl = planes[f]
        w0 = pl[:, 0, 0] * px + pl[:, 0, 1] * py + pl[:, 0, 2]
        w1 = pl[:, 1, 0] * px + pl[:, 1, 1] * py + pl[:, 1, 2]
        bary[pix] = torch.stack((w0, w1, 1 - w0 - w1), -1)
    return Fragments(face.reshape(h, w), bary.reshape(h, w, 3))


def _scatter_chunk(fids, count, lo, nx, planes, w, buffer):
    dev = fids.device
    n = count[fids]
    owner = torch.repeat_interleave(fids, n)
    first = torch.cumsum(n, 0) - n
    local = torch.arange(int(n.sum()), device=dev) - torch.repeat_interleave(first, n)
    nxo = nx[owner]
    ix = local % nxo
    iy = torch.div(local, nxo, rounding_mode="floor")
    px, py = ix.float() + 0.5, iy.float() + 0.5
    pl = planes[owner]
    w0 = pl[:, 0, 0] * px + pl[:, 0, 1] * py + pl[:, 0, 2]
    w1 = pl[:, 1, 0] * px + pl[:, 1, 1] * py + pl[:, 1, 2]
    tol = -1e-6
    inside = (w0 >= tol) & (w1 >= tol) & (1 - w0 - w1 >= tol)
    pix = (iy + lo[owner, 1].long()) * w + ix + lo[owner, 0].long()
    if pl.shape[1] == 2:
        buffer.scatter_reduce_(0, pix[inside], owner[inside], "amin")
        return
    z = 1 / (pl[:, 2, 0] * px + pl[:, 2, 1] * py + pl[:, 2, 2])
    # positive float32 bits order like the floats: depth in the high word, face id in the low word
    key = (z.view(torch.int32).long() << 32) | owner
    buffer.scatter_reduce_(0, pix[inside], key[inside], "amin")


def perspective_bary(frags: Fragments, faces: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """Screen-space barycentrics -> barycentrics of the 3D triangle (perspective-correct), [H,W,3]."""
    out = torch.zeros_like(frags.bary)
    m = frags.covered
    zf = depth.float()[faces.long()[frags.face[m]]]                   # [M,3]
    b = frags.bary[m] / zf
    out[m] = b / b.sum(-1, keepdim=True)
    return out


def interpolate(values: torch.Tensor, faces: torch.Tensor, frags: Fragments, bary: torch.Tensor | None = None) -> torch.Tensor:
    """Per-vertex ``values`` [V,C] at every covered pixel -> [H,W,C] (0 where empty). ``bary``
    defaults to the fragments' own (screen-space: right for UV space and orthographic views)."""
    bary = frags.bary if bary is None else bary
    out = torch.zeros(*frags.face.shape, values.shape[-1], dtype=values.dtype, device=values.device)
    m = frags.covered
    tri = values[faces.long()[frags.face[m]]]                          # [M,3,C]
    out[m] = (bary[m].to(values.dtype).unsqueeze(-1) * tri).sum(1)
    return out


@dataclass
class Camera:
    """A pinhole camera from a 25-number label: world-to-pixel projection at ``size`` = (H, W)."""
    cam2world: torch.Tensor  # [4,4] OpenCV axes (x right, y down, z forward)
    intrinsics: torch.Tensor  # [3,3] normalised by the image size
    size: tuple[int, int]

    @classmethod
    def from_label(cls, label: torch.Tensor, size: int | tuple[int, int]) -> "Camera":
        c2w, k = split_label(label.detach().float().reshape(1, -1)[:, :25])
        size = (size, size) if isinstance(size, int) else tuple(size)
        return cls(c2w[0], k[0], size)

    @property
    def origin(self) -> torch.Tensor:
        return self.cam2world[:3, 3]

    def to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """World points [N,3] -> camera coordinates [N,3] (z = depth along the optical axis)."""
        r = self.cam2world[:3, :3].to(points)
        return (points - self.cam2world[:3, 3].to(points)) @ r

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points [N,3] -> (pixel positions [N,2] as (x, y), camera z [N])."""
        cam = self.to_camera(points)
        k = self.intrinsics.to(points)
        z = cam[:, 2]
        zs = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
        u = k[0, 0] * cam[:, 0] / zs + k[0, 1] * cam[:, 1] / zs + k[0, 2]
        v = k[1, 1] * cam[:, 1] / zs + k[1, 2]
        h, w = self.size
        return torch.stack((u * w, v * h), -1), z


def rasterize_view(vertices: torch.Tensor, faces: torch.Tensor, camera: Camera,
                   closed: bool = False) -> tuple[Fragments, torch.Tensor]:
    """Rasterise a mesh through a camera: (fragments, perspective-correct barycentrics [H,W,3]).
    ``closed``: the mesh is closed and wound outward, so faces turned away are skipped (they are
    always hidden)."""
    xy, z = camera.project(vertices)
    frags = rasterize(xy, faces, camera.size, depth=z, area_sign=FRONT_FACING if closed else None)
    return frags, perspective_bary(frags, faces, z)


def sample_texture(texture: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup of ``texture`` [C,H,W] at ``uv`` [...,2] (u right, v down, [0,1] over the
    whole image, texel centres at (i + 0.5) / size) -> [...,C]."""
    grid = (uv.reshape(1, 1, -1, 2) * 2 - 1).to(texture.dtype)
    out = F.grid_sample(texture[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0].T.reshape(*uv.shape[:-1], texture.shape[0])


def render_mesh(vertices: torch.Tensor, faces: torch.Tensor, camera: Camera, *, uv: torch.Tensor | None = None,
                texture: torch.Tensor | None = None, colors: torch.Tensor | None = None,
                background: torch.Tensor | float = 0.0, supersample: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Unlit render of a mesh over ``background`` (a value or an image [C,H,W]): (image [C,H,W],
    coverage [1,H,W] in [0,1]).

    Colour comes from ``texture`` [C,Ht,Wt] at per-vertex ``uv`` [V,2], or from per-vertex
    ``colors`` [V,C]. Rendered at ``supersample``² samples per pixel and box-filtered, so edges are
    anti-aliased like the generator's renders.
    """
    if (texture is None) == (colors is None) or (texture is not None and uv is None):
        raise ValueError("render_mesh needs either uv + texture or colors")
    h, w = camera.size
    big = Camera(camera.cam2world, camera.intrinsics, (h * supersample, w * supersample))
    frags, bary = rasterize_view(vertices, faces, big)
    if texture is not None:
        img = sample_texture(texture.float(), interpolate(uv.float(), faces, frags, bary))
    else:
        img = interpolate(colors.float(), faces, frags, bary)
    cov = frags.covered.float().unsqueeze(-1)
    img = (img * cov).permute(2, 0, 1)[None]
    cov = cov.permute(2, 0, 1)[None]
    if supersample > 1:
        img = F.avg_pool2d(img, supersample)
        cov = F.avg_pool2d(cov, supersample)
    return img[0] + (1 - cov[0]) * torch.as_tensor(background, dtype=img.dtype, device=img.device), cov[0]
