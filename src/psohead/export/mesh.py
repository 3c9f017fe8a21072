"""Meshes from the generator's density field: sample a grid, marching cubes, colour the vertices.

Coordinates are world units (metres of the generator's world: +y up, face toward +z, +x the
subject's left), so meshes line up with the cameras in :mod:`psohead.camera`. Densities are the
renderer's activated density ``softplus(sigma - 1)`` (spec 1.9), in 1/world-unit.

Iso-level. The official script meshes the *raw* sigma at 10 (= activated density 9.0), a value
tuned to one trained model. ``level='auto'`` (the default) instead picks the density at which the
renderer itself sees the surface: along axis-aligned rays entering the volume from the four sides
and the top, the point where transmittance falls to 1/2 (optical depth ln 2); the level is the
median density found at those points. For any network this puts the mesh where renders put the
silhouette and depth, whatever the absolute density scale. See docs/export.md for measurements.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import InputError, PsoheadError
from ..atomic import atomic_path

RENDER_CROP = 0.1          # renderer's triplane_crop: |x|, |z| > box/2 - 0.1 are empty (spec 1.9)
OFFICIAL_RAW_LEVEL = 10.0  # official shape_utils iso-level on raw sigma
MESH_FORMATS = (".ply", ".obj", ".glb")
MAX_GRID_RESOLUTION = 1024  # 1024^3 density samples are 4 GiB of float32; more would not fit in memory


class MeshError(PsoheadError):
    """The density field cannot be turned into a mesh (e.g. nothing opaque)."""


def activate(sigma):
    """Renderer density activation: softplus(sigma - 1) (clamp_mode 'softplus')."""
    if isinstance(sigma, torch.Tensor):
        return torch.nn.functional.softplus(sigma - 1)
    x = np.asarray(sigma, dtype=np.float32) - 1
    return np.logaddexp(0, x).astype(np.float32)


@dataclass
class DensityGrid:
    """Raw sigma sampled at voxel centres of a cube of side ``box`` centred at the origin.

    ``sigma[i, j, k]`` is at (x, y, z) = (-box/2 + i*h, -box/2 + j*h, -box/2 + k*h), h = box/(R-1)
    (the official grid, without its float-division shear).
    """
    sigma: np.ndarray
    box: float

    @property
    def resolution(self) -> int:
        return self.sigma.shape[0]

    @property
    def voxel_size(self) -> float:
        return self.box / (self.resolution - 1)

    @property
    def origin(self) -> float:
        return -self.box / 2

    def axis(self) -> np.ndarray:
        return self.origin + np.arange(self.resolution) * self.voxel_size

    def density(self, crop: str = "render") -> np.ndarray:
        """Activated density with the chosen crop zeroed (see :func:`crop_mask`)."""
        d = activate(self.sigma)
        d[~crop_mask(self, crop)] = 0
        return d


def crop_mask(grid: DensityGrid, crop: str = "render") -> np.ndarray:
    """Boolean [R,R,R], True where density is kept.

    'render': what the renderer can ever see (|x|, |z| <= box/2 - 0.1);
    'official': the official border zeroing (spec 6.6: 30/256 of the grid on both sides of x and z
    and below, 38/256 at the top); 'none': keep everything.
    """
    r = grid.resolution
    keep = np.ones((r, r, r), bool)
    if crop == "none":
        return keep
    if crop == "render":
        inside = np.abs(grid.axis()) <= grid.box / 2 - RENDER_CROP + 1e-6
        keep &= inside[:, None, None] & inside[None, None, :]
        return keep
    if crop == "official":
        a, b = int(30 * r / 256), int(38 * r / 256)
        keep[:a] = keep[r - a:] = False
        keep[:, :, :a] = keep[:, :, r - a:] = False
        keep[:, :a] = keep[:, r - b:] = False
        return keep
    raise InputError(f"unknown crop {crop!r}; choose render, official or none")


def _grid_coords(start: int, end: int, r: int, box: float, device) -> torch.Tensor:
    idx = torch.arange(start, end, device=device)
    ijk = torch.stack((idx // (r * r), (idx // r) % r, idx % r), dim=-1).float()
    return ijk * (box / (r - 1)) - box / 2


def _box(G) -> float:
    return float(G.rendering_kwargs["box_warp"])


def point_query(G, ws: torch.Tensor):
    """``f(coords, dirs) -> {'sigma', 'rgb'}`` as ``G.sample_mixed`` with const noise. For psohead
    generators the tri-grid is computed once here instead of once per chunk."""
    if all(hasattr(G, a) for a in ("planes", "decoder", "renderer")):
        planes = G.planes(ws, noise_mode="const")
        return lambda coords, dirs: G.renderer.run_model(planes, G.decoder, coords, dirs, G.rendering_kwargs,
                                                         deterministic=True)
    return lambda coords, dirs: G.sample_mixed(coords, dirs, ws, noise_mode="const")


@torch.no_grad()
def sample_density(G, ws: torch.Tensor, resolution: int = 256, chunk_size: int = 2 ** 20,
                   progress: bool = True) -> DensityGrid:
    """Raw sigma on a resolution^3 grid over the generator's box, via chunked ``G.sample_mixed``."""
    if not 8 <= resolution <= MAX_GRID_RESOLUTION:
        raise InputError(f"mesh resolution must be in 8..{MAX_GRID_RESOLUTION}, got {resolution}")
    ws = ws if ws.ndim == 3 else ws.unsqueeze(0)
    box, r, n = _box(G), resolution, resolution ** 3
    out = np.empty(n, np.float32)
    starts = range(0, n, chunk_size)
    query = point_query(G, ws)
    for start in tqdm(starts, desc="density", unit="chunk", disable=not progress):
        end = min(start + chunk_size, n)
        coords = _grid_coords(start, end, r, box, ws.device).unsqueeze(0)
        dirs = torch.zeros_like(coords)
        dirs[..., 2] = -1  # unused by the decoder; the official script passes (0, 0, -1)
        sigma = query(coords, dirs)["sigma"]
        out[start:end] = sigma.reshape(-1).float().cpu().numpy()
    return DensityGrid(out.reshape(r, r, r), box)


