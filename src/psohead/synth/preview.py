"""Contact sheets and ground-truth orbits of synthetic heads."""
from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..atomic import check_output_file, write_image
from ..camera import HEAD_LOOKAT, label_from_yaw_pitch
from ..errors import InputError
from .dataset import check_ids, check_res
from .params import SCENE_KEYS, fixed_scene, sample_head, stack
from .render import RenderConfig, render


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x * 255 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()


class Views(NamedTuple):
    rgb: np.ndarray    # uint8 [N, V, R, R, 3]
    mask: np.ndarray   # uint8 [N, V, R, R]
    depth: np.ndarray  # float32 [N, V, R, R], camera-space z, 0 on background
    heads: list[dict]


def render_views(seeds: list[int], yaws: list[float], pitch: float = 0.0, res: int = 128, device: str = "cpu",
                 batch: int = 16) -> Views:
    """Every head under every yaw with the fixed neutral light."""
    heads = [sample_head(s) for s in seeds]
    jobs = [(h, y) for h in heads for y in yaws]
    cfg = RenderConfig(resolution=res)
    rgbs, masks, depths = [], [], []
    for start in range(0, len(jobs), batch):
        chunk = jobs[start:start + batch]
        labels = label_from_yaw_pitch(torch.tensor([y for _, y in chunk]), pitch, lookat=HEAD_LOOKAT).to(device)
        r = render(labels, stack([h for h, _ in chunk], device=device),
                   stack([fixed_scene()] * len(chunk), SCENE_KEYS, device=device), cfg)
        rgbs.append(_to_uint8(r.rgb.permute(0, 2, 3, 1)))
        masks.append(_to_uint8(r.mask))
        depths.append(r.depth.float().cpu().numpy())
    shape = (len(seeds), len(yaws), res, res)
    return Views(np.concatenate(rgbs).reshape(*shape, 3), np.concatenate(masks).reshape(shape),
                 np.concatenate(depths).reshape(shape), heads)


def contact_sheet(out, seeds=tuple(range(8)), views: int = 6, res: int = 128, device: str = "cpu") -> Path:
    """Rows = identities, columns = yaws evenly spaced over the full turn (frontal first)."""
    check_ids(seeds)
    check_res(res)
    if views < 1:
        raise InputError(f"--views {views}: must be at least 1")
    out = check_output_file(out, (".png",), "contact sheet")
    yaws = [2 * math.pi * k / views for k in range(views)]
    yaws = [y - 2 * math.pi if y > math.pi else y for y in yaws]
    rgb = render_views(list(seeds), yaws, res=res, device=device).rgb
    sheet = rgb.transpose(0, 2, 1, 3, 4).reshape(len(seeds) * res, views * res, 3)
    return write_image(out, sheet)
