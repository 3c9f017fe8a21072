"""Render a (tuned) generator at chosen cameras and save image grids.

Cameras default to the official viewer set-up: radius 2.7 looking at (0, 0, 0.2). Yaw 0 is the
face, yaw pi the back of the head, positive yaw moves the camera toward the subject's left (+x).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..atomic import write_image
from ..camera import HEAD_LOOKAT, RADIUS, apply_offset, label_from_yaw_pitch
from ..errors import InputError
from ..io.images import to_uint8

IMAGE_KEYS = ("image", "image_raw", "image_depth", "image_mask")
DEFAULT_YAWS_DEG = (0, 45, 90, 135, 180, 225, 270, 315)


def yaw_labels(yaws, pitch: float = 0.0, radius: float = RADIUS, lookat: Sequence[float] = HEAD_LOOKAT,
               delta=None) -> torch.Tensor:
    """Labels [V,25] for yaws in radians; ``delta`` [1,3] (camera offset) is added if given."""
    labels = label_from_yaw_pitch(torch.as_tensor(yaws, dtype=torch.float32), pitch, radius=radius, lookat=lookat)
    if delta is not None:
        labels = apply_offset(labels, torch.as_tensor(delta).reshape(1, 3))
    return labels


def _check_ws(ws: torch.Tensor) -> torch.Tensor:
    if ws.ndim == 2:
        ws = ws.unsqueeze(0)
    if ws.ndim != 3 or ws.shape[0] != 1:
        raise InputError(f"ws must be [1, num_ws, w_dim], got shape {tuple(ws.shape)}")
    return ws


@torch.no_grad()
def iter_renders(G, ws: torch.Tensor, labels: torch.Tensor, batch_size: int = 4, key: str = "image",
                 neural_rendering_resolution: int | None = None, deterministic: bool = True,
                 noise_mode: str = "const") -> Iterator[torch.Tensor]:
    """Render one latent at every label, ``batch_size`` views per call; yields ``key`` outputs.

    Deterministic rendering (fixed stratified jitter) keeps neighbouring frames free of sampling
    flicker and makes exports reproducible. The tri-grid is made once for all calls.
    """
    if key not in IMAGE_KEYS:
        raise InputError(f"unknown image kind {key!r}; choose one of {', '.join(IMAGE_KEYS)}")
    ws = _check_ws(ws)
    labels = labels.to(device=ws.device, dtype=ws.dtype)
    planes = G.planes(ws, noise_mode=noise_mode)
    for start in range(0, labels.shape[0], batch_size):
        c = labels[start:start + batch_size]
        out = G.synthesis(ws, c, neural_rendering_resolution=neural_rendering_resolution, planes=planes,
                          noise_mode=noise_mode, deterministic=deterministic)
        yield out[key]


def render_labels(G, ws: torch.Tensor, labels: torch.Tensor, key: str = "image", **kwargs) -> np.ndarray:
    """uint8 [V,H,W,3] renders of ``ws`` at labels [V,25] (kwargs as :func:`iter_renders`)."""
    chunks = list(iter_renders(G, ws, labels, key=key, **kwargs))
    return to_uint8(torch.cat(chunks), key)


def render_views(G, ws: torch.Tensor, yaws=None, pitch: float = 0.0, radius: float = RADIUS,
                 lookat: Sequence[float] = HEAD_LOOKAT, delta=None, key: str = "image", **kwargs) -> np.ndarray:
    """Render ``ws`` at yaws (radians; default the 8 multiples of 45 deg) -> uint8 [V,H,W,3]."""
    if yaws is None:
        yaws = [math.radians(a) for a in DEFAULT_YAWS_DEG]
    labels = yaw_labels(yaws, pitch=pitch, radius=radius, lookat=lookat, delta=delta)
    return render_labels(G, ws, labels, key=key, **kwargs)


def make_grid(images: np.ndarray, cols: int | None = None, captions: Sequence[str] | None = None,
              pad: int = 0) -> np.ndarray:
    """Tile uint8 [V,H,W,3] into one image, row-major, ``cols`` per row (default: 4 or fewer)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise InputError(f"expected uint8 images [V,H,W,3], got {images.dtype} {images.shape}")
    v, h, w, _ = images.shape
    cols = min(v, cols or 4)
    rows = math.ceil(v / cols)
    grid = np.zeros((rows * (h + pad) - pad, cols * (w + pad) - pad, 3), np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = img
    if captions:
        pil = Image.fromarray(grid)
        draw = ImageDraw.Draw(pil)
        for i, text in enumerate(captions[:v]):
            r, c = divmod(i, cols)
            x, y = c * (w + pad) + 4, r * (h + pad) + 4
            draw.text((x + 1, y + 1), text, fill=(0, 0, 0))
            draw.text((x, y), text, fill=(255, 255, 255))
        grid = np.asarray(pil)
    return grid


def save_grid(images: np.ndarray, path: str | os.PathLike, cols: int | None = None,
              captions: Sequence[str] | None = None, pad: int = 0) -> Path:
    """Tile views (see :func:`make_grid`) and write the grid atomically."""
    return write_image(path, make_grid(images, cols=cols, captions=captions, pad=pad))
