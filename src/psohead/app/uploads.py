"""Checking what a person uploads before any of it reaches the pipeline.

The file's own name is never used: a photo that passes is decoded once and saved under a fixed
name in the job's folder. The pixel count is read from the header before decoding, so a
decompression bomb is refused without being expanded.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from ..atomic import atomic_path
from ..errors import InputError


def accept_image(src: str | os.PathLike, dest: Path, max_bytes: int, max_pixels: int, what: str = "photo") -> Path:
    """Decode the upload at ``src`` and save it as PNG at ``dest``; :class:`InputError` with one
    readable line when it is too large, has too many pixels or is not an image."""
    src = Path(src)
    try:
        size = src.stat().st_size
    except OSError:
        raise InputError(f"the {what} upload did not arrive; please upload it again") from None
    if size > max_bytes:
        raise InputError(f"the {what} file is {size / 2 ** 20:.1f} MB; the limit is {max_bytes / 2 ** 20:g} MB")
    if size == 0:
        raise InputError(f"the {what} file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise InputError(f"the {what} is {w}x{h} pixels ({w * h / 1e6:.0f} MP); the limit is "
                                     f"{max_pixels / 1e6:g} MP: please send a smaller version")
                im = ImageOps.exif_transpose(im)
                im.load()
                rgb = im.convert("RGB")
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"the {what} declares far more pixels than the limit of {max_pixels / 1e6:g} MP: "
                         "please send a smaller version") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise InputError(f"the {what} is not an image this app can read (use JPEG, PNG or WebP)") from None
    with atomic_path(dest) as tmp:
        rgb.save(tmp, format="PNG")
    return dest
