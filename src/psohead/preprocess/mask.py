"""Soft person matte (head, hair, neck, shoulders) from MediaPipe selfie segmentation."""
from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from .native import quiet_native_logs, require


@functools.lru_cache(maxsize=1)
def _segmenter():
    selfie_segmentation = require("mediapipe.python.solutions.selfie_segmentation")
    # general (square, 256x256 input) model: the crops are square
    with quiet_native_logs():
        return selfie_segmentation.SelfieSegmentation(model_selection=0)


def person_matte(rgb: np.ndarray) -> Image.Image:
    """HxWx3 uint8 -> soft 0-255 matte (PIL 'L') of the same size."""
    segmenter = _segmenter()
    with quiet_native_logs():
        prob = segmenter.process(np.ascontiguousarray(rgb)).segmentation_mask
    return Image.fromarray(np.clip(prob * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
