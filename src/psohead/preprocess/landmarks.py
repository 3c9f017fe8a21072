"""Face detection (dlib HOG, MediaPipe fallback) and dlib's 68-point landmarks.

Detection runs on a copy downscaled to at most ``DETECT_MAX_SIDE`` pixels; the landmark
predictor then runs on the full-resolution image so crops keep all the detail.
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.facemesh import MESH_POINTS, MIRROR_68, mesh_mirror
from .native import quiet_native_logs, require

DETECT_MAX_SIDE = 1024


@dataclass
class Face:
    box: tuple[float, float, float, float]  # left, top, right, bottom in original pixels
    score: float
    detector: str  # "dlib" or "mediapipe"
    landmarks: np.ndarray  # [68,2] float64, original pixels


def _predictor_path() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        require("face_recognition_models", load=False)
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise InputError(f"68-point landmark model missing: {path}")
    return path


@functools.lru_cache(maxsize=1)
def _dlib_models():
    dlib = require("dlib")
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(_predictor_path()))


@functools.lru_cache(maxsize=1)
def _mediapipe_detector():
    face_detection = require("mediapipe.python.solutions.face_detection")
    # full-range model: also finds small and turned faces
    with quiet_native_logs():
        return face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)


def _downscale(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    cv2 = require("cv2")
    h, w = rgb.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
    if scale < 1.0:
        rgb = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return rgb, scale


def _dlib_boxes(small: np.ndarray) -> list[tuple[tuple[float, ...], float]]:
    cv2 = require("cv2")
    detector, _ = _dlib_models()
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    rects, scores, _ = detector.run(gray, 1, 0.0)
    return [((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores)]


def _mediapipe_boxes(small: np.ndarray) -> list[tuple[tuple[float, ...], float]]:
    h, w = small.shape[:2]
    detector = _mediapipe_detector()
    with quiet_native_logs():
        result = detector.process(np.ascontiguousarray(small))
    out = []
    for det in result.detections or []:
        b = det.location_data.relative_bounding_box
        out.append(((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h), float(det.score[0])))
    return out


def face_boxes(rgb: np.ndarray, detector: str = "dlib") -> list[tuple[tuple[float, ...], float]]:
    """Boxes (l, t, r, b, original pixels) and scores of one detector, without landmarks."""
    small, scale = _downscale(rgb)
    found = _dlib_boxes(small) if detector == "dlib" else _mediapipe_boxes(small)
    return [(tuple(v / scale for v in box), score) for box, score in found]


# index of each point's mirror partner in the 68-point scheme (jaw, brows, nose, eyes, mouth)


def predict_landmarks(rgb: np.ndarray, box, symmetric: bool = False) -> np.ndarray:
    """68 points [68,2] inside box (l, t, r, b). symmetric: average with the prediction on the mirror
    image, which cancels the predictor's left/right bias and halves its jitter (steadier yaw)."""
    import cv2
    import dlib

    _, predictor = _dlib_models()
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)

    def run(img, b):
        shape = predictor(img, dlib.rectangle(*[int(round(v)) for v in b]))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    pts = run(gray, box)
    if symmetric:
        w = gray.shape[1]
        l, t, r, b = box
        mirrored = run(np.ascontiguousarray(gray[:, ::-1]), (w - 1 - r, t, w - 1 - l, b))
        mirrored[:, 0] = w - 1 - mirrored[:, 0]
        pts = 0.5 * (pts + mirrored[MIRROR_68])
    return pts


def detect_faces(rgb: np.ndarray) -> list[Face]:
    """All faces, largest first. dlib HOG first; MediaPipe only when dlib finds nothing."""
    small, scale = _downscale(rgb)
    found, detector = _dlib_boxes(small), "dlib"
    if not found:
        found, detector = _mediapipe_boxes(small), "mediapipe"
    faces = []
    for box, score in found:
        box = tuple(v / scale for v in box)
        if detector == "mediapipe":
            # MediaPipe boxes sit higher and tighter than dlib's; shift to what the predictor expects
            l, t, r, b = box
            side = r - l
            box = (l - 0.05 * side, t + 0.1 * side, r + 0.05 * side, b + 0.15 * side)
        faces.append(Face(box=box, score=score, detector=detector, landmarks=predict_landmarks(rgb, box)))
    faces.sort(key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), reverse=True)
    return faces


@functools.lru_cache(maxsize=1)
def _face_mesh():
    face_mesh = require("mediapipe.python.solutions.face_mesh")
    # several faces, so the one that matches dlib's can be picked when someone stands beside
    with quiet_native_logs():
        return face_mesh.FaceMesh(static_image_mode=True, max_num_faces=4, min_detection_confidence=0.5)






def _mesh_near(rgb: np.ndarray, near: np.ndarray) -> np.ndarray | None:
    h, w = rgb.shape[:2]
    mesh = _face_mesh()
    with quiet_native_logs():
        found = mesh.process(np.ascontiguousarray(rgb)).multi_face_landmarks or []
    faces = [np.array([[p.x * w, p.y * h] for p in f.landmark[:MESH_POINTS]]) for f in found]
    if not faces:
        return None
    centre, size = near.mean(0), np.ptp(near, 0).max()
    best = min(faces, key=lambda f: np.linalg.norm(f.mean(0) - centre))
    return best if np.linalg.norm(best.mean(0) - centre) < 0.25 * size else None


def face_mesh_points(rgb: np.ndarray, near: np.ndarray) -> np.ndarray | None:
    """MediaPipe's 468 face-mesh points [468,2] (pixel-edge coordinates) of the face whose centre is
    that of ``near`` (the 68 dlib points), averaged with the prediction on the mirror image; None
    when the mesh model finds no such face (e.g. a strong profile) on either image."""
    w = rgb.shape[1]
    pts = _mesh_near(rgb, near)
    flipped = near.copy()
    flipped[:, 0] = w - 1 - flipped[:, 0]
    mirrored = _mesh_near(np.ascontiguousarray(rgb[:, ::-1]), flipped)
    if pts is None or mirrored is None:
        return None
    mirrored[:, 0] = w - mirrored[:, 0]
    return 0.5 * (pts + mirrored[mesh_mirror()])
