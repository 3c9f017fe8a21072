"""Latent files: ``latent.safetensors`` holding the W+ code an inversion found.

Tensors: ``ws`` [1, num_ws, w_dim] float32 (required), ``label`` [1, 25] (the camera of the input
photo, optional), ``delta`` [1, 3] (camera offset added to render labels, optional). Free-form
metadata is stored as JSON under the safetensors metadata key ``psohead.meta``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..camera import validate_label
from ..errors import InputError
from ..atomic import atomic_path

META_KEY = "psohead.meta"
FORMAT_KEY = "psohead.format"
FORMAT = "latent-v1"


@dataclass
class Latent:
    ws: torch.Tensor
    label: torch.Tensor | None = None
    delta: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)


def _check_ws(ws: torch.Tensor, what: str) -> torch.Tensor:
    if ws.ndim == 2:
        ws = ws.unsqueeze(0)
    if ws.ndim != 3 or ws.shape[0] != 1 or not torch.isfinite(ws).all():
        raise InputError(f"{what}: 'ws' must be a finite [1, num_ws, w_dim] tensor, got shape {tuple(ws.shape)}")
    return ws


def save_latent(path: str | os.PathLike, ws: torch.Tensor, label=None, meta: dict | None = None,
                delta=None) -> Path:
    """Write ws [1,num_ws,w_dim] (or [num_ws,w_dim]) plus optional label/delta/meta atomically."""
    tensors = {"ws": _check_ws(ws.detach().float().cpu(), str(path)).contiguous()}
    if label is not None:
        tensors["label"] = validate_label(torch.as_tensor(label).detach().cpu(), f"{path}: label").contiguous()
    if delta is not None:
        tensors["delta"] = torch.as_tensor(delta).detach().float().cpu().reshape(1, 3).contiguous()
    metadata = {FORMAT_KEY: FORMAT, META_KEY: json.dumps(meta or {})}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def load_latent(path: str | os.PathLike) -> Latent:
    """Read a file written by :func:`save_latent`; also accepts the official ``projected_w.npz``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"latent file not found: {path}")
    if path.suffix == ".npz":
        return _load_official_npz(path)
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable safetensors latent file ({err})") from None
    if "ws" not in tensors:
        raise InputError(f"{path}: no 'ws' tensor (found {sorted(tensors)})")
    try:
        meta = json.loads(metadata.get(META_KEY, "{}"))
    except json.JSONDecodeError:
        raise InputError(f"{path}: metadata '{META_KEY}' is not valid JSON") from None
    label = tensors.get("label")
    if label is not None:
        label = validate_label(label, f"{path}: label")
    delta = tensors.get("delta")
    if delta is not None and delta.numel() != 3:
        raise InputError(f"{path}: 'delta' must hold 3 numbers, got shape {tuple(delta.shape)}")
    return Latent(ws=_check_ws(tensors["ws"].float(), str(path)), label=label,
                  delta=None if delta is None else delta.float().reshape(1, 3), meta=meta)


def _load_official_npz(path: Path) -> Latent:
    import numpy as np

    try:
        with np.load(path) as data:
            if "w" not in data:
                raise InputError(f"{path}: official projector files hold the key 'w'; found {list(data.keys())}")
            ws = torch.from_numpy(np.asarray(data["w"], dtype=np.float32))
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable .npz file ({err})") from None
    return Latent(ws=_check_ws(ws, str(path)), meta={"source": "official projected_w.npz"})
