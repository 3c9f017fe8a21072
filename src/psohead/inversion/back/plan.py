"""Which pseudo back label a reconstruction uses, and the targets known before stage 1."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...camera import back_label
from ...errors import InputError
from ...io.images import mask_tensor
from ...io.masks import border_matte, mask_beside
from ..targets import TargetView
from .fk import fk_view
from .photo import photo_view, reference_back_mask

STRATEGIES = ("auto", "prior", "fk", "none")


@dataclass
class BackPlan:
    """The resolved strategy: kind in prior | fk | photo | none (+ the photo for ``photo``)."""

    kind: str
    photo: Path | None = None
    requested: str = "auto"


def plan_back(back: str | os.PathLike = "auto", has_bank: bool = False) -> BackPlan:
    """Resolve ``--back`` before any optimisation: a missing file or bank fails here."""
    requested = str(back)
    if requested in ("prior", "none"):
        return BackPlan(requested, requested=requested)
    if requested == "fk":
        if not has_bank:
            raise InputError("--back fk needs an FK-Enhance bank (--fk-bank DIR)")
        return BackPlan("fk", requested=requested)
    if requested == "auto":  # prior even with a bank: fk's gain depends on the retrieved image
        return BackPlan("prior", requested=requested)
    path = Path(requested)
    if not path.is_file():
        raise InputError(f"--back must be one of {', '.join(STRATEGIES)} or an image file; not found: {path}")
    return BackPlan("photo", photo=path, requested=requested)


def known_back_views(plan: BackPlan, G, w_avg: torch.Tensor, label: torch.Tensor, mask, front: TargetView,
                     res: int, bank=None, render_overrides: dict | None = None) -> tuple[list[TargetView], dict]:
    """Back targets known before stage 1 (photo / FK) and their record; prior views come after it.
    ``label`` is the front camera without offset, ``mask`` the photo's foreground (or None)."""
    if plan.kind not in ("photo", "fk"):
        return [], {}
    front_mask = None if mask is None else mask_tensor(mask, res)
    ref = reference_back_mask(G, w_avg, label.to(w_avg.device), front_mask, res, render_overrides)
    back = back_label(label)
    if plan.kind == "photo":
        beside = mask_beside(plan.photo)

        def mask_fn(pil):
            if beside is None:
                return border_matte(pil)
            m = np.asarray(beside.resize(pil.size, Image.BILINEAR), dtype=np.float32) / 255
            return torch.from_numpy(m)[None, None]

        return [photo_view(plan.photo, ref, back, mask_fn)], {"photo": str(plan.photo)}
    view, record = fk_view(bank, front.image, front_mask, ref)
    view.label = back  # the front camera turned by pi (the bank item's own yaw only picked it)
    return [view], record
