"""Foreground extent and colour: what the pseudo back targets take from the photo."""
from __future__ import annotations

import torch


def mask_box(mask: torch.Tensor, threshold: float = 0.5) -> tuple[float, float, float, float] | None:
    """(top, bottom, left, right) pixel extent of mask [H,W] > threshold, or None if empty."""
    rows = torch.nonzero((mask > threshold).any(1)).flatten()
    cols = torch.nonzero((mask > threshold).any(0)).flatten()
    if rows.numel() == 0 or cols.numel() == 0:
        return None
    return float(rows[0]), float(rows[-1] + 1), float(cols[0]), float(cols[-1] + 1)


def hair_colour(image: torch.Tensor, mask: torch.Tensor, band: float = 0.25) -> torch.Tensor:
    """Median colour [3] of the top ``band`` of the foreground (the hair on a frontal crop)."""
    box = mask_box(mask[0, 0])
    if box is None:
        return image[0].flatten(1).median(1).values
    top, bottom = int(box[0]), int(box[0] + band * (box[1] - box[0])) + 1
    sel = mask[0, 0, top:bottom] > 0.5
    pix = image[0, :, top:bottom][:, sel]
    return pix.median(1).values if pix.numel() else image[0].flatten(1).median(1).values


def shift_colour(images: torch.Tensor, masks: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Add colour ``shift`` [3] to images [N,3,H,W] in [-1,1], weighted by their masks [N,1,H,W]."""
    return (images + shift.to(images).reshape(1, 3, 1, 1) * masks).clamp(-1, 1)


def composite(fg: torch.Tensor, mask: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    return fg * mask + bg * (1 - mask)


def recolour(image: torch.Tensor, mask: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """Shift the foreground's median colour to ``colour`` (keeps the image's texture)."""
    sel = mask[0, 0] > 0.5
    if not sel.any():
        return image
    current = image[0][:, sel].median(1).values
    shifted = (image + (colour - current).reshape(1, 3, 1, 1)).clamp(-1, 1)
    return composite(shifted, mask, image)
