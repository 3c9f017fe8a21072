"""align(): any photo -> PanoHead-aligned crop, camera label, mask and pose."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ..errors import InputError, NoFaceError
from .crop import CANVAS, MIN_QUAD_SIDE, SQUARE_SIDE, SQUARE_TL, Quad, apply_affine, crop_canvas, initial_quad, \
    quad_to_canvas
from ..io.images import read_image
from .landmarks import Face, detect_upright, face_mesh_points, predict_landmarks
from .mask import person_matte
from .native import check_installed
from .pose import Calibration, estimate_pose, euler_3ddfa, label_from_rotation

MIN_IMAGE_SIDE = 32
# dlib HOG scores of real faces are about 1-2.5; weaker hits (patches, prints on clothes) are not
# counted as other people when the largest face is picked
OTHER_FACE_MIN_SCORE = {"dlib": 0.5, "mediapipe": 0.5}


class FaceTooSmallError(NoFaceError):
    """The face's quad is below the official 256 px minimum and the caller asked to skip it."""


class PreprocessWarning(UserWarning):
    """Something about a photo the user should know; the crop is still made."""


class FaceTooSmallWarning(PreprocessWarning):
    """The face's quad is below the official 256 px minimum; the crop is upsampled."""


class TurnedPhotoWarning(PreprocessWarning):
    """The photo was stored sideways or upside down without an EXIF orientation; it was turned upright."""


class SeveralFacesWarning(PreprocessWarning):
    """The photo shows several faces; the largest is used."""


@dataclass
class AlignedFace:
    image: Image.Image  # RGB, 563x563 (official canvas) or 512x512
    label: torch.Tensor  # [1,25] float32, spec 7.4
    mask: Image.Image | None  # 'L', same size as image
    yaw: float  # degrees, 3DDFA convention (positive: camera toward the subject's left)
    pitch: float
    roll: float
    quad: np.ndarray  # [4,2] refined quad corners in the original image turned upright (TL, BL, BR, TR)
    landmarks: np.ndarray  # [68,2] in the original image turned upright
    crop_landmarks: np.ndarray  # [68,2] on ``image``, in its pixels
    score: float
    detector: str
    small: bool = False  # quad side < 256 px: the official pipeline would drop this face
    report: dict = field(default_factory=dict)


def _inverse(affine: np.ndarray) -> np.ndarray:
    return np.linalg.inv(np.vstack([affine, [0, 0, 1]]))[:2]


# dlib's box for a face framed the official way (the size its detector returns on the sample crops),
# centred on the canvas so that the mirror-averaged prediction sees the same box on a mirrored canvas
CANVAS_BOX = (121, 170, 441, 491)


def canvas_landmarks(rgb: np.ndarray, quad: Quad) -> tuple[np.ndarray, np.ndarray]:
    """Warp the quad to the canvas and predict the 68 points there: the predictor then always sees
    the face at the same scale and upright, so the pose does not depend on how the photo was framed."""
    canvas = crop_canvas(rgb, quad)
    return canvas, predict_landmarks(canvas, CANVAS_BOX, symmetric=True)


def pose_points(canvas: np.ndarray, lm68: np.ndarray) -> np.ndarray:
    """The points the pose is fitted to: the 468 face-mesh points of the canvas's face, or dlib's
    68 where the mesh model finds no face there."""
    mesh = face_mesh_points(canvas, lm68)
    return lm68 if mesh is None else mesh


def refine_quad(rgb: np.ndarray, quad: Quad, calib: Calibration | dict | None = None) -> Quad:
    """Spec 7.3 step 8 with our pose: move/scale the quad so the head origin lands at the
    canvas centre at the official distance; orientation (roll) is kept."""
    a0 = quad_to_canvas(quad)
    pose = estimate_pose(pose_points(*canvas_landmarks(rgb, quad)), calib)
    if not (0.5 < pose.scale < 2.0) or np.abs(pose.anchor_px - CANVAS / 2).max() > CANVAS / 4:
        return quad  # implausible fit (occlusion, extreme pose): keep the landmark quad, like 3DDFA's rejects
    centre = np.array([CANVAS / 2, CANVAS / 2])
    sq_centre = np.array(SQUARE_TL) + SQUARE_SIDE / 2
    # the refined canvas is canvas0 magnified by 1/scale about the anchor, which moves to the centre
    c_canvas0 = (sq_centre - centre) * pose.scale + pose.anchor_px
    c_img = apply_affine(_inverse(a0), c_canvas0[None])[0]
    return Quad(center=c_img, x=quad.x * pose.scale, y=quad.y * pose.scale)


