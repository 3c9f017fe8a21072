"""The one image reader of psohead, and the conversions between images and tensors.

Every command reads pictures through :func:`read_image`, so ``psohead crop``, ``psohead
reconstruct``, datasets, training, FK-Enhance and the web page see the same pixels in the same
file:

* EXIF orientation is applied (a phone photo stored sideways comes out upright);
* transparency is composited on white (:data:`ALPHA_BACKGROUND`), so a cut-out keeps a plain,
  light background;
* 16-bit images are scaled by their format's full range (65535 -> 255), greyscale and palette
  images become RGB, CMYK is converted by PIL;
* a picture larger than :data:`MAX_PIXELS` is refused before it is decoded (a decompression
  bomb, or a photo that would take gigabytes: downscale it first).
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
MAX_PIXELS = 100_000_000  # 100 MP: above any phone or camera photo's default output
ALPHA_BACKGROUND = (255, 255, 255)
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def is_image_file(path: str | os.PathLike) -> bool:
    """A visible file whose suffix is one of :data:`IMAGE_SUFFIXES`."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def _check_size(w: int, h: int, max_pixels: int, what: str) -> None:
    if w * h > max_pixels:
        raise InputError(f"{what}: image is {w}x{h} pixels ({w * h / 1e6:.0f} MP); the limit is "
                         f"{max_pixels / 1e6:g} MP: downscale it first")


