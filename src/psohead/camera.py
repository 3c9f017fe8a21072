"""PanoHead camera labels: the single place that builds, parses and validates them.

A label is 25 numbers: the flattened (row-major) 4x4 cam2world matrix in OpenCV axes
(columns = camera right, camera down, viewing direction, centre) followed by the flattened
3x3 intrinsics normalised by the image size. World: +y up, the face looks toward +z and
+x is the subject's left. Yaw 0 is frontal, yaw pi shows the back of the head, positive
yaw moves the camera toward +x, positive pitch lifts it.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .errors import LabelError

FOCAL = 4.2647  # official normalised focal length (about 13.37 deg full FOV)
RADIUS = 2.7
LOOKAT = (0.0, 0.0, 0.2)  # pivot of the official sampling scripts (FFHQ-style; the camera fixtures)
# 360-degree convention: PanoHead's dataset labels and its 'Head' videos look at the origin, where
# the head sits, so the head stays centred from every side. Orbits, grids and synthetic data use it.
HEAD_LOOKAT = (0.0, 0.0, 0.0)
LABEL_DIM = 25
TRANSLATION_ENTRIES = (3, 7, 11)
FLIP_ENTRIES = (1, 2, 3, 4, 8)  # negated when an image is mirrored (spec 3.3)


def _as_tensor(x, dtype=torch.float32) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=dtype)


def normalize_vecs(v: torch.Tensor) -> torch.Tensor:
    return v / torch.norm(v, dim=-1, keepdim=True)


def cam2world_from_forward(forward: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """4x4 cam2world with world +y as up, OpenCV axes (camera y points down)."""
    forward = normalize_vecs(forward)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=forward.dtype, device=forward.device).expand_as(forward)
    right = -normalize_vecs(torch.cross(up, forward, dim=-1))
    up = normalize_vecs(torch.cross(forward, right, dim=-1))
    rot = torch.eye(4, dtype=forward.dtype, device=forward.device).unsqueeze(0).repeat(forward.shape[0], 1, 1)
    rot[:, :3, :3] = torch.stack((right, up, forward), dim=-1)
    trans = torch.eye(4, dtype=forward.dtype, device=forward.device).unsqueeze(0).repeat(forward.shape[0], 1, 1)
    trans[:, :3, 3] = origin
    return (trans @ rot)[:, :, :]


def lookat_pose(h, v, lookat: Sequence[float] = LOOKAT, radius: float = RADIUS) -> torch.Tensor:
    """Official ``LookAtPoseSampler.sample`` without jitter: azimuth h, polar parameter v.

    h = pi/2 is frontal; v = pi/2 is level. Returns cam2world [N,4,4].
    """
    h = _as_tensor(h).reshape(-1)
    v = _as_tensor(v).reshape(-1)
    n = max(h.numel(), v.numel())
    h, v = h.expand(n), v.expand(n)
    v = torch.clamp(v, 1e-5, math.pi - 1e-5)
    theta = h
    phi = torch.arccos(1 - 2 * v / math.pi)
    origins = torch.zeros((n, 3))
    origins[:, 0:1] = (radius * torch.sin(phi) * torch.cos(math.pi - theta)).unsqueeze(-1)
    origins[:, 2:3] = (radius * torch.sin(phi) * torch.sin(math.pi - theta)).unsqueeze(-1)
    origins[:, 1:2] = (radius * torch.cos(phi)).unsqueeze(-1)
    look = torch.as_tensor(lookat, dtype=torch.float32).reshape(1, 3)
    forward = normalize_vecs(look - origins)
    return cam2world_from_forward(forward, origins)


def fov_to_intrinsics(fov_degrees: float) -> torch.Tensor:
    """Official ``FOV_to_intrinsics``, quirks kept (3.14159 and an extra 1.414 divisor)."""
    focal = float(1 / (math.tan(fov_degrees * 3.14159 / 360) * 1.414))
    return intrinsics_from_focal(focal)


def intrinsics_from_focal(focal: float = FOCAL) -> torch.Tensor:
    return torch.tensor([[focal, 0.0, 0.5], [0.0, focal, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float32)


def fov_degrees_from_focal(focal: float = FOCAL) -> float:
    """Exact full field of view of a normalised focal length (4.2647 -> 13.37 deg)."""
    return math.degrees(2 * math.atan(0.5 / focal))


def build_label(cam2world, intrinsics=None) -> torch.Tensor:
    """cam2world [N,4,4] (+ intrinsics [3,3] or [N,3,3]) -> labels [N,25]."""
    cam2world = _as_tensor(cam2world)
    if cam2world.ndim == 2:
        cam2world = cam2world.unsqueeze(0)
    n = cam2world.shape[0]
    k = intrinsics_from_focal() if intrinsics is None else _as_tensor(intrinsics)
    k = k.reshape(-1, 9).expand(n, 9).to(cam2world)
    return torch.cat([cam2world.reshape(n, 16), k], dim=1)


def label_from_yaw_pitch(yaw, pitch=0.0, radius: float = RADIUS, lookat: Sequence[float] = LOOKAT,
                         focal: float = FOCAL) -> torch.Tensor:
    """Label(s) for a camera on a sphere around the world origin (angles in radians).

    pitch is the true elevation of the camera centre, so this equals
    ``lookat_pose(pi/2 + yaw, pi/2 * (1 - sin(pitch)))``. Returns [N,25] (N = broadcast size).
    """
    yaw = _as_tensor(yaw).reshape(-1)
    pitch = _as_tensor(pitch).reshape(-1)
    v = math.pi / 2 * (1 - torch.sin(pitch))
    cam2world = lookat_pose(math.pi / 2 + yaw, v, lookat=lookat, radius=radius)
    return build_label(cam2world, intrinsics_from_focal(focal))


def split_label(label) -> tuple[torch.Tensor, torch.Tensor]:
    """labels [N,25] -> (cam2world [N,4,4], intrinsics [N,3,3])."""
    label = _as_tensor(label)
    label = label.reshape(-1, LABEL_DIM)
    return label[:, :16].reshape(-1, 4, 4), label[:, 16:].reshape(-1, 3, 3)


def yaw_pitch_from_label(label) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`label_from_yaw_pitch`: (yaw, pitch, radius) of the camera centre, [N] each.

    Yaw is wrapped to (-pi, pi]; it is read from the camera position, so labels that look at
    another point (e.g. the origin) give the same angles for the same centre.
    """
    cam2world, _ = split_label(label)
    origin = cam2world[:, :3, 3].double()
    radius = origin.norm(dim=-1)
    yaw = torch.atan2(origin[:, 0], origin[:, 2])
    pitch = torch.asin((origin[:, 1] / radius).clamp(-1, 1))
    return yaw.float(), pitch.float(), radius.float()


