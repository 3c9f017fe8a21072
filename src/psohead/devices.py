"""The one place a device name becomes a ``torch.device``, and the process settings a device
runs best with (:func:`configure`)."""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

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


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# Blocks up to this size come from the heap and freed memory up to this much stays there for the
# next allocation. glibc's defaults map blocks over a threshold (at most 32 MiB) anew and give them
# back on free, so a renderer step, whose per-sample temporaries are tens of MiB each, got fresh
# zeroed pages from the kernel every time (page faults and system time; docs/performance.md).
CPU_HEAP_KEEP = 1 << 30


def configure(device: torch.device) -> bool:
    """Process settings for running on ``device``: on the CPU under glibc, keep freed memory for
    reuse (:data:`CPU_HEAP_KEEP`) instead of returning it to the kernel. Idempotent; changes
    only the C allocator's thresholds, never results. Returns whether anything was set."""
    if device.type != "cpu" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to tune
        return False
    return all([mallopt(option, CPU_HEAP_KEEP) == 1 for option in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD)])
