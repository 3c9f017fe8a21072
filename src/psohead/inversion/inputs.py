"""What the user gives reconstruct(): a raw photo, or an aligned crop with its camera label.

A crop's label comes from (first match) the ``label`` argument (25 numbers or a JSON file holding
them, or ``{"label": [...]}``), or a ``dataset.json`` next to the image, which must then list its
file name with a label. Without either the image is treated as a raw photo and run through
``psohead.preprocess.align``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..camera import HEAD_LOOKAT, label_from_yaw_pitch, parse_label, validate_label
from ..errors import InputError, LabelError
from ..io.images import read_image, read_mask
from ..io.masks import check_mask_fits, mask_beside


@dataclass
class PreparedInput:
    image: Image.Image  # aligned RGB crop
    label: torch.Tensor  # [1,25] (no camera offset)
    mask: Image.Image | None  # L, 255 = head
    source: str  # "aligned" (crop + label) or "photo" (preprocessed here)
    label_source: str
    landmarks: np.ndarray | None = None  # [68,2] face landmarks on ``image`` in pixels, when known


def read_label_file(path: Path) -> torch.Tensor:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LabelError(f"label file {path}: not readable JSON ({type(err).__name__})") from None
    if isinstance(data, dict) and "label" in data:
        data = data["label"]
    return parse_label(data, f"label file {path}")


def label_from_dataset_json(image_path: Path) -> torch.Tensor | None:
    """The label of ``image_path`` in a dataset.json beside it ({"labels": [[name, [25]], ...]});
    None without a dataset.json. One that does not list the image is an error: the image sits
    among aligned crops, and cropping it again as a raw photo would be a silent wrong result."""
    meta = image_path.parent / "dataset.json"
    if not meta.is_file():
        return None
    try:
        entries = json.loads(meta.read_text()).get("labels")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        raise LabelError(f"{meta}: not a dataset.json ({type(err).__name__})") from None
    if not isinstance(entries, list):
        raise LabelError(f"{meta}: \"labels\" must be a list of [name, [25 numbers]], got {json.dumps(entries)}; "
                         f"fix it or pass the label of {image_path.name} with --label")
    for entry in entries:
        if isinstance(entry, (list, tuple)) and len(entry) == 2 and Path(str(entry[0])).name == image_path.name:
            return parse_label(entry[1], f"{meta} entry {entry[0]}")
    raise LabelError(f"{meta} lists no label for {image_path.name}; pass one with --label, or move the photo "
                     "out of that folder to have it cropped as a raw photo")


def coerce_label(label, what: str = "label") -> torch.Tensor:
    if isinstance(label, (str, os.PathLike)):
        path = Path(label)
        if not path.is_file():
            raise InputError(f"{what}: file not found: {path}")
        return read_label_file(path)
    return validate_label(torch.as_tensor(label).detach().cpu().reshape(-1), what)


def coerce_landmarks(landmarks, what: str) -> np.ndarray:
    """68 (x, y) points in crop pixels, as an array [68,2]; InputError otherwise."""
    try:
        points = np.asarray(landmarks, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{what}: expected 68 (x, y) points, got {type(landmarks).__name__}") from None
    if points.shape != (68, 2) or not np.isfinite(points).all():
        raise InputError(f"{what}: expected 68 finite (x, y) points, got shape {list(points.shape)}")
    return points


def prepare_input(image, label=None, mask=None, landmarks=None, what: str = "input") -> PreparedInput:
    """Resolve the input into an aligned crop + label (+ mask and 68 face landmarks when known)."""
    path = Path(image) if isinstance(image, (str, os.PathLike)) else None
    pil = read_image(image, what)
    if label is not None:
        lab, label_source = coerce_label(label, f"{what} label"), "given"
    elif path is not None and (found := label_from_dataset_json(path)) is not None:
        lab, label_source = found, "dataset.json"
    else:
        lab = None
    if lab is not None:
        if mask is None and path is not None:
            mask = mask_beside(path)
        elif mask is not None:
            mask = read_mask(mask, f"{what} mask")
        if mask is not None:
            check_mask_fits(mask, pil, f"{what} mask")
        points = None if landmarks is None else coerce_landmarks(landmarks, f"{what} landmarks")
        return PreparedInput(pil, lab, mask, "aligned", label_source, points)
    for given, name, noun in ((mask, "mask", "a mask is"), (landmarks, "landmarks", "landmarks are")):
        if given is not None:
            raise InputError(f"{what}: {noun} only used with an aligned crop and its label (--label, or a "
                             f"dataset.json beside it); a raw photo gets its {name} from the preprocessing")
    try:
        from ..preprocess import align
    except ImportError:
        raise InputError(f"{what}: no camera label given and the face preprocessing is not available; "
                         "pass an aligned crop with --label") from None
    face = align(pil, name=str(path) if path is not None else what)
    return PreparedInput(face.image.convert("RGB"), validate_label(face.label, f"{what} label"),
                         getattr(face, "mask", None), "photo", "preprocess", face.crop_landmarks)


def parse_extra_view(spec: str) -> tuple[Path, float | None]:
    """``PATH[:yaw_degrees]`` -> (path, yaw in radians or None); a file whose name holds a colon
    is taken whole."""
    if Path(spec).is_file():
        return Path(spec), None
    head, sep, tail = spec.rpartition(":")
    if not (sep and head):
        raise InputError(f"--extra-view: file not found: {spec}")
    try:
        degrees = float(tail)
    except ValueError:
        if Path(head).is_file():
            raise InputError(f"--extra-view {spec}: the yaw after ':' must be a number of degrees, "
                             f"got {tail!r}") from None
        raise InputError(f"--extra-view: file not found: {spec}") from None
    if not math.isfinite(degrees) or abs(degrees) > 360:
        raise InputError(f"--extra-view {spec}: the yaw must be a finite number of degrees in [-360, 360], "
                         f"got {tail!r}")
    if not Path(head).is_file():
        raise InputError(f"--extra-view: file not found: {head}")
    return Path(head), math.radians(degrees)


def prepare_extra_view(spec: str) -> PreparedInput:
    """An extra photo of the same head; with a yaw it is taken as an aligned crop at that yaw."""
    path, yaw = parse_extra_view(spec)
    if yaw is None:
        return prepare_input(path, what=f"extra view {path.name}")
    # real labels look at the head centre (the origin), like the crops the preprocessing aligns
    return prepare_input(path, label=label_from_yaw_pitch(yaw, lookat=HEAD_LOOKAT)[0], what=f"extra view {path.name}")
