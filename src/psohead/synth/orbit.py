"""Ground-truth orbits: evenly spaced views of fixed heads plus their coloured meshes (PLY)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..camera import format_label, label_from_yaw_pitch
from ..errors import InputError
from . import head as H
from .preview import render_views


def head_mesh(record: dict, grid: int = 160, device: str = "cpu", chunk: int = 262144):
    """Marching cubes of one head's SDF: vertices [V,3] (world), faces [F,3], colours [V,3] uint8."""
    import mcubes

    from .params import stack

    lo = np.array([-0.42, -0.62, -0.45])
    hi = np.array([0.42, 0.42, 0.45])
    axes = [torch.linspace(float(a), float(b), grid) for a, b in zip(lo, hi)]
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3).to(device)
    pp = H.PointParams(stack([record], device=device))
    with torch.no_grad():
        d = torch.cat([H.sdf(c, pp) for c in pts.split(chunk)]).cpu().numpy()
    verts, faces = mcubes.marching_cubes(d.reshape(grid, grid, grid), 0.0)
    verts = lo + verts * (hi - lo) / (grid - 1)
    with torch.no_grad():
        v = torch.as_tensor(verts, dtype=torch.float32, device=device)
        cols = []
        for c in v.split(chunk):
            cols.append(H.albedo(H.components(c, pp), pp)[0].clamp(0, 1).pow(1 / 2.2).cpu())
        rgb = (torch.cat(cols) * 255 + 0.5).to(torch.uint8).numpy() if cols else np.zeros((0, 3), np.uint8)
    return verts.astype(np.float32), faces.astype(np.int32), rgb


def write_ply(path, verts: np.ndarray, faces: np.ndarray, rgb: np.ndarray) -> None:
    """Binary little-endian PLY with per-vertex colour, written atomically."""
    path = Path(path)
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(verts)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\n"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
    vdt = np.dtype([("p", "<f4", 3), ("c", "u1", 3)])
    vbuf = np.empty(len(verts), vdt)
    vbuf["p"], vbuf["c"] = verts, rgb
    fdt = np.dtype([("n", "u1"), ("i", "<i4", 3)])
    fbuf = np.empty(len(faces), fdt)
    fbuf["n"], fbuf["i"] = 3, faces
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(header.encode())
        f.write(vbuf.tobytes())
        f.write(fbuf.tobytes())
    os.replace(tmp, path)


def write_orbits(out, ids: list[int], views: int = 24, pitches=(0.0, 0.3, -0.2), res: int = 256,
                 device: str = "cpu", mesh_grid: int = 160) -> dict:
    """``out/<id>/view_p<k>_<v>.png`` + ``mask_...png`` + ``dataset.json`` + ``mesh.ply`` + ``head.json``."""
    if views < 1 or not ids:
        raise InputError("orbit needs at least one --ids value and --views >= 1")
    out = Path(out)
    yaws = [2 * math.pi * k / views for k in range(views)]
    summary = {}
    for hid in ids:
        d = out / str(hid)
        d.mkdir(parents=True, exist_ok=True)
        labels = []
        for pk, pitch in enumerate(pitches):
            rgb, mask, heads = render_views([hid], yaws, pitch=pitch, res=res, device=device)
            for v, yaw in enumerate(yaws):
                for kind, arr in (("mask", mask[0, v]), ("view", rgb[0, v])):
                    name = f"{kind}_p{pk}_{v:03d}.png"
                    Image.fromarray(arr).save(d / f".{name}.tmp", format="PNG")
                    os.replace(d / f".{name}.tmp", d / name)
                labels.append([f"view_p{pk}_{v:03d}.png", format_label(label_from_yaw_pitch(yaw, pitch)[0])])
        (d / "dataset.json").write_text(json.dumps({"labels": labels}))
        (d / "head.json").write_text(json.dumps(heads[0], indent=1))
        verts, faces, cols = head_mesh(heads[0], grid=mesh_grid, device=device)
        write_ply(d / "mesh.ply", verts, faces, cols)
        summary[str(hid)] = {"views": len(labels), "mesh_vertices": int(len(verts))}
    return summary
