"""Foreground extent and colour: what the pseudo back targets take from the photo."""
from __future__ import annotations

from dataclasses import dataclass

import torch

# An opponent colour basis (rows: luma, red-blue, green-magenta): spreads are compared per axis
# in it, so that matching how much the colour varies does not tie luma to hue.
OPPONENT = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [0.5, 0.0, -0.5], [-0.25, 0.5, -0.25]])
MAD_TO_STD = 1.4826  # the median absolute deviation of a normal sample times this is its std


def mask_box(mask: torch.Tensor, threshold: float = 0.5) -> tuple[float, float, float, float] | None:
    """(top, bottom, left, right) pixel extent of mask [H,W] > threshold, or None if empty."""
    rows = torch.nonzero((mask > threshold).any(1)).flatten()
    cols = torch.nonzero((mask > threshold).any(0)).flatten()
    if rows.numel() == 0 or cols.numel() == 0:
        return None
    return float(rows[0]), float(rows[-1] + 1), float(cols[0]), float(cols[-1] + 1)


def band_pixels(image: torch.Tensor, mask: torch.Tensor, band: float = 0.25) -> torch.Tensor:
    """Colours [3,P] of the foreground's top ``band`` (the hair on a frontal crop); the whole image
    where the mask or the band is empty."""
    box = mask_box(mask[0, 0])
    if box is None:
        return image[0].flatten(1)
    top, bottom = int(box[0]), int(box[0] + band * (box[1] - box[0])) + 1
    sel = mask[0, 0, top:bottom] > 0.5
    pix = image[0, :, top:bottom][:, sel]
    return pix if pix.numel() else image[0].flatten(1)


def hair_colour(image: torch.Tensor, mask: torch.Tensor, band: float = 0.25) -> torch.Tensor:
    """Median colour [3] of the top ``band`` of the foreground (the hair on a frontal crop)."""
    return band_pixels(image, mask, band).median(1).values


def colour_spread(pixels: torch.Tensor) -> torch.Tensor:
    """Robust spread [3] of colours [3,P] along the :data:`OPPONENT` axes (MAD scaled to a std)."""
    q = OPPONENT.to(pixels) @ pixels
    return MAD_TO_STD * (q - q.median(1, keepdim=True).values).abs().median(1).values


@dataclass
class ColourTransfer:
    """A head's colours moved to another's: its median ``source`` [3] to ``source + shift`` and,
    with ``scale`` [3], its deviations from the median scaled along the :data:`OPPONENT` axes
    (a blotchy render towards an evenly coloured photo); ``scale`` None keeps them as they are."""

    shift: torch.Tensor
    source: torch.Tensor
    scale: torch.Tensor | None = None

    def apply(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Images [N,3,H,W] in [-1,1] recoloured where their masks [N,1,H,W] show the head."""
        if self.scale is None:
            return shift_colour(images, masks, self.shift)
        opp = OPPONENT.to(images)
        mix = torch.linalg.inv(opp) @ torch.diag(self.scale.to(images)) @ opp  # deviation -> scaled deviation
        source = self.source.to(images).reshape(1, 3, 1, 1)
        moved = source + self.shift.to(images).reshape(1, 3, 1, 1) + torch.einsum("ij,njhw->nihw", mix,
                                                                                  images - source)
        return (images + masks * (moved - images)).clamp(-1, 1)


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
