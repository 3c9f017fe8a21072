"""Head pose from 68 landmarks by PnP against a 3D template; labels as spec 7.4.

Template: dlib 68 points mapped onto MediaPipe's canonical face mesh (centimetres; x to the
subject's left, y up, z out of the face, like PanoHead's world). Its frontal orientation and
the point that corresponds to PanoHead's world origin differ from 3DDFA's BFM, so a fixed
rotation offset, an anchor point and a cm-per-world-unit scale are calibrated on the official
samples (``benchmarks/bench_pose.py --calibrate`` writes ``assets/pose_calibration.json``).

Poses are solved in the 563-canvas frame with the official camera: focal 4.2647*563 px and
the principal point at the canvas centre, so the head origin must land at the centre at
distance 2.7 world units (spec 7.4) -- this is what the quad refinement (spec 7.3) enforces.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch

from .. import camera
from .crop import CANVAS

# All 68: without the jaw, pitch leans on the mouth, whose template match breaks with smiles
# (astronaut: 26 deg pitch on 17-67, 2 deg on 0-67; benchmarks/results/preprocess.md).
FIT_POINTS = np.arange(68)
FLIP_YZ = np.diag([1.0, -1.0, -1.0])  # OpenCV camera axes <-> 3DDFA/OpenGL view axes


@dataclass
class Calibration:
    rotation_offset: np.ndarray  # [3,3]: world (BFM) frame -> template frame
    anchor: np.ndarray  # [3] template point that sits at PanoHead's world origin (cm)
    cm_per_unit: float  # template centimetres per PanoHead world unit

    def to_json(self) -> dict:
        return {"rotation_offset": self.rotation_offset.tolist(), "anchor": self.anchor.tolist(),
                "cm_per_unit": self.cm_per_unit}


@dataclass
class Pose:
    rotation: np.ndarray  # [3,3] 3DDFA-convention head rotation (label = spec 7.4 of this)
    anchor_px: np.ndarray  # [2] canvas pixel where the world origin projects
    scale: float  # >1: the head appears larger than PanoHead's framing wants
    reproj_px: float  # RMS reprojection error of the fitted landmarks


def _asset(name: str):
    return resources.files("psohead").joinpath("assets", name)


@functools.lru_cache(maxsize=1)
def template() -> np.ndarray:
    """[68,3] float64 template points (cm)."""
    with _asset("face_mesh_canonical.npz").open("rb") as f:
        verts = np.load(f)["vertices"].astype(np.float64)
    with _asset("dlib68_facemesh_index.npy").open("rb") as f:
        index = np.load(f)
    return verts[index]


@functools.lru_cache(maxsize=1)
def default_calibration() -> Calibration:
    data = json.loads(_asset("pose_calibration.json").read_text())
    return Calibration(np.array(data["rotation_offset"]), np.array(data["anchor"]), float(data["cm_per_unit"]))


def canvas_intrinsics() -> np.ndarray:
    f = camera.FOCAL * CANVAS
    return np.array([[f, 0, CANVAS / 2], [0, f, CANVAS / 2], [0, 0, 1.0]])


def solve_pnp(lm_canvas: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Template -> OpenCV camera (R [3,3], t [3] in cm) from 68 canvas-frame points, RMS px error."""
    import cv2

    obj, img, k = template()[FIT_POINTS], lm_canvas[FIT_POINTS].astype(np.float64), canvas_intrinsics()
    # start frontal at a plausible distance so the iterative solver never flips behind the camera
    rvec0 = cv2.Rodrigues(FLIP_YZ)[0]
    tvec0 = np.array([[0.0], [0.0], [60.0]])
    ok, rvec, tvec = cv2.solvePnP(obj, img, k, None, rvec0, tvec0, True, cv2.SOLVEPNP_ITERATIVE)
    r = cv2.Rodrigues(rvec)[0]
    proj = cv2.projectPoints(obj, rvec, tvec, k, None)[0].reshape(-1, 2)
    return r, tvec.reshape(3), float(np.sqrt(((proj - img) ** 2).sum(1).mean()))


def estimate_pose(lm_canvas: np.ndarray, calib: Calibration | None = None) -> Pose:
    calib = calib or default_calibration()
    r_cv, t, err = solve_pnp(lm_canvas)
    p = t + r_cv @ calib.anchor
    u = canvas_intrinsics() @ p
    return Pose(rotation=FLIP_YZ @ r_cv @ calib.rotation_offset, anchor_px=u[:2] / u[2],
                scale=float(camera.RADIUS * calib.cm_per_unit / p[2]), reproj_px=err)


def label_from_rotation(rotation: np.ndarray) -> torch.Tensor:
    """Spec 7.4: world2cam = diag(1,-1,-1,1) T(0,0,-2.7) [R 0; 0 1]; label of its inverse, [1,25]."""
    w2c = np.eye(4)
    w2c[:3, :3] = rotation
    w2c = np.diag([1.0, -1, -1, 1]) @ (np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, -camera.RADIUS],
                                                  [0, 0, 0, 1.0]]) @ w2c)
    return camera.build_label(torch.as_tensor(np.linalg.inv(w2c), dtype=torch.float32))


def rotation_from_label(label) -> np.ndarray:
    cam2world, _ = camera.split_label(label)
    return (cam2world[0, :3, :3].double().numpy() @ FLIP_YZ).T


def euler_3ddfa(rotation: np.ndarray) -> tuple[float, float, float]:
    """3DDFA_V2 ``matrix2angle``: (yaw, pitch, roll) in degrees."""
    r = rotation
    if r[2, 0] > 0.998:
        x, y, z = math.pi / 2, math.atan2(-r[0, 1], -r[0, 2]), 0.0
    elif r[2, 0] < -0.998:
        x, y, z = -math.pi / 2, math.atan2(r[0, 1], r[0, 2]), 0.0
    else:
        x = math.asin(r[2, 0])
        y = math.atan2(r[2, 1] / math.cos(x), r[2, 2] / math.cos(x))
        z = math.atan2(r[1, 0] / math.cos(x), r[0, 0] / math.cos(x))
    return math.degrees(x), math.degrees(y), math.degrees(z)


def project_to_so3(m: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1, 1, d]) @ vt


def calibrate(canvas_landmarks: list[np.ndarray], labels: list) -> Calibration:
    """Fit offset rotation, anchor and scale so official crops reproduce their official labels.

    On an official crop the world origin sits at distance 2.7 on the optical axis, so for each
    sample: t + R_cv a = (0, 0, 2.7 k) -- linear in (a, k).
    """
    fits = [solve_pnp(lm) for lm in canvas_landmarks]
    truths = [rotation_from_label(lb) for lb in labels]
    offset = project_to_so3(sum(r_cv.T @ FLIP_YZ @ r_true for (r_cv, _, _), r_true in zip(fits, truths)))
    rows, rhs = [], []
    for r_cv, t, _ in fits:
        rows.append(np.hstack([r_cv, -np.array([[0.0], [0.0], [camera.RADIUS]])]))
        rhs.append(-t)
    sol = np.linalg.lstsq(np.vstack(rows), np.concatenate(rhs), rcond=None)[0]
    return Calibration(rotation_offset=offset, anchor=sol[:3], cm_per_unit=float(sol[3]))