def validate_label(label, what: str = "camera label", tol: float = 2e-2) -> torch.Tensor:
    """Check a label (or [N,25] batch) and return it as float32 [N,25]; raise LabelError if bad.

    The tolerance is loose because official labels (3DDFA poses written with 6 decimals) are
    orthonormal only to about 8e-3.
    """
    try:
        arr = np.asarray(label, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise LabelError(f"{what}: not a list of numbers ({err})") from None
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != LABEL_DIM:
        raise LabelError(f"{what}: expected {LABEL_DIM} numbers per label, got shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise LabelError(f"{what}: contains NaN or infinite values")
    for i, row in enumerate(arr):
        m = row[:16].reshape(4, 4)
        r = m[:3, :3]
        name = what if len(arr) == 1 else f"{what} #{i}"
        if np.abs(r @ r.T - np.eye(3)).max() > tol or abs(np.linalg.det(r) - 1) > tol:
            raise LabelError(f"{name}: cam2world rotation is not a rigid rotation (orthonormal, det +1)")
        if np.abs(m[3] - [0, 0, 0, 1]).max() > tol:
            raise LabelError(f"{name}: cam2world last row must be 0 0 0 1, got {m[3].tolist()}")
        k = row[16:].reshape(3, 3)
        if k[0, 0] <= 0 or k[1, 1] <= 0 or np.abs(k[2] - [0, 0, 1]).max() > tol:
            raise LabelError(f"{name}: intrinsics must be [[fx,s,cx],[0,fy,cy],[0,0,1]] with fx, fy > 0")
    return torch.as_tensor(arr, dtype=torch.float32)


def parse_label(values, what: str = "camera label") -> torch.Tensor:
    """Parse a label as stored in dataset.json (numbers or numeric strings) -> [1,25] float32."""
    try:
        nums = [float(v) for v in values]
    except (TypeError, ValueError):
        raise LabelError(f"{what}: entries must be numbers or numeric strings") from None
    return validate_label(nums, what)


def format_label(label) -> list[str]:
    """One label as the official tools write it: 25 '%.6f' strings."""
    return ["%.6f" % float(v) for v in _as_tensor(label).reshape(-1).tolist()]


def flip_label(label) -> torch.Tensor:
    """Label of the horizontally mirrored image (spec 3.3)."""
    out = _as_tensor(label).clone().reshape(-1, LABEL_DIM)
    out[:, list(FLIP_ENTRIES)] *= -1
    return out


def yaw_rotated(label, angle: float) -> torch.Tensor:
    """Camera(s) turned by ``angle`` radians about the world y axis (positive: toward +x), [N,25]."""
    cam2world, k = split_label(label)
    c, s = math.cos(angle), math.sin(angle)
    rot = torch.tensor([[c, 0, s, 0], [0, 1, 0, 0], [-s, 0, c, 0], [0, 0, 0, 1]], dtype=cam2world.dtype,
                       device=cam2world.device)
    return build_label(rot @ cam2world, k).reshape(-1, LABEL_DIM)


def back_label(label) -> torch.Tensor:
    """Same pose seen from behind: the camera turned by pi about the world y axis, i.e. cam2world
    left-multiplied by diag(-1,1,-1,1) (the official back labels and PSO-HEAD's data_rotate.json)."""
    return yaw_rotated(label, math.pi)


def mirrored_label(label) -> torch.Tensor:
    """Camera(s) mirrored in the head's plane of symmetry (world x -> -x). A render at the mirrored
    camera, flipped left-right, is the view the original camera has of the mirrored head (camera x
    is negated too, so the frame stays right-handed and the image x axis flips)."""
    cam2world, k = split_label(label)
    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=cam2world.dtype, device=cam2world.device))
    return build_label(flip @ cam2world @ flip, k).reshape(-1, LABEL_DIM)


def apply_offset(label, delta) -> torch.Tensor:
    """Add a world-space camera translation offset delta [N,3] to labels (entries 3, 7, 11).

    The result lives on the label's device and dtype, wherever delta was computed (CPU or GPU)."""
    out = _as_tensor(label).clone().reshape(-1, LABEL_DIM)
    out[:, list(TRANSLATION_ENTRIES)] += torch.as_tensor(delta).to(out.device, out.dtype)
    return out


def orbit_labels(num_views: int, pitch: float = 0.0, radius: float = RADIUS,
                 lookat: Sequence[float] = LOOKAT, start_yaw: float = 0.0) -> torch.Tensor:
    """num_views evenly spaced yaws over a full turn, starting at ``start_yaw``: [num_views,25]."""
    yaws = start_yaw + torch.arange(num_views, dtype=torch.float64) * (2 * math.pi / num_views)
    return label_from_yaw_pitch(yaws.float(), pitch, radius=radius, lookat=lookat)
