"""FK-Enhance retrieval: the bank back view whose silhouette best matches the expected one."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ...camera import LABEL_DIM
from ...errors import InputError
from ..targets import BACK_WEIGHT, TargetView
from .colour import hair_colour, recolour


def _small(mask: torch.Tensor, size: int = 32) -> torch.Tensor:
    return F.interpolate(mask.float(), size=(size, size), mode="area")[0, 0]


def fk_view(bank, front_image: torch.Tensor, front_mask: torch.Tensor | None, ref_mask: torch.Tensor
            ) -> tuple[TargetView, dict]:
    """The back view of ``bank`` (a path or a loaded :class:`~psohead.io.dataset.HeadDataset` of its
    back views) whose silhouette best matches ``ref_mask`` (IoU, minus 0.1 x hair-colour distance),
    recoloured to the photo's hair colour; compared on its own foreground only."""
    from ...io.dataset import HeadDataset

    ds = bank if isinstance(bank, HeadDataset) else back_bank(bank)
    if front_mask is None:
        front_mask = torch.flip(ref_mask, dims=[-1])
    colour = hair_colour(front_image.cpu(), F.interpolate(front_mask.float().cpu(), size=front_image.shape[-2:],
                                                          mode="bilinear", align_corners=False))
    ref = _small(ref_mask.cpu()) > 0.5
    best = None
    for i in range(len(ds)):
        img, mask, _ = ds[i]
        m = mask[None].float() / 255
        small = _small(m) > 0.5
        iou = float((small & ref).sum()) / max(float((small | ref).sum()), 1.0)
        dist = float((hair_colour(img[None].float() / 127.5 - 1, m, band=1.0) - colour).norm())
        score = iou - 0.1 * dist
        if best is None or score > best[0]:
            best = (score, i, iou, dist)
    _, i, iou, dist = best
    img, mask, label = ds[i]
    size = ref_mask.shape[-1]
    img_t = F.interpolate(img[None].float() / 127.5 - 1, size=(size, size), mode="area")
    m_t = F.interpolate(mask[None].float() / 255, size=(size, size), mode="area")
    target = recolour(img_t, m_t, colour)
    record = {"bank": str(ds.path), "item": ds.names[ds.index[i][0]], "silhouette_iou": round(iou, 4),
              "colour_distance": round(dist, 4)}
    return TargetView("back", target, label.reshape(1, LABEL_DIM), BACK_WEIGHT, m_t, "fk"), record


def back_bank(path: str | Path):
    """The back views (|yaw| >= 90 degrees) of an FK-Enhance dataset, loaded once for many photos."""
    from ...io.dataset import HeadDataset

    try:
        return HeadDataset(path, min_yaw=90.0, max_yaw=180.0)
    except InputError as err:
        raise InputError(f"FK-Enhance bank {path}: {err}") from None
