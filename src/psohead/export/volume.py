"""Minimal MRC2014 density volumes (mode 2, float32), readable by ChimeraX, UCSF Chimera, napari.

Arrays here are indexed [x, y, z] like :class:`psohead.export.mesh.DensityGrid`; on disk x is the
fastest axis (MAPC/MAPR/MAPS = 1/2/3). Lengths (voxel size, origin) are written in world units
where the format nominally says angstrom, so a viewer shows the head at the generator's scale.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..atomic import atomic_path

HEADER_BYTES = 1024
MODE_FLOAT32 = 2
NVERSION = 20141
LITTLE_ENDIAN_STAMP = b"\x44\x44\x00\x00"


@dataclass
class Volume:
    data: np.ndarray          # float32 [x, y, z]
    voxel_size: tuple         # (x, y, z)
    origin: tuple             # world position of voxel (0, 0, 0)


def _header(data: np.ndarray, voxel_size: tuple, origin: tuple, label: str) -> bytes:
    nx, ny, nz = data.shape
    h = bytearray(HEADER_BYTES)
    struct.pack_into("<3i", h, 0, nx, ny, nz)
    struct.pack_into("<i", h, 12, MODE_FLOAT32)
    struct.pack_into("<3i", h, 16, 0, 0, 0)            # start indices
    struct.pack_into("<3i", h, 28, nx, ny, nz)         # sampling = one cell per voxel
    struct.pack_into("<3f", h, 40, nx * voxel_size[0], ny * voxel_size[1], nz * voxel_size[2])
    struct.pack_into("<3f", h, 52, 90.0, 90.0, 90.0)
    struct.pack_into("<3i", h, 64, 1, 2, 3)            # columns = x, rows = y, sections = z
    struct.pack_into("<3f", h, 76, float(data.min()), float(data.max()), float(data.mean(dtype=np.float64)))
    struct.pack_into("<i", h, 88, 1)                   # space group 1: a single volume
    struct.pack_into("<i", h, 108, NVERSION)
    struct.pack_into("<3f", h, 196, *map(float, origin))
    h[208:212] = b"MAP "
    h[212:216] = LITTLE_ENDIAN_STAMP
    struct.pack_into("<f", h, 216, float(data.std(dtype=np.float64)))
    text = label.encode("ascii", "replace")[:80]
    struct.pack_into("<i", h, 220, 1 if text else 0)
    h[224:224 + len(text)] = text
    return bytes(h)


def write_mrc(grid: np.ndarray, path: str | os.PathLike, voxel_size=1.0, origin=(0.0, 0.0, 0.0),
              label: str = "psohead density") -> Path:
    """Write a float32 [x,y,z] volume as MRC2014 atomically. ``voxel_size`` scalar or (x, y, z)."""
    data = np.asarray(grid, dtype=np.float32)
    if data.ndim != 3 or min(data.shape) < 1:
        raise InputError(f"MRC volume must be a 3-D array, got shape {data.shape}")
    vs = tuple(float(v) for v in np.broadcast_to(np.asarray(voxel_size, float), (3,)))
    org = tuple(float(v) for v in np.broadcast_to(np.asarray(origin, float), (3,)))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(_header(data, vs, org, label))
            f.write(np.ascontiguousarray(data.transpose(2, 1, 0)).astype("<f4").tobytes())
    return Path(path)


def read_mrc(path: str | os.PathLike) -> Volume:
    """Read a mode-2 MRC file (either byte order, any axis order) back as float32 [x,y,z]."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read MRC file {path}: {err}") from None
    if len(raw) < HEADER_BYTES or raw[208:212] != b"MAP ":
        raise InputError(f"{path}: not an MRC2014 file (no 'MAP ' stamp)")
    end = "<" if raw[212] == 0x44 else ">"
    nx, ny, nz, mode = struct.unpack_from(end + "4i", raw, 0)
    if mode != MODE_FLOAT32:
        raise InputError(f"{path}: MRC mode {mode} not supported (only 2 = float32)")
    mx, my, mz = struct.unpack_from(end + "3i", raw, 28)
    cell = struct.unpack_from(end + "3f", raw, 40)
    mapcrs = struct.unpack_from(end + "3i", raw, 64)
    nsymbt = struct.unpack_from(end + "i", raw, 92)[0]
    origin = struct.unpack_from(end + "3f", raw, 196)
    start = HEADER_BYTES + nsymbt
    count = nx * ny * nz
    if len(raw) < start + 4 * count:
        raise InputError(f"{path}: truncated MRC file ({len(raw)} bytes, expected {start + 4 * count})")
    stored = np.frombuffer(raw, dtype=end + "f4", count=count, offset=start).reshape(nz, ny, nx)
    # stored axes (slowest..fastest) are (sections, rows, columns) = axes maps, mapr, mapc
    axes = (mapcrs[2] - 1, mapcrs[1] - 1, mapcrs[0] - 1)
    data = np.ascontiguousarray(np.moveaxis(stored, (0, 1, 2), axes), dtype=np.float32)
    voxel = tuple(c / m if m else 1.0 for c, m in zip(cell, (mx, my, mz)))
    return Volume(data=data, voxel_size=voxel, origin=tuple(origin))