def _open(source, what: str, max_pixels: int) -> Image.Image:
    """Decoded PIL image of a path or encoded bytes, size checked before decoding."""
    try:
        with warnings.catch_warnings():  # our own limit below replaces PIL's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                _check_size(*im.size, max_pixels, what)
                im.load()
                return ImageOps.exif_transpose(im)
    except Image.DecompressionBombError:  # PIL's own ceiling, far above ours: the header alone says so
        raise InputError(f"{what}: image declares far more pixels than the limit of {max_pixels / 1e6:g} MP: "
                         "downscale it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise InputError(f"{what}: not a readable image (corrupt, or not JPEG, PNG, WebP, BMP or TIFF)") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB (module docstring)."""
    if im.mode in _SIXTEEN_BIT:
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(arr / 65535 * 255 + 0.5, 0, 255).astype(np.uint8), "L")
    elif im.mode == "F":  # float images are taken as intensities in [0, 1]
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(arr * 255 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return im.convert("RGB")


def read_image(image, what: str = "image", max_pixels: int | None = None) -> Image.Image:
    """RGB PIL image from a path, encoded bytes, a PIL image, an array or a tensor.

    Arrays: HxW, HxWx1, HxWx3 or HxWx4, uint8 (0..255) or float (0..1). Tensors: [3,H,W] or
    [1,3,H,W] in [-1, 1] (what the generator renders). ``max_pixels``: a lower limit than
    :data:`MAX_PIXELS`. Bad input raises one-line InputError.
    """
    limit = MAX_PIXELS if max_pixels is None else min(max_pixels, MAX_PIXELS)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise InputError(f"{what}: file not found: {path}")
        return _to_rgb(_open(path, f"{what} {path}", limit))
    if isinstance(image, (bytes, bytearray)):
        return _to_rgb(_open(io.BytesIO(image), what, limit))
    if isinstance(image, Image.Image):
        _check_size(*image.size, limit, what)
        return _to_rgb(ImageOps.exif_transpose(image))
    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
        t = t[0] if t.ndim == 4 and t.shape[0] == 1 else t
        if t.ndim != 3 or t.shape[0] != 3:
            raise InputError(f"{what}: tensor must be [3,H,W] or [1,3,H,W] in [-1,1], got {tuple(image.shape)}")
        return Image.fromarray(to_uint8(t[None])[0])
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
            raise InputError(f"{what}: array must be HxW or HxWx(1|3|4), got shape {image.shape}")
        if arr.dtype != np.uint8:
            if not np.issubdtype(arr.dtype, np.floating):
                raise InputError(f"{what}: array must be uint8 (0..255) or float (0..1), got {arr.dtype}")
            arr = (np.clip(np.nan_to_num(arr.astype(np.float64)), 0, 1) * 255).round().astype(np.uint8)
        return read_image(Image.fromarray(arr), what, limit)
    raise InputError(f"{what}: expected an image path, bytes, PIL image, array or tensor, "
                     f"got {type(image).__name__}")


def read_mask(mask, what: str = "mask") -> Image.Image:
    """A mask (anything :func:`read_image` takes) as 8-bit greyscale, 255 = foreground."""
    if isinstance(mask, Image.Image) and mask.mode == "L":
        return mask
    if isinstance(mask, np.ndarray) and mask.ndim == 2:
        arr = mask
        if arr.dtype == bool:
            arr = arr.astype(np.uint8) * 255
        elif arr.dtype != np.uint8:
            arr = (np.clip(np.nan_to_num(arr.astype(np.float64)), 0, 1) * 255).round().astype(np.uint8)
        return Image.fromarray(arr, "L")
    return read_image(mask, what).convert("L")


def read_array(data: bytes, what: str = "image") -> np.ndarray:
    """Encoded image bytes -> uint8 [H,W,3] RGB (the dataset reader's form)."""
    return np.array(read_image(data, what))


def square_resize(im: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square and LANCZOS-resize (what the official projector does to targets)."""
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return im.resize((size, size), Image.LANCZOS) if s != size else im


def to_tensor(im: Image.Image, size: int | None = None) -> torch.Tensor:
    """RGB PIL -> [1,3,S,S] float32 in [-1,1] (square-resized to ``size`` if given)."""
    if size is not None:
        im = square_resize(im, size)
    arr = np.asarray(im.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0) / 127.5 - 1


def mask_tensor(mask, size: int) -> torch.Tensor:
    """Mask (PIL, array, or tensor [..,H,W] in [0,1]) -> [1,1,S,S] float in [0,1]."""
    if isinstance(mask, torch.Tensor):
        m = mask.detach().float().cpu().reshape(1, 1, *mask.shape[-2:])
        return torch.nn.functional.interpolate(m, size=(size, size), mode="bilinear", align_corners=False,
                                               antialias=True).clamp(0, 1)
    im = square_resize(read_mask(mask), size)
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)[None, None]


def to_uint8(images: torch.Tensor, key: str = "image", depth_range: tuple[float, float] | None = None
             ) -> np.ndarray:
    """Generator outputs [N,C,H,W] -> uint8 [N,H,W,3].

    Colour images use the official mapping x*127.5 + 128; masks map [0,1] to [0,255]; depth maps
    near = bright, over ``depth_range`` (near, far) or else min-max over the whole batch, as the
    official video script does, so pass all views of one grid together.
    """
    x = images.detach().float().cpu()
    if key == "image_depth":
        lo, hi = depth_range if depth_range is not None else (x.min(), x.max())
        x = (hi - x) / max(float(hi - lo), 1e-8) * 255
    elif key == "image_mask":
        x = x * 255
    else:
        x = x * 127.5 + 128
    x = x.clamp(0, 255).to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def list_images(inputs, skip_masks: bool = False) -> list[Path]:
    """Files, folders (the images directly inside, sorted) and glob patterns -> paths, order kept.

    A named file that does not exist is kept, so that its caller reports it with the others;
    ``skip_masks`` leaves out ``*_mask.*`` files found in folders (masks beside their photos).
    """
    import glob

    out: list[Path] = []
    for item in [inputs] if isinstance(inputs, (str, os.PathLike)) else inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if is_image_file(q) and not (skip_masks and q.stem.endswith("_mask")))
        elif not p.exists() and any(ch in str(item) for ch in "*?["):
            out += [Path(q) for q in sorted(glob.glob(str(item), recursive=True)) if is_image_file(q)]
        else:
            out.append(p)
    return out
