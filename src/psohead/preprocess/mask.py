"""Soft matte of the subject (head, hair, neck, shoulders) from MediaPipe selfie segmentation.

The segmenter marks every person (and some person-like objects) in the image; the subject is the
connected region of its matte that holds the detected face, so other people and objects beside
the subject stay out of the mask and hence out of the reconstruction's loss.
"""
from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from .native import quiet_native_logs, require

INSIDE = 0.5  # matte value that counts as person when finding connected regions
EDGE_PX = 4  # the kept region grows by this much so its own soft edge survives
# Regions are found after an erosion by this share of the image side: the segmenter often joins two
# people by a thin bridge of shoulders or hair, which the erosion cuts (it is grown back afterwards).
NECK_FRACTION = 0.02


@functools.lru_cache(maxsize=1)
def _segmenter():
    selfie_segmentation = require("mediapipe.python.solutions.selfie_segmentation")
    # general (square, 256x256 input) model: the crops are square
    with quiet_native_logs():
        return selfie_segmentation.SelfieSegmentation(model_selection=0)


def subject_region(prob: np.ndarray, face_points: np.ndarray) -> np.ndarray | None:
    """Boolean [H,W]: the connected region (8-neighbour) of ``prob >= INSIDE``, eroded by
    ``NECK_FRACTION`` of the side, that covers most of the face (convex hull of ``face_points``
    [N,2], x/y pixels), grown back by the erosion plus ``EDGE_PX``. None when no region touches the
    face (the matte missed it): the caller then keeps the whole matte."""
    import cv2
    from scipy import ndimage

    h, w = prob.shape
    face = np.zeros((h, w), np.uint8)
    hull = cv2.convexHull(np.round(face_points).astype(np.int32).reshape(-1, 1, 2))
    cv2.fillConvexPoly(face, hull, 1)
    person = prob >= INSIDE
    erode = max(1, round(NECK_FRACTION * max(h, w)))
    for grow in (erode, 0):  # without the erosion when it leaves nothing under the face
        core = ndimage.binary_erosion(person, iterations=grow) if grow else person
        labels, n = ndimage.label(core, structure=np.ones((3, 3)))
        overlap = np.bincount(labels[face > 0], minlength=n + 1)[1:]
        if n and overlap.max() > 0:
            keep = labels == 1 + int(overlap.argmax())
            return ndimage.binary_dilation(keep, iterations=grow + EDGE_PX)
    return None


def person_matte(rgb: np.ndarray, face_points: np.ndarray | None = None) -> Image.Image:
    """HxWx3 uint8 -> soft 0-255 matte (PIL 'L') of the same size. With ``face_points`` (the
    subject's landmarks, [N,2] pixels) only the subject's connected region is kept."""
    segmenter = _segmenter()
    with quiet_native_logs():
        prob = segmenter.process(np.ascontiguousarray(rgb)).segmentation_mask
    if face_points is not None:
        region = subject_region(prob, np.asarray(face_points, np.float64))
        if region is not None:
            prob = prob * region
    return Image.fromarray(np.clip(prob * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
