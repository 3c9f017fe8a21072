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

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, PsoheadError
from ..progress import ProgressLike, track
from .mesh_options import MAX_GRID_RESOLUTION, METRES_PER_UNIT, MeshOptions  # noqa: F401  (part of this module's interface)

RENDER_CROP = 0.1          # renderer's triplane_crop: |x|, |z| > box/2 - 0.1 are empty (spec 1.9)
OFFICIAL_RAW_LEVEL = 10.0  # official shape_utils iso-level on raw sigma
MESH_FORMATS = (".ply", ".obj", ".glb")


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


def _grid_coords(start: int, end: int, lo, shape, r: int, box: float, device) -> torch.Tensor:
    """World coordinates of flat indices [start, end) of the sub-grid ``shape`` starting at grid
    index ``lo`` of a resolution-``r`` grid (x slowest, z fastest)."""
    idx = torch.arange(start, end, device=device)
    ny, nz = shape[1], shape[2]
    ijk = torch.stack((idx // (ny * nz) + lo[0], (idx // nz) % ny + lo[1], idx % nz + lo[2]), dim=-1).float()
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


def _query_grid(G, ws, r: int, lo, hi, chunk_size: int, progress: ProgressLike) -> np.ndarray:
    """Raw sigma at the grid points with indices lo <= ijk < hi of a resolution-``r`` grid."""
    box = _box(G)
    shape = tuple(int(b - a) for a, b in zip(lo, hi))
    n = shape[0] * shape[1] * shape[2]
    out = np.empty(n, np.float32)
    starts = range(0, n, chunk_size)
    query = point_query(G, ws)
    for start in track(starts, "mesh", progress, desc="mesh density", unit="chunk"):
        end = min(start + chunk_size, n)
        coords = _grid_coords(start, end, lo, shape, r, box, ws.device).unsqueeze(0)
        dirs = torch.zeros_like(coords)
        dirs[..., 2] = -1  # unused by the decoder; the official script passes (0, 0, -1)
        sigma = query(coords, dirs)["sigma"]
        out[start:end] = sigma.reshape(-1).float().cpu().numpy()
    return out.reshape(shape)


@torch.no_grad()
def sample_density(G, ws: torch.Tensor, resolution: int = 256, chunk_size: int = 2 ** 20,
                   progress: ProgressLike = True) -> DensityGrid:
    """Raw sigma on a resolution^3 grid over the generator's box, via chunked ``G.sample_mixed``.
    ``progress``: bars, silence or a callable hearing :class:`psohead.progress.Progress` events
    (stage 'mesh', a step per chunk)."""
    if not 8 <= resolution <= MAX_GRID_RESOLUTION:
        raise InputError(f"mesh resolution must be in 8..{MAX_GRID_RESOLUTION}, got {resolution}")
    ws = ws if ws.ndim == 3 else ws.unsqueeze(0)
    r = resolution
    return DensityGrid(_query_grid(G, ws, r, (0, 0, 0), (r, r, r), chunk_size, progress), _box(G))


COARSE_RESOLUTION = 64  # grid that finds the surface for sample_head_density
BAND = 2  # coarse voxels sampled finely on either side of the surface


@torch.no_grad()
def sample_head_density(G, ws: torch.Tensor, resolution: int = 256, level="auto", crop: str = "render",
                        chunk_size: int = 2 ** 20, progress: ProgressLike = True) -> DensityGrid:
    """:func:`sample_density` at a fraction of the cost, for meshing. A coarse grid finds the shell
    where the surface can be: within BAND coarse voxels of a point denser than a quarter of the
    surface's level (``level`` or the automatic one), and not within BAND voxels of one denser than
    twice the level only. Only that shell is sampled at full resolution; elsewhere the grid holds
    the coarse grid trilinearly interpolated, which keeps empty space empty and the inside inside,
    so the surface and the automatic level come out as from the full grid. Not the raw field
    everywhere: for a volume export use :func:`sample_density`."""
    from scipy import ndimage

    c = COARSE_RESOLUTION
    if resolution < 2 * c:
        return sample_density(G, ws, resolution, chunk_size, progress)
    ws = ws if ws.ndim == 3 else ws.unsqueeze(0)
    coarse = sample_density(G, ws, c, chunk_size, progress=False)
    density = coarse.density(crop)
    lvl = auto_level(density, coarse.voxel_size) if level == "auto" else float(level)
    cube = np.ones((3, 3, 3), bool)
    band = (ndimage.binary_dilation(density >= lvl / 4, cube, iterations=BAND)
            & ~ndimage.binary_erosion(density >= 2 * lvl, cube, iterations=BAND, border_value=1))
    r = resolution
    sigma = torch.nn.functional.interpolate(torch.from_numpy(coarse.sigma)[None, None], size=(r, r, r),
                                            mode="trilinear", align_corners=True)[0, 0]
    # a fine point is sampled when its nearest coarse point is in the band
    near = torch.round(torch.arange(r) * ((c - 1) / (r - 1))).long()
    b = torch.from_numpy(band)
    mask = b[near][:, near][:, :, near]
    idx = torch.nonzero(mask.reshape(-1), as_tuple=True)[0]
    box, h = coarse.box, coarse.box / (r - 1)
    query = point_query(G, ws)
    flat = sigma.reshape(-1)
    for start in track(range(0, len(idx), chunk_size), "mesh", progress, desc="mesh density", unit="chunk"):
        part = idx[start:start + chunk_size]
        ijk = torch.stack((part // (r * r), (part // r) % r, part % r), -1).float()
        coords = (ijk * h - box / 2).to(ws.device).unsqueeze(0)
        dirs = torch.zeros_like(coords)
        dirs[..., 2] = -1
        flat[part] = query(coords, dirs)["sigma"].reshape(-1).float().cpu()
    return DensityGrid(sigma.numpy(), box)


def auto_level(density: np.ndarray, voxel_size: float) -> float:
    """Median activated density at the transmittance-1/2 point of axis rays (module docstring).

    Rays enter from -x, +x, -z, +z and from the top (+y); rays that never reach optical depth
    ln 2 are ignored. Raises MeshError when no ray does (nothing is opaque).
    """
    found = []
    target = math.log(2)
    vol = torch.from_numpy(np.ascontiguousarray(density, np.float32))
    for axis, from_high in ((0, False), (0, True), (2, False), (2, True), (1, True)):
        d = vol.movedim(axis, -1)
        if from_high:
            d = d.flip(-1)
        d = d.reshape(-1, d.shape[-1])
        total = (d.sum(1) - 0.5 * (d[:, 0] + d[:, -1])) * voxel_size  # trapezoid optical depth
        d = d[total >= target]
        if len(d) == 0:
            continue
        tau = torch.cumsum(0.5 * (d[:, :-1] + d[:, 1:]) * voxel_size, 1)
        tau = torch.cat([torch.zeros(len(d), 1), tau], 1)
        n = (tau >= target).int().argmax(1).clamp_min(1)  # >= 1 because tau[:, 0] = 0
        rows = torch.arange(len(n))
        t0, t1 = tau[rows, n - 1], tau[rows, n]
        f = (target - t0) / (t1 - t0).clamp_min(1e-12)
        found.append(d[rows, n - 1] + f * (d[rows, n] - d[rows, n - 1]))
    if not found:
        raise MeshError("density field has no opaque region (no ray reaches 50% opacity); nothing to mesh")
    return float(np.median(torch.cat(found).numpy()))


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


def largest_component(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The connected piece of a triangle mesh with the most faces: (vertices, faces, pieces dropped).
    Drops floaters and the inner surfaces of cavities (separate pieces inside the head)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(len(vertices),) * 2)
    n, label = connected_components(graph, directed=False)
    if n <= 1:
        return vertices, faces, 0
    face_label = label[faces[:, 0]]
    keep = face_label == np.argmax(np.bincount(face_label, minlength=n))
    used = np.unique(faces[keep])
    remap = np.full(len(vertices), -1, np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[faces[keep]], int(len(np.unique(face_label)) - 1)


def mesh_from_grid(grid: DensityGrid, level="auto", crop: str = "render", keep_largest: bool = True):
    """trimesh.Trimesh of a density grid (no colours); ``level`` is an activated density or 'auto'.

    With ``keep_largest`` only the largest connected piece of the surface is kept (the head's outer
    surface: floaters and the inner walls of cavities go).
    """
    import trimesh

    density = grid.density(crop)
    level = auto_level(density, grid.voxel_size) if level == "auto" else float(level)
    mesh = trimesh.Trimesh(*marching_cubes(density, level, grid.voxel_size, grid.origin), process=True)
    dropped = 0
    if keep_largest:
        verts, faces, dropped = largest_component(np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces))
        if dropped:
            mesh = trimesh.Trimesh(verts, faces, process=False)
    mesh.metadata.update(iso_level=level, pieces_dropped=dropped)
    return mesh


def refine_mesh(mesh, smoothing: int = 0, faces: int = 0):
    """Taubin smoothing (``smoothing`` passes of a shrink and an inflate step: unlike plain
    Laplacian smoothing it does not shrink the head) and decimation to about ``faces`` faces
    (fast-simplification's quadric edge collapse; 0 keeps every face). Holes the decimation may
    open are closed again. Returns a new trimesh.Trimesh."""
    import fast_simplification
    import trimesh

    mesh = mesh.copy()
    if smoothing > 0:
        trimesh.smoothing.filter_taubin(mesh, lamb=0.5, nu=0.52, iterations=2 * smoothing)
    if 0 < faces < len(mesh.faces):
        v, f = fast_simplification.simplify(np.asarray(mesh.vertices, np.float32),
                                            np.asarray(mesh.faces, np.int32), target_count=faces)
        meta = mesh.metadata
        mesh = trimesh.Trimesh(v.astype(np.float32), f.astype(np.int64), process=True)
        mesh.metadata.update(meta)
        mesh.update_faces(mesh.nondegenerate_faces())
        mesh.remove_unreferenced_vertices()
        if not mesh.is_watertight:
            trimesh.repair.fill_holes(mesh)
    return mesh


def extract_mesh(G, ws: torch.Tensor, resolution: int = 256, level="auto", crop: str = "render",
                 keep_largest: bool = True, colors: bool = True, grid: DensityGrid | None = None,
                 chunk_size: int = 2 ** 20, progress: ProgressLike = True):
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
    """Write a trimesh.Trimesh as .ply (binary), .obj or .glb (format from the suffix) atomically,
    as it is (units unchanged), with its vertex normals and vertex colours (grey without)."""
    from .mesh_files import write_glb, write_obj, write_ply

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_FORMATS:
        raise InputError(f"mesh output must end in {', '.join(MESH_FORMATS)}, got {path.name}")
    v = np.asarray(mesh.vertices, np.float32)
    f = np.asarray(mesh.faces, np.int64)
    n = np.asarray(mesh.vertex_normals, np.float32)
    colours = getattr(mesh.visual, "vertex_colors", None)
    if colours is None or len(colours) != len(v):
        colours = np.full((len(v), 4), 200, np.uint8)
    colours = np.asarray(colours, np.uint8)
    if suffix == ".ply":
        write_ply(path, v, f, n, colours)
    elif suffix == ".obj":
        write_obj(path, v, f, n, colors=colours)
    else:
        write_glb(path, v, f, n, colors=colours)
    return path


@dataclass
class HeadMesh:
    """A head mesh ready to write, in world units (``scale`` converts to the files' metres).

    ``vertices`` [V,3], ``faces`` [F,3], unit ``normals`` [V,3] and ``colors`` [V,4] uint8 (the baked
    texture's colours when there is one, else the feature field's) describe the closed surface;
    ``atlas`` (the mesh cut along UV seams) and ``texture`` (uint8 [S,S,3]) are None untextured."""
    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    colors: np.ndarray
    atlas: object | None
    texture: np.ndarray | None
    scale: float
    roughness: float
    info: dict

    def write(self, path: str | os.PathLike) -> list[Path]:
        """Write one file by its suffix (.glb, .obj with its .mtl and _albedo.png, .ply), atomically;
        returns the paths written."""
        from .mesh_files import write_glb, write_obj, write_ply

        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in MESH_FORMATS:
            raise InputError(f"mesh output must end in {', '.join(MESH_FORMATS)}, got {path.name}")
        v = self.vertices * np.float32(self.scale)
        if suffix == ".ply":
            return [write_ply(path, v, self.faces, self.normals, self.colors)]
        units = "metres" if self.scale != 1 else "generator world units"
        comment = f"psohead head mesh: {units}, +Y up, face toward +Z"
        if self.atlas is None:
            if suffix == ".obj":
                return write_obj(path, v, self.faces, self.normals, colors=self.colors, comment=comment)
            return [write_glb(path, v, self.faces, self.normals, colors=self.colors, roughness=self.roughness)]
        a = self.atlas
        args = (v[a.source], a.faces, self.normals[a.source])
        if suffix == ".obj":
            return write_obj(path, *args, uv=a.uv, texture_png=self.png, roughness=self.roughness, comment=comment)
        return [write_glb(path, *args, uv=a.uv, texture_png=self.png, roughness=self.roughness)]

    @functools.cached_property
    def png(self) -> bytes:
        """The texture as PNG, encoded once for every file that embeds or names it."""
        from .mesh_files import png_bytes

        return png_bytes(self.texture)


def _photo_input(photo, delta, device):
    """(image [3,H,W] in [-1,1], camera label [1,25] with the offset) of the ``photo`` argument."""
    from PIL import Image

    from ..camera import apply_offset, validate_label

    if photo is None:
        raise InputError("texture_from_photo needs the input photo: pass photo=(crop image, camera label)")
    try:
        image, label = photo
    except (TypeError, ValueError):
        raise InputError("photo must be a pair (crop image, camera label [1,25])") from None
    if not isinstance(image, Image.Image):
        raise InputError(f"photo crop must be a PIL image, got {type(image).__name__}")
    label = validate_label(torch.as_tensor(label).detach().cpu(), "photo camera label")
    if delta is not None:
        label = apply_offset(label, torch.as_tensor(delta).detach().cpu().reshape(1, 3))
    rgb = torch.from_numpy(np.asarray(image.convert("RGB"), np.float32)).permute(2, 0, 1)
    return (rgb / 127.5 - 1).to(device), label


def read_photo(path: str | os.PathLike, latent: str | os.PathLike | None = None):
    """The input photo of a reconstruction, for ``texture_from_photo``: (crop PIL image, its camera
    label [1,25] without the offset). ``path`` is a reconstruct output folder (``crop.png`` +
    ``label.json``) or the crop image; its label comes from ``label.json`` beside it, else from the
    label stored in the ``latent`` file."""
    import json

    from ..camera import parse_label
    from ..io.images import read_image

    path = Path(path)
    crop = path / "crop.png" if path.is_dir() else path
    if not crop.is_file():
        raise InputError(f"no photo crop at {crop} (texture from photo needs reconstruct's crop.png)")
    image = read_image(crop, "photo crop")
    label_file = crop.parent / "label.json"
    if label_file.is_file():
        try:
            return image, parse_label(json.loads(label_file.read_text())["label"], str(label_file))
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{label_file}: expected {{\"label\": [25 numbers]}}") from None
    if latent is not None:
        from .latent import load_latent

        label = load_latent(latent).label
        if label is not None:
            return image, label
    raise InputError(f"no camera label for {crop}: put label.json beside it or pass the latent from reconstruct")


def build_head_mesh(G, ws: torch.Tensor, options: MeshOptions | None = None, *, delta=None,
                    render_overrides: dict | None = None, photo=None, grid: DensityGrid | None = None,
                    progress: ProgressLike = True) -> HeadMesh:
    """The head mesh of ``ws`` for writing: geometry from the density (or the given ``grid``),
    then, with ``options.texture``, a UV atlas and a texture baked from the network's final renders.

    ``delta`` [1,3] (the camera offset of a reconstruction) and ``render_overrides`` (e.g.
    ``{"ray_start": 2.35}``) are applied to the bake renders as to the reconstruction's own;
    ``photo`` = (crop PIL image, its camera label [1,25] without the offset) is used with
    ``options.texture_from_photo``. ``progress``: bars, silence or a callable hearing
    :class:`psohead.progress.Progress` events (stage 'mesh': the density's chunks, then the bake's
    render batches). Raises MeshError when the density has no surface.
    """
    from time import perf_counter

    options = options or MeshOptions()
    ws = ws if ws.ndim == 3 else ws.unsqueeze(0)
    device = ws.device
    seconds = {}
    photo_input = _photo_input(photo, delta, device) if options.texture_from_photo else None
    t = perf_counter()
    if grid is None:
        grid = sample_head_density(G, ws, options.resolution, level=options.level, crop=options.crop,
                                   progress=progress)
    seconds["density"] = perf_counter() - t
    t = perf_counter()
    level = "auto" if options.level == "auto" else float(options.level)
    mesh = mesh_from_grid(grid, level=level, crop=options.crop, keep_largest=not options.keep_all)
    mc_faces = len(mesh.faces)
    mesh = refine_mesh(mesh, options.smoothing, options.faces)
    vertices = np.asarray(mesh.vertices, np.float32)
    faces = np.asarray(mesh.faces, np.int64)
    normals = np.asarray(mesh.vertex_normals, np.float32)
    seconds["geometry"] = perf_counter() - t
    t = perf_counter()
    if options.colors:
        colors = vertex_colors(G, ws, vertices)
    else:
        colors = np.full((len(vertices), 4), 200, np.uint8)
    seconds["vertex_colors"] = perf_counter() - t
    info = {"resolution": grid.resolution, "iso_level": float(mesh.metadata["iso_level"]),
            "marching_cubes_faces": mc_faces, "vertices": len(vertices), "faces": len(faces),
            "watertight": bool(mesh.is_watertight), "scale_m_per_unit": float(options.scale),
            "pieces_dropped": mesh.metadata.get("pieces_dropped", 0), "texture_size": None}
    atlas = texture = None
    if options.texture and options.colors:
        from . import texture as tx

        size = options.texture_side(G)
        t = perf_counter()
        atlas = tx.unwrap(vertices, faces, size)
        seconds["unwrap"] = perf_counter() - t
        t = perf_counter()
        texels = tx.texel_map(atlas, normals, size, device)
        labels, weights = tx.bake_views(options.bake_views, delta=delta)
        batch = options.render_batch or (8 if device.type == "cuda" else 2)

        @torch.no_grad()
        def renders(labels):
            for start in track(range(0, len(labels), batch), "mesh", progress, desc="mesh bake", unit="batch"):
                c = labels[start:start + batch].to(device=device, dtype=ws.dtype)
                out = G.synthesis(ws, c, noise_mode="const", deterministic=True, render_overrides=render_overrides)
                yield out["image"].float(), out["image_depth"].float(), out["image_mask"].float()

        tex, stats = tx.bake_texture(texels, atlas, renders, labels, colors[:, :3].astype(np.float32) / 255,
                                     photo=photo_input, view_weights=weights)
        texture = (tex.permute(1, 2, 0) * 255 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
        colors = _texture_colors(texture, atlas, len(vertices))
        seconds["bake"] = perf_counter() - t
        info.update(texture_size=size, charts=atlas.charts, atlas_utilization=round(atlas.utilization, 4),
                    bake_views=len(labels), texels=stats["texels"],
                    texels_unseen=stats["texels_unseen"], from_photo=options.texture_from_photo)
        if "texels_from_photo" in stats:
            info["texels_from_photo"] = round(stats["texels_from_photo"])
    info["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    return HeadMesh(vertices, faces, normals, colors, atlas, texture, float(options.scale),
                    float(options.roughness), info)


def _texture_colors(texture: np.ndarray, atlas, n: int) -> np.ndarray:
    """RGBA [n,4] per mesh vertex: the texture at one of its atlas copies (nearest texel)."""
    size = texture.shape[0]
    first = np.zeros(n, np.int64)
    first[atlas.source] = np.arange(len(atlas.source))  # any copy will do: they share one position
    ij = np.clip((atlas.uv[first] * size).astype(np.int64), 0, size - 1)
    rgb = texture[ij[:, 1], ij[:, 0]]
    return np.concatenate([rgb, np.full((n, 1), 255, np.uint8)], 1)


def write_head_meshes(G, ws: torch.Tensor, folder: str | os.PathLike, options: MeshOptions | None = None, *,
                      delta=None, render_overrides: dict | None = None, photo=None,
                      grid: DensityGrid | None = None, progress: ProgressLike = True) -> dict:
    """Build the head mesh (:func:`build_head_mesh`, same arguments) and write ``head.glb``,
    ``head.obj`` (+ ``head.mtl``, ``head_albedo.png`` when textured) and ``head.ply`` into
    ``folder``, each file atomically; material files of an earlier textured run are removed from an
    untextured one. Returns the mesh's info (counts, iso-level, texture, seconds per phase, bytes
    per file), JSON-able."""
    from time import perf_counter

    head = build_head_mesh(G, ws, options, delta=delta, render_overrides=render_overrides, photo=photo,
                           grid=grid, progress=progress)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    t = perf_counter()
    written = []
    for name in ("head.glb", "head.obj", "head.ply"):
        written += head.write(folder / name)
    if head.atlas is None:
        for stale in ("head.mtl", "head_albedo.png"):
            (folder / stale).unlink(missing_ok=True)
    info = dict(head.info)
    info["seconds"]["write"] = round(perf_counter() - t, 3)
    info["files"] = {p.name: p.stat().st_size for p in written}
    return info