def auto_level(density: np.ndarray, voxel_size: float) -> float:
    """Median activated density at the transmittance-1/2 point of axis rays (module docstring).

    Rays enter from -x, +x, -z, +z and from the top (+y); rays that never reach optical depth
    ln 2 are ignored. Raises MeshError when no ray does (nothing is opaque).
    """
    found = []
    target = math.log(2)
    for axis, from_high in ((0, False), (0, True), (2, False), (2, True), (1, True)):
        d = np.moveaxis(density, axis, -1)
        if from_high:
            d = d[..., ::-1]
        d = d.reshape(-1, d.shape[-1])
        seg = 0.5 * (d[:, :-1] + d[:, 1:]) * voxel_size
        tau = np.concatenate([np.zeros((d.shape[0], 1), np.float32), np.cumsum(seg, axis=1, dtype=np.float32)], 1)
        hit = tau[:, -1] >= target
        if not hit.any():
            continue
        d, tau = d[hit], tau[hit]
        n = np.argmax(tau >= target, axis=1)  # >= 1 because tau[:, 0] = 0
        rows = np.arange(len(n))
        t0, t1 = tau[rows, n - 1], tau[rows, n]
        f = (target - t0) / np.maximum(t1 - t0, 1e-12)
        found.append(d[rows, n - 1] + f * (d[rows, n] - d[rows, n - 1]))
    if not found:
        raise MeshError("density field has no opaque region (no ray reaches 50% opacity); nothing to mesh")
    return float(np.median(np.concatenate(found)))


