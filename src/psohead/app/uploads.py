"""Checking what a person uploads before any of it reaches the pipeline.

The file's own name is never used: a photo that passes is decoded once and saved under a fixed
name in the job's folder. The pixel count is read from the header before decoding, so a
decompression bomb is refused without being expanded.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..atomic import atomic_path
from ..errors import InputError
from ..io.images import read_image


def accept_image(src: str | os.PathLike, dest: Path, max_bytes: int, max_pixels: int, what: str = "photo") -> Path:
    """Decode the upload at ``src`` with psohead's image reader and save it as PNG at ``dest``;
    :class:`InputError` with one readable line when it is too large, has too many pixels or is
    not an image."""
    src = Path(src)
    try:
        size = src.stat().st_size
    except OSError:
        raise InputError(f"the {what} upload did not arrive; please upload it again") from None
    if size > max_bytes:
        raise InputError(f"the {what} file is {size / 2 ** 20:.1f} MB; the limit is {max_bytes / 2 ** 20:g} MB")
    if size == 0:
        raise InputError(f"the {what} file is empty")
    rgb = read_image(src.read_bytes(), what, max_pixels=max_pixels)  # the upload's own name is never used
    with atomic_path(dest) as tmp:
        rgb.save(tmp, format="PNG")
    return dest