def _align_face(rgb: np.ndarray, face: Face, size: int, with_mask: bool, skip_small: bool,
                calib: Calibration | dict | None, name: str) -> AlignedFace:
    # landmarks re-predicted on the upright, normalised canvas are steadier than the first ones
    quad = initial_quad(face.landmarks)
    quad = initial_quad(apply_affine(_inverse(quad_to_canvas(quad)), canvas_landmarks(rgb, quad)[1]))
    quad = refine_quad(rgb, quad, calib)
    small = quad.side < MIN_QUAD_SIDE
    if small and skip_small:
        raise FaceTooSmallError(f"{name}: face too small (quad side {quad.side:.0f} px < {MIN_QUAD_SIDE:.0f})")
    if small:
        warnings.warn(f"{name}: face quad side {quad.side:.0f} px < {MIN_QUAD_SIDE:.0f} px (the official "
                      f"pipeline drops such faces); the crop is upsampled", FaceTooSmallWarning, stacklevel=3)
    canvas, lm_canvas = canvas_landmarks(rgb, quad)
    points = pose_points(canvas, lm_canvas)
    pose = estimate_pose(points, calib)
    yaw, pitch, roll = euler_3ddfa(pose.rotation)
    img = Image.fromarray(canvas)
    mask = person_matte(canvas, lm_canvas) if with_mask else None
    crop_lm = lm_canvas * (size / CANVAS)
    if size != CANVAS:
        img = img.resize((size, size), Image.LANCZOS)
        mask = mask.resize((size, size), Image.LANCZOS) if mask is not None else None
    out = AlignedFace(image=img, label=label_from_rotation(pose.rotation), mask=mask, yaw=yaw, pitch=pitch,
                      roll=roll, quad=quad.corners(), landmarks=face.landmarks, crop_landmarks=crop_lm,
                      score=face.score,
                      detector=face.detector, small=small)
    out.report = {"detector": face.detector, "score": round(face.score, 4), "yaw": round(yaw, 3),
                  "pitch": round(pitch, 3), "roll": round(roll, 3), "quad": np.round(out.quad, 2).tolist(),
                  "quad_side": round(quad.side, 2), "small_face": small, "reprojection_px": round(pose.reproj_px, 3),
                  "pose_points": len(points),
                  "landmarks": np.round(face.landmarks, 2).tolist()}
    return out


def align_all(image, size: int = CANVAS, with_mask: bool = True, skip_small: bool = False,
              calib: Calibration | dict | None = None, name: str | None = None,
              max_faces: int | None = None) -> list[AlignedFace]:
    """Every detected face (at most max_faces), largest first. Raises NoFaceError when there is none."""
    if size not in (CANVAS, 512):
        raise InputError(f"size must be {CANVAS} (official canvas) or 512, got {size}")
    check_installed()
    is_path = isinstance(image, str) or hasattr(image, "__fspath__")
    name = name or (str(image) if is_path else "image")
    pil = read_image(image, "photo" if is_path else name)  # read_image's messages name a path themselves
    if min(pil.size) < MIN_IMAGE_SIDE:
        raise InputError(f"{name}: image too small ({pil.size[0]}x{pil.size[1]}); need at least "
                         f"{MIN_IMAGE_SIDE} px per side")
    turns, rgb, faces = detect_upright(np.asarray(pil))
    if not faces:
        raise NoFaceError(f"{name}: no face found")
    if turns:
        how = {1: "a quarter turn clockwise", 2: "upside down", 3: "a quarter turn counter-clockwise"}[turns]
        warnings.warn(f"{name}: the photo is stored {how}, with no EXIF orientation; it was turned upright "
                      "before cropping", TurnedPhotoWarning, stacklevel=2)
    counted = [f for f in faces if f is faces[0] or f.score >= OTHER_FACE_MIN_SCORE[f.detector]]
    if max_faces is not None and len(counted) > max_faces:
        warnings.warn(f"{name}: {len(counted)} faces found; using the largest"
                      + (" (psohead crop --all-faces crops every one)" if max_faces == 1 else ""),
                      SeveralFacesWarning, stacklevel=2)
    out = []
    for face in faces:
        if max_faces is not None and len(out) >= max_faces:
            break
        try:
            out.append(_align_face(rgb, face, size, with_mask, skip_small, calib, name))
        except FaceTooSmallError:
            if len(faces) == 1:
                raise
    for face in out:
        face.report["turned_ccw_deg"] = 90 * turns  # its quad and landmarks are in the photo turned upright
    if not out:
        raise FaceTooSmallError(f"{name}: every face is smaller than the official {MIN_QUAD_SIDE:.0f} px quad")
    return out


def align(image, size: int = CANVAS, with_mask: bool = True, skip_small: bool = False,
          calib: Calibration | dict | None = None, name: str | None = None) -> AlignedFace:
    """The largest face of a photo (path, PIL image or uint8 array) aligned the PanoHead way."""
    return align_all(image, size, with_mask, skip_small, calib, name, max_faces=1)[0]
