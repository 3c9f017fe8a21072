"""Head pose from face landmarks by PnP against a 3D template; labels as spec 7.4.

Two point sets, each with its own template: MediaPipe's 468 face-mesh points against its own
canonical face mesh (centimetres; x to the subject's left, y up, z out of the face, like PanoHead's
world; exact correspondences, the first choice), or, where the mesh model finds no face, dlib's 68
points mapped onto that mesh (made mirror-symmetric: each point averaged with its mirrored partner).
Both templates are symmetric, so a mirrored photo gives the mirrored pose. Their frontal
orientation and the point that corresponds to PanoHead's world origin differ from 3DDFA's BFM, so a
fixed rotation offset, an anchor point and a cm-per-world-unit scale are calibrated on the official
samples and their mirror images (``benchmarks/bench_pose.py --calibrate`` writes
``assets/pose_calibration.json``): with the mirrored copies the fit is symmetric by construction
(the offset a pure pitch, the anchor on the mid-plane), not a yaw bias fitted to three photos.

Poses are solved in the 563-canvas frame with the official camera: focal 4.2647*563 px and
the principal point at the canvas centre, so the head origin must land at the centre at
distance 2.7 world units (spec 7.4) -- this is what the quad refinement (spec 7.3) enforces.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import camera
from .crop import CANVAS
from ..io.facemesh import MESH_POINTS, MIRROR_68, asset, mesh_mirror, template

# Every point is fitted: without dlib's jaw, pitch leans on the mouth, whose template match breaks
# with smiles (astronaut: 26 deg pitch on 17-67, 2 deg on 0-67; benchmarks/results/preprocess.md).
FLIP_YZ = np.diag([1.0, -1.0, -1.0])  # OpenCV camera axes <-> 3DDFA/OpenGL view axes


@dataclass
class Calibration:
    rotation_offset: np.ndarray  # [3,3]: world (BFM) frame -> template frame
    anchor: np.ndarray  # [3] template point that sits at PanoHead's world origin (cm)
    cm_per_unit: float  # template centimetres per PanoHead world unit
    points: int = 68  # the point set (68 dlib or 468 mesh points) it was fitted for

    def to_json(self) -> dict:
        return {"rotation_offset": self.rotation_offset.tolist(), "anchor": self.anchor.tolist(),
                "cm_per_unit": self.cm_per_unit, "points": self.points}


@dataclass
class Pose:
    rotation: np.ndarray  # [3,3] 3DDFA-convention head rotation (label = spec 7.4 of this)
    anchor_px: np.ndarray  # [2] canvas pixel where the world origin projects
    scale: float  # >1: the head appears larger than PanoHead's framing wants
    reproj_px: float  # RMS reprojection error of the fitted landmarks


def mirror_landmarks(lm_canvas: np.ndarray) -> np.ndarray:
    """The canvas points of the horizontally mirrored canvas, relabelled so each keeps its meaning
    (dlib numbers its points by image side; mesh points by vertex). dlib gives pixel centres, the
    mesh model pixel-edge coordinates."""
    if len(lm_canvas) == MESH_POINTS:
        out = lm_canvas[mesh_mirror()].astype(np.float64)
        return np.c_[CANVAS - out[:, 0], out[:, 1]]
    out = lm_canvas[MIRROR_68].astype(np.float64)
    return np.c_[CANVAS - 1 - out[:, 0], out[:, 1]]



@functools.lru_cache(maxsize=1)
def default_calibration() -> dict[int, Calibration]:
    """{point count: Calibration} from assets/pose_calibration.json."""
    data = json.loads(asset("pose_calibration.json").read_text())
    return {int(d["points"]): Calibration(np.array(d["rotation_offset"]), np.array(d["anchor"]),
                                          float(d["cm_per_unit"]), int(d["points"])) for d in data.values()}


def calibration_for(points: int, calib: Calibration | dict | None = None) -> Calibration:
    """The calibration of a point set from ``calib`` (one, or {count: Calibration}; None: the bundled)."""
    calib = default_calibration() if calib is None else calib
    found = calib.get(points) if isinstance(calib, dict) else calib
    if found is None or found.points != points:
        raise ValueError(f"no pose calibration for {points} landmarks")
    return found


def canvas_intrinsics() -> np.ndarray:
    f = camera.FOCAL * CANVAS
    return np.array([[f, 0, CANVAS / 2], [0, f, CANVAS / 2], [0, 0, 1.0]])


def solve_pnp(lm_canvas: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Template -> OpenCV camera (R [3,3], t [3] in cm) from 68 canvas-frame points, RMS px error."""
    import cv2

    obj, img, k = template(len(lm_canvas)), lm_canvas.astype(np.float64), canvas_intrinsics()
    # start frontal at a plausible distance so the iterative solver never flips behind the camera
    rvec0 = cv2.Rodrigues(FLIP_YZ)[0]
    tvec0 = np.array([[0.0], [0.0], [60.0]])
    ok, rvec, tvec = cv2.solvePnP(obj, img, k, None, rvec0, tvec0, True, cv2.SOLVEPNP_ITERATIVE)
    r = cv2.Rodrigues(rvec)[0]
    proj = cv2.projectPoints(obj, rvec, tvec, k, None)[0].reshape(-1, 2)
    return r, tvec.reshape(3), float(np.sqrt(((proj - img) ** 2).sum(1).mean()))


def estimate_pose(lm_canvas: np.ndarray, calib: Calibration | dict | None = None) -> Pose:
    calib = calibration_for(len(lm_canvas), calib)
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

    Every sample also enters mirrored (mirrored points, ``camera.flip_label`` of its label): the
    mirror image of a photo is as real as the photo, and with it the fit cannot prefer one side.
    On an official crop the world origin sits at distance 2.7 on the optical axis, so for each
    sample: t + R_cv a = (0, 0, 2.7 k) -- linear in (a, k).
    """
    canvas_landmarks = list(canvas_landmarks) + [mirror_landmarks(lm) for lm in canvas_landmarks]
    labels = list(labels) + [camera.flip_label(lb) for lb in labels]
    fits = [solve_pnp(lm) for lm in canvas_landmarks]
    truths = [rotation_from_label(lb) for lb in labels]
    offset = project_to_so3(sum(r_cv.T @ FLIP_YZ @ r_true for (r_cv, _, _), r_true in zip(fits, truths)))
    rows, rhs = [], []
    for r_cv, t, _ in fits:
        rows.append(np.hstack([r_cv, -np.array([[0.0], [0.0], [camera.RADIUS]])]))
        rhs.append(-t)
    sol = np.linalg.lstsq(np.vstack(rows), np.concatenate(rhs), rcond=None)[0]
    return Calibration(rotation_offset=offset, anchor=sol[:3], cm_per_unit=float(sol[3]),
                       points=len(canvas_landmarks[0]))
