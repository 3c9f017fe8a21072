"""FFHQ-style quad from 68 landmarks (spec 7.2) and the official 563x563 crop (spec 7.5)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CANVAS = 563  # int(512 * 1.1): 512 square + 10 % top, 5 % left/right, 0 % bottom margins
SQUARE_TL = (25.0, 51.0)  # where the quad's top-left corner lands
SQUARE_SIDE = 511.0
MIN_QUAD_SIDE = 256.0  # the official pipeline drops faces whose quad is smaller


@dataclass
class Quad:
    center: np.ndarray  # [2]
    x: np.ndarray  # half-side vector pointing to the image right of the face
    y: np.ndarray  # half-side vector pointing down the face

    def corners(self) -> np.ndarray:
        """[4,2]: c-x-y, c-x+y, c+x+y, c+x-y (top-left, bottom-left, bottom-right, top-right)."""
        c, x, y = self.center, self.x, self.y
        return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])

    @property
    def side(self) -> float:
        return float(2 * np.hypot(*self.x))


def initial_quad(lm: np.ndarray) -> Quad:
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_mid = 0.5 * (eye_l + eye_r)
    e = eye_r - eye_l
    m = 0.5 * (lm[48] + lm[54]) - eye_mid
    x = np.array([e[0] + m[1], e[1] - m[0]])
    x = x / np.hypot(*x) * max(2.0 * np.hypot(*e), 1.8 * np.hypot(*m))
    y = np.array([-x[1], x[0]])
    return Quad(center=eye_mid + 0.1 * m, x=x, y=y)


def quad_to_canvas(quad: Quad, scale: float = 1.0) -> np.ndarray:
    """2x3 affine taking image pixels to canvas pixels (canvas side CANVAS*scale)."""
    import cv2

    tl, bl, br, _ = quad.corners()
    x0, y0 = SQUARE_TL
    dst = np.array([[x0, y0], [x0, y0 + SQUARE_SIDE], [x0 + SQUARE_SIDE, y0 + SQUARE_SIDE]]) * scale
    return cv2.getAffineTransform(np.float32([tl, bl, br]), np.float32(dst)).astype(np.float64)


def apply_affine(a: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ a[:, :2].T + a[:, 2]


def crop_canvas(rgb: np.ndarray, quad: Quad) -> np.ndarray:
    """Warp at 2x (LANCZOS4, reflect border), area-downsample to 563; blur what came from outside."""
    import cv2

    big = CANVAS * 2
    a = quad_to_canvas(quad, 2.0)
    warped = cv2.warpAffine(rgb, a, (big, big), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT)
    inside = cv2.warpAffine(np.ones(rgb.shape[:2], np.float32), a, (big, big), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    out = cv2.resize(warped, (CANVAS, CANVAS), interpolation=cv2.INTER_AREA).astype(np.float32)
    outside = 1.0 - cv2.resize(inside, (CANVAS, CANVAS), interpolation=cv2.INTER_AREA)
    if outside.max() > 1e-3:
        # fully-outside pixels stay fully blurred; the blur only softens the seam
        soft = np.clip(np.maximum(outside, cv2.blur(outside, (21, 21))), 0, 1)[..., None]
        blurred = cv2.blur(out, (31, 31))
        out = out * (1 - soft) + blurred * soft
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
