"""The one place a device name becomes a ``torch.device``."""
from __future__ import annotations

import torch

from .errors import InputError


def resolve_device(device: str | torch.device | None = "auto", local_rank: int | None = None) -> torch.device:
    """``auto`` (or None) = the GPU when CUDA is available, else the CPU; ``cpu``, ``cuda``,
    ``cuda:N`` or a ``torch.device`` as given. ``local_rank`` picks the GPU of a distributed
    worker when the name does not. Unknown names and CUDA without a GPU raise InputError."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)") from None
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {device!r} (use auto, cpu, cuda or cuda:N)")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {str(device)!r} requested but CUDA is not available")
        if dev.index is None:  # one name for one GPU: "cuda" is the current device
            dev = torch.device("cuda", torch.cuda.current_device() if local_rank is None else local_rank)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return dev