def marching_cubes(density: np.ndarray, level: float, voxel_size: float, origin: float):
    """Closed surface of ``density >= level`` -> (vertices [V,3] world, faces [F,3]), outward winding.

    The volume is padded with one empty voxel so surfaces touching the box (the neck) close.
    """
    from skimage.measure import marching_cubes as skimage_mc

    if not (density.max() > level):
        raise MeshError(f"no voxel has density above the iso-level {level:.4g}; nothing to mesh")
    padded = np.pad(density, 1)
    # 'ascent' is the option that gives outward normals (positive volume) for dense-inside fields here.
    verts, faces, _, _ = skimage_mc(padded, level=level, spacing=(voxel_size,) * 3, gradient_direction="ascent")
    verts = verts - voxel_size + origin
    return verts.astype(np.float32), faces.astype(np.int64)


@torch.no_grad()
def vertex_colors(G, ws: torch.Tensor, vertices: np.ndarray, chunk_size: int = 2 ** 20) -> np.ndarray:
    """uint8 RGBA [V,4]: decoder features at each vertex turned to RGB as the raw image turns rendered
    features (``G.torgb`` with the last w, or the first three features for networks without one),
    mapped like images (x*127.5 + 128)."""
    ws = ws if ws.ndim == 3 else ws.unsqueeze(0)
    cols = []
    query = point_query(G, ws)
    for start in range(0, len(vertices), chunk_size):
        pts = torch.from_numpy(vertices[start:start + chunk_size]).to(ws.device, ws.dtype).unsqueeze(0)
        feats = query(pts, torch.zeros_like(pts))["rgb"]  # [1,V,32]
        img = feats.permute(0, 2, 1).unsqueeze(-1)  # [1,32,V,1]: a one-pixel-wide feature image
        if getattr(getattr(G, "decoder", None), "activation", None) == "sigmoid":
            img = img * 2 - 1  # as synthesis does before turning features into colours
        if getattr(G, "torgb", None) is not None:
            img = G.torgb(img, ws[:, -1], fused_modconv=False)
        rgb = img[0, :3, :, 0].T  # [V,3]; without a torgb layer the first 3 features are the colour
        cols.append((rgb.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy())
    rgb = np.concatenate(cols) if cols else np.zeros((0, 3), np.uint8)
    return np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)


def keep_largest_component(mesh):
    """The connected component with the most faces (drops floaters)."""
    parts = mesh.split(only_watertight=False)
    return max(parts, key=lambda m: len(m.faces)) if len(parts) > 1 else mesh


def mesh_from_grid(grid: DensityGrid, level="auto", crop: str = "render", keep_largest: bool = True):
    """trimesh.Trimesh of a density grid (no colours); ``level`` is an activated density or 'auto'."""
    import trimesh

    density = grid.density(crop)
    level = auto_level(density, grid.voxel_size) if level == "auto" else float(level)
    verts, faces = marching_cubes(density, level, grid.voxel_size, grid.origin)
    mesh = trimesh.Trimesh(verts, faces, process=True)
    if keep_largest:
        mesh = keep_largest_component(mesh)
    mesh.metadata["iso_level"] = level
    return mesh


def extract_mesh(G, ws: torch.Tensor, resolution: int = 256, level="auto", crop: str = "render",
                 keep_largest: bool = True, colors: bool = True, grid: DensityGrid | None = None,
                 chunk_size: int = 2 ** 20, progress: bool = True):
    """Mesh of the head encoded by ``ws``: density grid (or the given ``grid``), marching cubes at
    ``level`` (activated density or 'auto'), optional largest-component cleaning and vertex colours.

    The iso-level used is in ``mesh.metadata['iso_level']``.
    """
    if grid is None:
        grid = sample_density(G, ws, resolution, chunk_size=chunk_size, progress=progress)
    mesh = mesh_from_grid(grid, level=level, crop=crop, keep_largest=keep_largest)
    if colors:
        mesh.visual.vertex_colors = vertex_colors(G, ws, np.asarray(mesh.vertices, np.float32), chunk_size)
    return mesh


def write_mesh(mesh, path: str | os.PathLike) -> Path:
    """Write .ply (binary), .obj or .glb (format from the suffix) atomically, with vertex colours."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_FORMATS:
        raise InputError(f"mesh output must end in {', '.join(MESH_FORMATS)}, got {path.name}")
    with atomic_path(path) as tmp:
        mesh.export(str(tmp), file_type=suffix[1:])
    return path
