"""MediaPipe's canonical face mesh (a bundled asset, see assets/NOTICE) and the 3D templates of
the landmark sets fitted to it: what pose estimation and SynthHeads' ground-truth landmarks share."""
from __future__ import annotations

import functools
from importlib import resources

import numpy as np

MESH_POINTS = 468
MIRROR_68 = np.r_[16:-1:-1, 26:21:-1, 21:16:-1, 27:31, 35:30:-1, 45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
                  54:47:-1, 59:54:-1, 64:59:-1, 67:64:-1]


def asset(name: str):
    """A bundled file of psohead/assets (a Traversable: ``.open()``, ``.read_text()``)."""
    return resources.files("psohead").joinpath("assets", name)


MIRROR_X = np.diag([-1.0, 1.0, 1.0])


@functools.lru_cache(maxsize=1)
def mesh_vertices() -> np.ndarray:
    """[468,3] float64 canonical face-mesh vertices (cm)."""
    with asset("face_mesh_canonical.npz").open("rb") as f:
        return np.load(f)["vertices"].astype(np.float64)


@functools.lru_cache(maxsize=2)
def template(points: int = 68) -> np.ndarray:
    """[points,3] float64 template (cm) of the 68 dlib or the 468 mesh points; mirror-symmetric.

    The mesh is symmetric but dlib's voted vertex map is not (jaw points 2 and 14 sit 4 cm apart
    after mirroring, the inner brows 0.9 cm), which made PnP see a yaw in a frontal face: each dlib
    point is averaged with its mirrored partner."""
    verts = mesh_vertices()
    if points == MESH_POINTS:
        return verts
    if points != 68:
        raise ValueError(f"no pose template for {points} points")
    with asset("dlib68_facemesh_index.npy").open("rb") as f:
        index = np.load(f)
    pts = verts[index]
    return 0.5 * (pts + pts[MIRROR_68] @ MIRROR_X)


@functools.lru_cache(maxsize=1)
def mesh_mirror() -> np.ndarray:
    """Index of each canonical face-mesh vertex's mirror partner (the mesh is exactly symmetric)."""
    v = mesh_vertices()
    mirrored = v * np.array([-1.0, 1.0, 1.0])
    return np.array([int(np.argmin(((v - m) ** 2).sum(1))) for m in mirrored])
