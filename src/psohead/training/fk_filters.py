"""Quality checks for FK-Enhance back views (docs/training.md, "FK-Enhance").

* Mask plausibility: foreground area within a range, one connected blob, the top of the head and
  the sides not cut by the image border (the bottom may be: neck and shoulders).
* Face leaking into the back ("Janus" heads), two independent tests:
  - ``detector``: a frontal-face detector on the back view (dlib HOG when importable, else
    MediaPipe). A back view must not contain a face. dlib finds every frontal SynthHeads face and
    the man.jpg example at 256 px, and no SynthHeads back view within +-20 degrees of yaw pi;
    MediaPipe fires on some of those backs (score up to 0.71), hence its higher threshold.
  - ``mirror``: a GAN that copies the face onto the back renders, from the back camera at yaw
    pi + d, what it renders from the front at yaw -d (mirrored for a face reflected through the
    ear plane, unmirrored for one rotated by pi). So the back render is correlated with the front
    render of the same latent, both ways; the band-pass filter compares facial structure
    (eyes, mouth, nose) rather than colour, so bald heads and skin-coloured backs do not count.
    On SynthHeads the score is <= 0.40 for real backs and >= 0.60 for a face seen 17 degrees
    off (the weakest copy), hence the default threshold 0.5.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from ..errors import InputError

MASK_REASONS = ("mask_too_small", "mask_too_large", "mask_blobs", "mask_top_border", "mask_side_border")
FACE_REASONS = ("face_detected", "front_copy")
FACE_CHECKS = ("both", "detector", "mirror", "none")
DETECT_SIZE = 256     # the detector sees every view at this size (calibrated there)
MIRROR_SIZE = 64      # the mirror test compares views at this size ...
MIRROR_BAND = (0.7, 2.0)  # ... band-passed by a difference of Gaussians with these sigmas (px) ...
MIRROR_SHIFT = 8      # ... and aligned by the best shift within this many px (1/8 of the size)
MEDIAPIPE_MIN_SCORE = 0.75


@dataclass
class FKFilters:
    """Thresholds; every fraction is of the image (area) or of a border row/column.

    For scale: the two PanoHead sample masks (spec data) have area 0.56 / 0.62 and top-row
    contact 0.12 / 0.20 (hair is often cut by the crop); SynthHeads back views area 0.36-0.55,
    top-row contact 0-0.25, no side contact.
    """

    min_area: float = 0.15         # foreground share of the image
    max_area: float = 0.85
    min_main_blob: float = 0.95    # share of the foreground inside the largest connected blob
    max_top_border: float = 0.35   # share of the top row that is foreground
    max_side_border: float = 0.50  # share of the left or right column that is foreground
    keep_top: float = 0.7          # of the renders that pass the other checks, the best-scored share (D)
    face_min_score: float = 0.0    # dlib detector score counted as a face (dlib's own threshold)
    mirror_max: float = 0.5        # front/back band-pass correlation above which a face copy is assumed

    def validate(self) -> None:
        for name in ("min_area", "max_area", "min_main_blob", "max_top_border", "max_side_border"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v <= 1):
                raise InputError(f"filter {name} = {v}: must lie in [0, 1]")
        if self.min_area > self.max_area:
            raise InputError(f"filter min_area {self.min_area} is above max_area {self.max_area}")
        if not (0 < self.keep_top <= 1):
            raise InputError(f"--d-keep {self.keep_top}: must lie in (0, 1]")
        if not math.isfinite(self.face_min_score) or not math.isfinite(self.mirror_max):
            raise InputError("filter face_min_score and mirror_max must be finite")

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Masks

def mask_stats(mask: np.ndarray) -> dict:
    """Area, main-blob share and border contact of a uint8 HxW mask (foreground = value >= 128)."""
    fg = np.asarray(mask) >= 128
    total = int(fg.sum())
    main = 0.0
    if total:
        labels, n = ndimage.label(fg, structure=np.ones((3, 3)))  # 8-connected
        main = float(np.bincount(labels.ravel())[1:].max() / total) if n else 0.0
    return {"area": round(total / fg.size, 5), "main_blob": round(main, 5),
            "border_top": round(float(fg[0].mean()), 5),
            "border_side": round(float(max(fg[:, 0].mean(), fg[:, -1].mean())), 5)}


def mask_reasons(stats: dict, cfg: FKFilters) -> list[str]:
    """Every failed mask check, in MASK_REASONS order."""
    out = []
    if stats["area"] < cfg.min_area:
        out.append("mask_too_small")
    if stats["area"] > cfg.max_area:
        out.append("mask_too_large")
    if stats["area"] > 0 and stats["main_blob"] < cfg.min_main_blob:
        out.append("mask_blobs")
    if stats["border_top"] > cfg.max_top_border:
        out.append("mask_top_border")
    if stats["border_side"] > cfg.max_side_border:
        out.append("mask_side_border")
    return out


# ---------------------------------------------------------------------------------------------
# Faces

def available_detector() -> str | None:
    for name in ("dlib", "mediapipe"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


class FaceDetector:
    """Largest detector score of any face in an image (None: no face)."""

    def __init__(self, name: str | None = None):
        self.name = name or available_detector()
        if self.name is None:
            raise InputError("the face-leak detector needs dlib or mediapipe (pip install psohead[preprocess]); "
                             "use --face-check mirror or none")

    def score(self, rgb: np.ndarray) -> float | None:
        from ..preprocess.landmarks import face_boxes
        img = np.asarray(Image.fromarray(rgb).resize((DETECT_SIZE, DETECT_SIZE), Image.LANCZOS))
        scores = [s for _, s in face_boxes(img, self.name)]
        return round(max(scores), 4) if scores else None

    def is_face(self, score: float | None, cfg: FKFilters) -> bool:
        if score is None:
            return False
        return score >= (cfg.face_min_score if self.name == "dlib" else MEDIAPIPE_MIN_SCORE)


def _band(rgb: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    grey = np.asarray(Image.fromarray(rgb).convert("L").resize((MIRROR_SIZE,) * 2, Image.BILINEAR), np.float64) / 255
    m = np.asarray(Image.fromarray(mask).resize((MIRROR_SIZE,) * 2, Image.BILINEAR), np.float64) / 255
    lo, hi = MIRROR_BAND
    return ndimage.gaussian_filter(grey, lo) - ndimage.gaussian_filter(grey, hi), m > 0.5


def _correlation(a, a_fg, b, b_fg) -> float:
    sel = a_fg & b_fg
    if sel.sum() < 0.05 * sel.size:  # too little common foreground to say anything
        return 0.0
    x, y = a[sel] - a[sel].mean(), b[sel] - b[sel].mean()
    return float((x * y).sum() / math.sqrt(float((x * x).sum() * (y * y).sum()) + 1e-12))


def mirror_similarity(back_rgb: np.ndarray, back_mask: np.ndarray, front_rgb: np.ndarray,
                      front_mask: np.ndarray) -> float:
    """Band-pass correlation of the back view with the front view, mirrored or not (the larger)."""
    b, b_fg = _band(back_rgb, back_mask)
    f, f_fg = _band(front_rgb, front_mask)
    return round(max(_shifted_correlation(b, b_fg, f[:, ::-1], f_fg[:, ::-1]), _shifted_correlation(b, b_fg, f, f_fg)), 4)


def _shifted_correlation(a, a_fg, b, b_fg) -> float:
    """Best correlation over small shifts of ``b``: a copied face need not sit where the front's
    does (parallax of a face in front of the orbit centre, a copy a few degrees off)."""
    step = max(1, MIRROR_SHIFT // 4)
    shifts = range(-MIRROR_SHIFT, MIRROR_SHIFT + 1, step)
    return max(_correlation(a, a_fg, np.roll(b, (dy, dx), (0, 1)), np.roll(b_fg, (dy, dx), (0, 1)))
               for dy in shifts for dx in shifts)
