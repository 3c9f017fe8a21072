"""What the user gives reconstruct(): a raw photo, or an aligned crop with its camera label.

A crop's label comes from (first match) the ``label`` argument (25 numbers or a JSON file holding
them, or ``{"label": [...]}``), or a ``dataset.json`` next to the image that lists its file name.
Without a label the image is treated as a raw photo and run through ``psohead.preprocess.align``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ..camera import HEAD_LOOKAT, label_from_yaw_pitch, parse_label, validate_label
from ..errors import InputError, LabelError
from ..io.images import read_image, read_mask
from ..io.masks import mask_beside


@dataclass
class PreparedInput:
    image: Image.Image  # aligned RGB crop
    label: torch.Tensor  # [1,25] (no camera offset)
    mask: Image.Image | None  # L, 255 = head
    source: str  # "aligned" (crop + label) or "photo" (preprocessed here)
    label_source: str


def read_label_file(path: Path) -> torch.Tensor:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LabelError(f"label file {path}: not readable JSON ({type(err).__name__})") from None
    if isinstance(data, dict) and "label" in data:
        data = data["label"]
    return parse_label(data, f"label file {path}")


def label_from_dataset_json(image_path: Path) -> torch.Tensor | None:
    """The label of ``image_path`` in a dataset.json beside it ({"labels": [[name, [25]], ...]})."""
    meta = image_path.parent / "dataset.json"
    if not meta.is_file():
        return None
    try:
        entries = json.loads(meta.read_text()).get("labels") or []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        raise LabelError(f"{meta}: not a dataset.json ({type(err).__name__})") from None
    for entry in entries:
        if isinstance(entry, (list, tuple)) and len(entry) == 2 and Path(str(entry[0])).name == image_path.name:
            return parse_label(entry[1], f"{meta} entry {entry[0]}")
    return None


def coerce_label(label, what: str = "label") -> torch.Tensor:
    if isinstance(label, (str, os.PathLike)):
        path = Path(label)
        if not path.is_file():
            raise InputError(f"{what}: file not found: {path}")
        return read_label_file(path)
    return validate_label(torch.as_tensor(label).detach().cpu().reshape(-1), what)


def prepare_input(image, label=None, mask=None, what: str = "input") -> PreparedInput:
    """Resolve the input into an aligned crop + label (+ mask when known)."""
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
        return PreparedInput(pil, lab, mask, "aligned", label_source)
    try:
        from ..preprocess import align
    except ImportError:
        raise InputError(f"{what}: no camera label given and the face preprocessing is not available; "
                         "pass an aligned crop with --label") from None
    face = align(pil, name=str(path) if path is not None else what)
    return PreparedInput(face.image.convert("RGB"), validate_label(face.label, f"{what} label"),
                         getattr(face, "mask", None), "photo", "preprocess")


def parse_extra_view(spec: str) -> tuple[Path, float | None]:
    """``PATH[:yaw_degrees]`` -> (path, yaw in radians or None)."""
    path, yaw = spec, None
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            yaw = math.radians(float(tail))
            path = head
        except ValueError:
            pass
    if not Path(path).is_file():
        raise InputError(f"--extra-view: file not found: {path}")
    return Path(path), yaw


def prepare_extra_view(spec: str) -> PreparedInput:
    """An extra photo of the same head; with a yaw it is taken as an aligned crop at that yaw."""
    path, yaw = parse_extra_view(spec)
    if yaw is None:
        return prepare_input(path, what=f"extra view {path.name}")
    # real labels look at the head centre (the origin), like the crops the preprocessing aligns
    return prepare_input(path, label=label_from_yaw_pitch(yaw, lookat=HEAD_LOOKAT)[0], what=f"extra view {path.name}")
