"""The canonical face mesh turned into a height field texture (front-facing, in mesh cm).

The MediaPipe face mesh is almost a height field z = h(x, y) seen from the front, so it is
rasterised once into a small grid: the face SDF is then ``(z - h(x, y)) / |grad|`` inside a
slab, sampled with one ``grid_sample`` for every point of every head at once. Holes (eyes,
mouth) and the outside of the face oval fall off steeply, which carves the eye sockets. The
channels the SDF reads come first, so the tracer samples only those (``SDF_CHANNELS``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy import ndimage

ASSET = Path(__file__).resolve().parents[1] / "assets" / "face_mesh_canonical.npz"
EXTENT = 10.5  # the texture covers x, y in [-EXTENT, EXTENT] cm
TEX = 224
FALLOFF = 1.6  # cm of depth lost per cm outside the mesh
CHANNELS = ("height", "nose", "lips", "brows", "gradnorm", "oval_sd", "oval", "lipline", "eyes")
SDF_CHANNELS = 6  # height .. oval_sd: all the distance needs; the rest only colour the surface


@dataclass(frozen=True)
class FaceGeometry:
    texture: np.ndarray  # [C, TEX, TEX], row 0 = top (+y)
    eye_left: np.ndarray  # eye centres (mesh cm) on the lid line
    eye_right: np.ndarray
    eye_radius: float  # half eye width, cm


def _grid_xy():
    c = (np.arange(TEX) + 0.5) / TEX * 2 * EXTENT - EXTENT
    return np.meshgrid(c, -c)  # x right, y up (row 0 at +y)


def _to_px(xy):
    return ((xy[:, 0] + EXTENT) / (2 * EXTENT) * TEX - 0.5, (EXTENT - xy[:, 1]) / (2 * EXTENT) * TEX - 0.5)


def _rasterise(v: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Front-most z of the mesh at each texel centre; NaN where no triangle covers it."""
    gx, gy = _grid_xy()
    h = np.full((TEX, TEX), -np.inf)
    px, py = _to_px(v[:, :2])
    for a, b, c in tri:
        x0, x1 = int(np.floor(min(px[a], px[b], px[c]))), int(np.ceil(max(px[a], px[b], px[c])))
        y0, y1 = int(np.floor(min(py[a], py[b], py[c]))), int(np.ceil(max(py[a], py[b], py[c])))
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, TEX - 1), min(y1, TEX - 1)
        if x1 < x0 or y1 < y0:
            continue
        X, Y = gx[y0:y1 + 1, x0:x1 + 1], gy[y0:y1 + 1, x0:x1 + 1]
        (ax, ay, az), (bx, by, bz), (cx, cy, cz) = v[a], v[b], v[c]
        den = (by - cy) * (ax - cx) + (cx - bx) * (ay - cy)
        if abs(den) < 1e-9:
            continue
        w0 = ((by - cy) * (X - cx) + (cx - bx) * (Y - cy)) / den
        w1 = ((cy - ay) * (X - cx) + (ax - cx) * (Y - cy)) / den
        w2 = 1 - w0 - w1
        inside = (w0 >= -1e-4) & (w1 >= -1e-4) & (w2 >= -1e-4)
        z = w0 * az + w1 * bz + w2 * cz
        sub = h[y0:y1 + 1, x0:x1 + 1]
        np.maximum(sub, np.where(inside, z, -np.inf), out=sub)
    return np.where(np.isfinite(h), h, np.nan)


def _polygon_mask(v: np.ndarray, loop: np.ndarray, blur: float = 1.0) -> np.ndarray:
    px, py = _to_px(v[loop, :2])
    img = Image.new("L", (TEX, TEX), 0)
    ImageDraw.Draw(img).polygon(list(zip(px.tolist(), py.tolist())), fill=255)
    mask = np.asarray(img, np.float32) / 255.0
    return ndimage.gaussian_filter(mask, blur) if blur > 0 else mask


@lru_cache(maxsize=1)
def face_geometry() -> FaceGeometry:
    d = np.load(ASSET)
    v, tri = d["vertices"].astype(np.float64), d["triangles"]
    h = _rasterise(v, tri)
    covered = np.isfinite(h)
    dist, (iy, ix) = ndimage.distance_transform_edt(~covered, return_indices=True)
    texel = 2 * EXTENT / TEX
    height = np.where(covered, h, h[iy, ix] - FALLOFF * dist * texel)
    eyes = np.maximum(_polygon_mask(v, d["loop_eye_left"], 0.7), _polygon_mask(v, d["loop_eye_right"], 0.7))
    height = ndimage.gaussian_filter(height, 0.6) - 0.45 * eyes  # open the lids: eyeballs show through
    smooth = ndimage.gaussian_filter(height, 6.0)
    nose_region = _polygon_mask(v, _hull(v, d["nose_vertices"]), blur=3.0)
    nose = (height - smooth).clip(0, None) * nose_region
    lips = (_polygon_mask(v, d["loop_lips_outer"], 0.8) - 0.8 * _polygon_mask(v, d["loop_lips_inner"], 0.5)).clip(0, 1)
    lipline = _polygon_mask(v, d["loop_lips_inner"], 0.7)
    brows = np.maximum(_polygon_mask(v, d["loop_brow_left"], 1.2), _polygon_mask(v, d["loop_brow_right"], 1.2))
    oval = _polygon_mask(v, d["loop_oval"], 2.0)
    hard = _polygon_mask(v, d["loop_oval"], 0.0) > 0.5
    oval_sd = (ndimage.distance_transform_edt(~hard) - ndimage.distance_transform_edt(hard)) * texel
    gy, gx = np.gradient(height, texel)
    gradnorm = np.sqrt(1 + gx ** 2 + gy ** 2)
    channels = dict(height=height, nose=nose, lips=lips, brows=brows, gradnorm=gradnorm, oval_sd=oval_sd, oval=oval,
                    lipline=lipline, eyes=eyes)
    tex = np.stack([channels[c] for c in CHANNELS]).astype(np.float32)
    eyes = []
    for key in ("loop_eye_left", "loop_eye_right"):
        p = v[d[key]]
        eyes.append(p.mean(0))
    width = float(np.ptp(v[d["loop_eye_left"], 0]))
    return FaceGeometry(tex, eyes[0].astype(np.float32), eyes[1].astype(np.float32), width / 2)


def _hull(v: np.ndarray, idx: np.ndarray) -> np.ndarray:
    from scipy.spatial import ConvexHull

    return idx[ConvexHull(v[idx, :2]).vertices]


@lru_cache(maxsize=16)
def face_texture(device: str, channels: int = len(CHANNELS)) -> torch.Tensor:
    """[1, channels, TEX, TEX] float32 texture (the first ``channels`` of CHANNELS) on ``device``, cached."""
    return torch.from_numpy(face_geometry().texture[:channels].copy()).unsqueeze(0).to(device)


def sample_face(qx: torch.Tensor, qy: torch.Tensor, channels: int = len(CHANNELS)) -> torch.Tensor:
    """Texture channels at face-local points (cm), qx, qy [M]: returns [channels, M] (border-clamped)."""
    tex = face_texture(str(qx.device), channels)
    grid = torch.empty(1, qx.shape[0], 1, 2, dtype=tex.dtype, device=qx.device)
    torch.mul(qx, 1.0 / EXTENT, out=grid[0, :, 0, 0])
    torch.mul(qy, -1.0 / EXTENT, out=grid[0, :, 0, 1])
    out = torch.nn.functional.grid_sample(tex, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.view(channels, -1)
