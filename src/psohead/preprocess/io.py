"""Image loading that accepts what users actually have: any mode, bit depth, EXIF rotation."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def _to_rgb8(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: rescale to 8 bits from the actual range the format can hold
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = (arr - arr.min()) / max(arr.max() - arr.min(), 1e-12)
        img = Image.fromarray((arr * 255 + 0.5).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # composite transparency on white so cut-outs keep a clean background
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return img.convert("RGB")


def load_image(image, name: str | None = None) -> Image.Image:
    """Path, PIL image or HxW[x3/4] uint8 array -> RGB PIL image with EXIF orientation applied."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        name = name or str(path)
        if not path.is_file():
            raise InputError(f"{name}: no such file")
        try:
            with Image.open(path) as img:
                img.load()
                img = ImageOps.exif_transpose(img)
                return _to_rgb8(img)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise InputError(f"{name}: not a readable image ({type(err).__name__}: {err})") from None
    if isinstance(image, Image.Image):
        return _to_rgb8(ImageOps.exif_transpose(image))
    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            raise InputError(f"{name or 'array'}: expected a uint8 array, got {arr.dtype}")
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4)):
            return _to_rgb8(Image.fromarray(arr.squeeze(-1) if arr.ndim == 3 and arr.shape[2] == 1 else arr))
        raise InputError(f"{name or 'array'}: expected HxW, HxWx3 or HxWx4, got shape {arr.shape}")
    raise InputError(f"expected an image path, PIL image or uint8 array, got {type(image).__name__}")


def expand_inputs(inputs) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns -> list of paths, order kept."""
    import glob

    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
        elif any(ch in str(item) for ch in "*?["):
            out += [Path(q) for q in sorted(glob.glob(str(item), recursive=True)) if Path(q).is_file()]
        else:
            out.append(p)  # a missing file is reported per item by the batch loop
    return out
