"""Foreground masks that come with a photo: a mask file beside it, or a plain-backdrop matte."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .images import read_mask


def mask_beside(image_path: str | Path) -> Image.Image | None:
    """An 8-bit mask in a sibling ``mask``/``masks`` folder or as ``<stem>_mask.png``, or None."""
    image_path = Path(image_path)
    for cand in (image_path.parent / "mask" / image_path.name, image_path.parent / "masks" / image_path.name,
                 image_path.parent / "mask" / (image_path.stem + ".png"),
                 image_path.parent / "masks" / (image_path.stem + ".png"),
                 image_path.with_name(image_path.stem + "_mask.png")):
        if cand.is_file():
            return read_mask(cand, "mask")
    return None


def border_matte(pil: Image.Image) -> torch.Tensor:
    """Foreground [1,1,H,W] in {0,1} of a photo without a mask file: the pixels that differ from
    the median border colour (a plain backdrop), opened to drop speckles."""
    arr = torch.from_numpy(np.asarray(pil.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
    border = torch.cat([arr[:, 0], arr[:, -1], arr[:, :, 0], arr[:, :, -1]], 1).median(1).values
    m = ((arr - border[:, None, None]).abs().amax(0) > 0.12).float()[None, None]
    return F.max_pool2d(-F.max_pool2d(-m, 5, 1, 2), 5, 1, 2)
