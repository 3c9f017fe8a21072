"""Reading user images for inversion and turning them into target tensors."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError

ImageLike = "str | os.PathLike | Image.Image | np.ndarray | torch.Tensor"


def open_rgb(image, what: str = "image") -> Image.Image:
    """Path, PIL image, HxWx{1,3,4} uint8/float array or [3,H,W]/[1,3,H,W] tensor in [-1,1] -> RGB PIL."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise InputError(f"{what}: file not found: {path}")
        try:
            with Image.open(path) as im:
                im = ImageOps.exif_transpose(im)
                im.load()
        except (UnidentifiedImageError, OSError) as err:
            raise InputError(f"{what}: {path} is not a readable image ({err.__class__.__name__})") from None
        return _to_rgb(im)
    if isinstance(image, Image.Image):
        return _to_rgb(image)
    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
        t = t[0] if t.ndim == 4 else t
        if t.ndim != 3 or t.shape[0] != 3:
            raise InputError(f"{what}: tensor must be [3,H,W] or [1,3,H,W] in [-1,1], got {tuple(image.shape)}")
        arr = ((t.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        return Image.fromarray(arr)
    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            arr = (np.clip(arr.astype(np.float64), 0, 1) * 255).round().astype(np.uint8)
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3, 4)):
            return _to_rgb(Image.fromarray(arr.squeeze(2) if arr.ndim == 3 and arr.shape[2] == 1 else arr))
        raise InputError(f"{what}: array must be HxW or HxWx(1|3|4), got shape {arr.shape}")
    raise InputError(f"{what}: unsupported type {type(image).__name__}")


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray((arr / max(arr.max(), 1) * 255).astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (0, 0, 0))
        canvas.paste(rgba, mask=rgba.split()[3])
        return canvas
    return im.convert("RGB")


def square_resize(im: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square and LANCZOS-resize (what the official projector does to targets)."""
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return im.resize((size, size), Image.LANCZOS) if s != size else im


def to_tensor(im: Image.Image, size: int | None = None) -> torch.Tensor:
    """RGB PIL -> [1,3,S,S] float32 in [-1,1]."""
    if size is not None:
        im = square_resize(im, size)
    arr = np.asarray(im.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0) / 127.5 - 1


def mask_tensor(mask, size: int) -> torch.Tensor:
    """PIL L / array mask (0..255 or 0..1) -> [1,1,S,S] float in [0,1]."""
    if isinstance(mask, torch.Tensor):
        m = mask.detach().float().cpu().reshape(1, 1, *mask.shape[-2:])
        return torch.nn.functional.interpolate(m, size=(size, size), mode="bilinear", align_corners=False,
                                               antialias=True).clamp(0, 1)
    im = mask if isinstance(mask, Image.Image) else Image.fromarray(np.asarray(mask))
    im = square_resize(im.convert("L"), size)
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)[None, None]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N,3,H,W] in [-1,1] -> [N,H,W,3] uint8 (official mapping x*127.5 + 128, clamped)."""
    return (images.detach().float().cpu() * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
