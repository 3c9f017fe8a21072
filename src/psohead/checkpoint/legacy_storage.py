"""Parse one storage blob of an official snapshot: a legacy (non-zip) ``torch.save`` stream.

Snapshot pickles store every tensor storage as ``torch.storage._load_from_bytes(blob)``; the stock
loader hands ``blob`` to ``torch.load``. We read its five small pickles and the raw bytes ourselves
(spec 4.5) with an unpickler that knows no globals except the storage type names, so nothing in
the blob can run code.
"""
from __future__ import annotations

import io
import pickle
import struct
import sys

import torch

from ..errors import CheckpointError, UnsafePickleError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _StorageType:
    """Stands in for ``torch.<X>Storage`` inside the blob; only its dtype matters."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


class _BlobUnpickler(pickle.Unpickler):
    def __init__(self, file, allow_storage: bool):
        super().__init__(file)
        self.allow_storage = allow_storage
        self.records: list[tuple] = []

    def find_class(self, module, name):
        if self.allow_storage and module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafePickleError(f"storage blob refers to global {module}.{name}, which a tensor storage never contains")

    def persistent_load(self, pid):
        if not self.allow_storage or not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage":
            raise CheckpointError(f"storage blob has an unknown persistent id {str(pid)[:80]!r}")
        _, stype, key, _location, numel = pid[:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(stype, _StorageType) or not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise CheckpointError("storage blob has a malformed storage record")
        if view is not None:
            raise CheckpointError("storage blob holds a storage view, which snapshots never contain")
        self.records.append((key, stype.dtype, numel))
        return key


def _load(f, what: str, allow_storage: bool = False):
    unpickler = _BlobUnpickler(f, allow_storage)
    try:
        obj = unpickler.load()
    except (CheckpointError, UnsafePickleError):
        raise
    except Exception as err:  # truncated or garbled pickle inside the blob
        raise CheckpointError(f"storage blob is corrupt ({what}: {type(err).__name__}: {err})") from None
    return obj, unpickler.records


def parse_storage_blob(blob: bytes) -> torch.Tensor:
    """Legacy ``torch.save`` stream of one storage -> flat CPU tensor of the storage's dtype."""
    if not isinstance(blob, (bytes, bytearray)):
        raise CheckpointError("storage blob is not a byte string")
    if blob[:2] == b"PK":
        raise CheckpointError("storage blob uses the zip torch.save format, which snapshots never use")
    f = io.BytesIO(blob)
    magic, _ = _load(f, "magic number")
    if magic != LEGACY_MAGIC:
        raise CheckpointError("storage blob has a bad magic number (not a legacy torch.save stream)")
    version, _ = _load(f, "format version")
    if version != LEGACY_PROTOCOL:
        raise CheckpointError(f"storage blob has unsupported format version {version!r}")
    sys_info, _ = _load(f, "system info")
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise CheckpointError("storage blob is not little-endian or lacks its system info")
    if sys.byteorder != "little":
        raise CheckpointError("reading official snapshots needs a little-endian machine")
    key, records = _load(f, "storage record", allow_storage=True)
    keys, _ = _load(f, "storage keys")
    if len(records) != 1 or keys != [key]:
        raise CheckpointError("storage blob must hold exactly one storage")
    _, dtype, numel = records[0]
    pos = f.tell()
    header = blob[pos:pos + 8]
    if len(header) != 8:
        raise CheckpointError("storage blob is truncated (element count missing)")
    (count,) = struct.unpack("<q", header)
    if count != numel:
        raise CheckpointError(f"storage blob element count {count} disagrees with its record ({numel})")
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    start = pos + 8
    if len(blob) < start + nbytes:
        raise CheckpointError(f"storage blob is truncated ({len(blob) - start} of {nbytes} data bytes)")
    if len(blob) > start + nbytes:
        raise CheckpointError("storage blob has trailing bytes")
    if numel == 0:
        return torch.empty(0, dtype=dtype)
    # one copy into a writable buffer; the tensor owns it from here on
    return torch.frombuffer(bytearray(memoryview(blob)[start:]), dtype=dtype)
