"""Identity similarity with dlib's ResNet face descriptor (128-d, face-recognition-models weights).

``IdentityModel()`` loads dlib's HOG face detector, the 5-point landmark model and the ResNet
descriptor once; ``model.descriptor(image)`` -> float64 [128] or None when no face is found;
``model.similarity(a, b)`` -> cosine similarity of the two descriptors (None when either image
has no face); ``model.distance(a, b)`` -> Euclidean distance (dlib's rule: < 0.6 = same person).
Images are uint8 [H,W,3] RGB arrays or PIL images.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import InputError, PsoheadError

SAME_PERSON_DISTANCE = 0.6  # dlib's published threshold for its descriptor


def model_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise PsoheadError("identity metric needs the face-recognition-models package (pip install it)")
    return Path(spec.origin).parent / "models"


class IdentityModel:
    def __init__(self, upsample: int = 1, jitter: int = 0):
        import dlib

        models = model_dir()
        self.upsample, self.jitter = upsample, jitter
        self.detector = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def descriptor(self, image) -> np.ndarray | None:
        """128-d descriptor of the largest detected face, or None if there is none."""
        img = np.ascontiguousarray(np.asarray(image.convert("RGB") if hasattr(image, "convert") else image))
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise InputError(f"identity metric needs uint8 RGB images [H,W,3], got {img.dtype} {img.shape}")
        faces = self.detector(img, self.upsample)
        if len(faces) == 0:
            return None
        face = max(faces, key=lambda r: r.width() * r.height())
        shape = self.landmarks(img, face)
        return np.asarray(self.encoder.compute_face_descriptor(img, shape, self.jitter), np.float64)

    def _pair(self, a, b):
        da, db = self.descriptor(a), self.descriptor(b)
        return (None, None) if da is None or db is None else (da, db)

    def similarity(self, a, b) -> float | None:
        da, db = self._pair(a, b)
        if da is None:
            return None
        return float(da @ db / max(np.linalg.norm(da) * np.linalg.norm(db), 1e-12))

    def distance(self, a, b) -> float | None:
        da, db = self._pair(a, b)
        return None if da is None else float(np.linalg.norm(da - db))
