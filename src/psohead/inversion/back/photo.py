"""A user's photo of the back of the head, placed by its mask onto the expected back silhouette."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...camera import LABEL_DIM, back_label
from ...errors import InputError
from ...io.images import read_image, to_tensor
from ..targets import BACK_WEIGHT, TargetView
from .colour import mask_box
from .prior import render_prior


def place_by_mask(image: torch.Tensor, mask: torch.Tensor, ref_mask: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale/shift image [1,3,h,w] + mask [1,1,h,w] so the mask's width and top edge match ref_mask
    [1,1,H,W]; horizontally centred on the reference. Returns image, mask at H x W."""
    size = ref_mask.shape[-2:]
    src = mask_box(mask[0, 0])
    ref = mask_box(ref_mask[0, 0])
    if src is None:
        raise InputError("back photo: no foreground found to align (its mask is empty)")
    if ref is None:
        ref = (0.1 * size[0], float(size[0]), 0.25 * size[1], 0.75 * size[1])
    scale = (ref[3] - ref[2]) / max(src[3] - src[2], 1.0)
    # Affine grid: output pixel -> source pixel.
    h, w = image.shape[-2:]
    cx_src, cx_ref = (src[2] + src[3]) / 2, (ref[2] + ref[3]) / 2
    ys = torch.arange(size[0], dtype=torch.float32) + 0.5
    xs = torch.arange(size[1], dtype=torch.float32) + 0.5
    sy = (ys - ref[0]) / scale + src[0]
    sx = (xs - cx_ref) / scale + cx_src
    grid = torch.stack(torch.meshgrid(sy / h * 2 - 1, sx / w * 2 - 1, indexing="ij")[::-1], -1)[None]
    both = torch.cat([image, mask], 1).float()
    out = F.grid_sample(both, grid.to(both), mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, :3], out[:, 3:].clamp(0, 1)


def reference_back_mask(G, w_avg: torch.Tensor, front_label: torch.Tensor, front_mask: torch.Tensor | None,
                        size: int, render_overrides: dict | None = None) -> torch.Tensor:
    """Where the head should appear in the back view [1,1,S,S]: the photo's own foreground mask
    mirrored (a head seen from behind has the mirrored silhouette), else the mean head's."""
    if front_mask is not None:
        m = F.interpolate(front_mask.float().cpu(), size=(size, size), mode="bilinear", align_corners=False)
        return torch.flip(m, dims=[-1]).clamp(0, 1)
    num_ws = int(G.backbone.num_ws)
    _, mask = render_prior(G, w_avg.repeat(1, num_ws, 1), back_label(front_label), render_overrides)
    return F.interpolate(mask.cpu(), size=(size, size), mode="bilinear", align_corners=False)


def photo_view(photo, ref_mask: torch.Tensor, label: torch.Tensor, mask_fn) -> TargetView:
    """A real back photo (path or image) placed on the reference silhouette at the back camera
    ``label`` [1,25]; ``mask_fn(PIL) -> [1,1,h,w]`` in [0,1] gives its foreground."""
    pil = read_image(photo, "back photo")
    placed, placed_mask = place_by_mask(to_tensor(pil), mask_fn(pil), ref_mask)
    return TargetView("back", placed, label.cpu().reshape(1, LABEL_DIM), BACK_WEIGHT, placed_mask, "photo")
