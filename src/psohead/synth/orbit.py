"""Ground-truth orbits: evenly spaced views of fixed heads plus their coloured meshes (PLY)."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import torch

from ..camera import HEAD_LOOKAT, label_from_yaw_pitch
from ..errors import InputError
from ..io.dataset_writer import DatasetWriter
from . import head as H
from .preview import render_views


def head_mesh(record: dict, grid: int = 160, device: str = "cpu", chunk: int = 262144):
    """Marching cubes of one head's SDF: vertices [V,3] (world), faces [F,3] (outward), colours [V,3] uint8."""
    from skimage.measure import marching_cubes

    from .params import stack

    lo = np.array([-0.42, -0.62, -0.45])
    hi = np.array([0.42, 0.42, 0.45])
    axes = [torch.linspace(float(a), float(b), grid) for a, b in zip(lo, hi)]
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3).to(device)
    pp = H.PointParams(stack([record], device=device))
    with torch.no_grad():
        d = torch.cat([H.sdf(c, pp) for c in pts.split(chunk)]).cpu().numpy()
    # the SDF is negative inside: its gradient points out, which 'descent' winds as outward faces
    verts, faces, _, _ = marching_cubes(d.reshape(grid, grid, grid), 0.0, spacing=tuple((hi - lo) / (grid - 1)),
                                        gradient_direction="descent")
    verts = lo + verts
    with torch.no_grad():
        v = torch.as_tensor(verts, dtype=torch.float32, device=device)
        cols = []
        for c in v.split(chunk):
            cols.append(H.albedo(H.components(c, pp), pp)[0].clamp(0, 1).pow(1 / 2.2).cpu())
        rgb = (torch.cat(cols) * 255 + 0.5).to(torch.uint8).numpy() if cols else np.zeros((0, 3), np.uint8)
    return verts.astype(np.float32), faces.astype(np.int32), rgb


def ply_bytes(verts: np.ndarray, faces: np.ndarray, rgb: np.ndarray) -> bytes:
    """Binary PLY with per-vertex colour."""
    import trimesh

    return trimesh.Trimesh(verts, faces, vertex_colors=rgb, process=False).export(file_type="ply")


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def write_orbits(out, ids: list[int], views: int = 24, pitches=(0.0, 0.3, -0.2), res: int = 256,
                 device: str = "cpu", mesh_grid: int = 160) -> dict:
    """One dataset folder per head (the training layout, so it reads back with ``HeadDataset``)::

        out/<id>/images/view_p<k>_<v>.png  masks/view_p<k>_<v>.png  images/dataset.json
        out/<id>/depth/view_p<k>_<v>.npy   (float32 camera-space z, 0 on background)
        out/<id>/mesh.ply  head.json

    Each head folder appears complete or not at all (written aside, then renamed); an existing
    one is replaced.
    """
    if views < 1 or not ids:
        raise InputError("orbit needs at least one --ids value and --views >= 1")
    out = Path(out)
    yaws = [2 * math.pi * k / views for k in range(views)]
    summary = {}
    for hid in ids:
        with DatasetWriter(out / str(hid), overwrite=True) as w:
            for pk, pitch in enumerate(pitches):
                v_out = render_views([hid], yaws, pitch=pitch, res=res, device=device)
                for v, yaw in enumerate(yaws):
                    name = f"view_p{pk}_{v:03d}"
                    w.add(name, v_out.rgb[0, v], v_out.mask[0, v], label_from_yaw_pitch(yaw, pitch, lookat=HEAD_LOOKAT)[0])
                    w.add_file(f"depth/{name}.npy", _npy_bytes(v_out.depth[0, v]))
            head = v_out.heads[0]
            verts, faces, cols = head_mesh(head, grid=mesh_grid, device=device)
            w.add_file("mesh.ply", ply_bytes(verts, faces, cols))
            w.add_file("head.json", json.dumps(head, indent=1).encode())
        summary[str(hid)] = {"views": views * len(pitches), "mesh_vertices": int(len(verts))}
    return summary
