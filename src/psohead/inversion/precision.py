"""Numeric precision switches for the inversion loops (float32 unless asked otherwise)."""
from __future__ import annotations

import contextlib

import torch

from ..errors import InputError

PRECISIONS = ("fp32", "tf32", "bf16")


def check_precision(precision: str, device) -> str:
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "fp32" and torch.device(device).type != "cuda":
        raise InputError(f"precision {precision!r} needs a CUDA device")
    return precision


@contextlib.contextmanager
def autocast(device, precision: str = "fp32"):
    """tf32: TF32 matmuls/convs; bf16: autocast to bfloat16 (losses are computed in float32)."""
    dev = torch.device(device)
    if precision == "fp32" or dev.type != "cuda":
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        if precision == "bf16":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
