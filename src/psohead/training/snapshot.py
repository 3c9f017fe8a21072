"""Training snapshots: one file with everything needed to continue a run, written atomically.

A snapshot is a ``torch.save`` dict of plain data and tensors (no pickled classes), read back
with ``weights_only=True`` so that loading one never executes code:

    format, G_config, D_config, options, G, G_ema, D (state dicts), opt_G, opt_D (optimiser
    state dicts), rng (python, numpy, torch, cuda states), progress (cur_nimg, cur_tick, ...).

Writing goes to ``.<name>.tmp-<pid>`` in the same folder, is flushed to disk and then renamed,
so a crash (even SIGKILL) leaves either the old snapshot or the new one, never a torn file (a
resumed run deletes the temp file such a crash leaves behind).
"""
from __future__ import annotations

import glob
import io
import os
import random
from pathlib import Path

import numpy as np
import torch

from ..atomic import PARTIAL_GLOB
from ..errors import CheckpointError

FORMAT = "psohead-train-snapshot/1"
LATEST = "snapshot-latest.pt"


def temp_path(path) -> Path:
    """Where ``path`` is written before the rename onto it."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def remove_stale_temps(folder) -> None:
    """Delete the temp files of writes that were killed half-way in ``folder``.

    Only for a folder no other process is writing to (a run folder has one writer: rank 0).
    """
    for pattern in (".*.tmp-*", PARTIAL_GLOB):  # snapshots here; grids and JSON via psohead.atomic
        for path in Path(folder).glob(pattern):
            path.unlink(missing_ok=True)


def atomic_torch_save(obj, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def part_paths(path) -> list[Path]:
    """Existing parts ``<path>.part000``, ``.part001``, ... of a split snapshot, in order."""
    path = Path(path)
    return sorted(path.parent.glob(glob.escape(path.name) + ".part[0-9][0-9][0-9]"))


def save_snapshot(path, state: dict, part_mb: float | None = None) -> Path:
    """Write a training state dict (see module docstring) atomically.

    With ``part_mb`` the file is written as ``<path>.part000``, ``.part001``, ... of at most that
    many MiB each (for transports with a per-file size limit); :func:`load_snapshot` joins them.
    """
    path = Path(path)
    if part_mb is None:
        for old in part_paths(path):
            old.unlink()
        return atomic_torch_save({"format": FORMAT, **state}, path)
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buf)
    data, size = buf.getvalue(), max(1, int(part_mb * 2**20))
    chunks = [data[i:i + size] for i in range(0, len(data), size)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmps = []
    for k, chunk in enumerate(chunks):
        tmp = temp_path(path.with_name(f"{path.name}.part{k:03d}"))
        with open(tmp, "wb") as f:
            f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        tmps.append(tmp)
    stale = part_paths(path)[len(chunks):]
    for k, tmp in enumerate(tmps):
        os.replace(tmp, path.with_name(f"{path.name}.part{k:03d}"))
    for old in stale:
        old.unlink()
    path.unlink(missing_ok=True)
    return path


def load_snapshot(path) -> dict:
    """Read a snapshot written by :func:`save_snapshot` (tensors on CPU), whole or split in parts."""
    path = Path(path)
    parts = [] if path.is_file() else part_paths(path)
    if not path.is_file() and not parts:
        raise CheckpointError(f"snapshot {path}: no such file (nor {path.name}.part000...)")
    try:
        source = path if not parts else io.BytesIO(b"".join(p.read_bytes() for p in parts))
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError/UnpicklingError/EOFError for torn files
        raise CheckpointError(f"snapshot {path}: unreadable ({type(err).__name__}: {str(err)[:120]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"snapshot {path}: not a psohead training snapshot ({FORMAT})")
    return state


def find_latest(run_dir) -> Path | None:
    """The run folder's latest snapshot (whole or split), or None."""
    path = Path(run_dir) / LATEST
    return path if path.is_file() or part_paths(path) else None


def capture_rng() -> dict:
    """Python, numpy, torch (and CUDA) global RNG states as plain data."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
