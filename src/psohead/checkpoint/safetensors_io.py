"""Our network file: a ``.safetensors`` whose metadata carries the full constructor config.

Metadata keys (all strings, as safetensors requires):

* ``psohead.format``  – format version, currently ``"1"``;
* ``psohead.kind``    – ``"generator"``, ``"discriminator"`` or ``"encoder"``;
* ``psohead.class``   – class name of the module the weights belong to;
* ``psohead.config``  – the config dataclass as JSON (``to_dict()``), enough to rebuild the module;
* ``psohead.dtype``   – storage dtype of the floating tensors (``float32`` or ``float16``);
* ``psohead.sha256``  – digest over names, dtypes, shapes and bytes of every tensor, so a damaged
  data section is reported instead of silently loaded (safetensors itself has no checksum);
* ``psohead.version`` – package version that wrote the file; optional ``psohead.source``;
* ``psohead.generator_sha256`` – encoders only: :func:`weights_digest` of the generator they
  belong to.

Tensor names are the module's ``state_dict()`` names (the official ones), so a file is also readable
by any safetensors tool.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..atomic import atomic_path
from ..errors import CheckpointError

FORMAT_VERSION = "1"
KINDS = ("generator", "discriminator", "encoder")
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


@dataclass
class NetworkFile:
    """Content of one network file, as plain data."""

    kind: str
    class_name: str
    config: dict
    state_dict: dict[str, torch.Tensor]
    storage_dtype: str = "float32"
    metadata: dict = field(default_factory=dict)


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{str(t.dtype)}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """Digest of a network's weights as float32, whatever they are stored as: the same network
    read from an fp32 pickle or from our file gives the same digest (fp16 storage rounds the
    weights, so a network and its fp16 copy differ)."""
    return _digest({n: t.float() if t.is_floating_point() else t for n, t in state_dict.items()})


def _storage_tensors(state_dict: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """CPU, contiguous, unshared copies; floating tensors cast to the storage dtype."""
    out = {}
    for name, t in state_dict.items():
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"state_dict entry {name!r} is not a tensor")
        t = t.detach().to("cpu")
        if t.is_floating_point() and t.dtype != dtype:
            cast = t.to(dtype)
            if not torch.isfinite(cast).all() and torch.isfinite(t).all():
                raise CheckpointError(f"tensor {name!r} overflows {str(dtype).replace('torch.', '')} storage "
                                      f"(max |value| {t.abs().max().item():.4g}); save it as float32")
            t = cast
        out[name] = t.clone(memory_format=torch.contiguous_format)
    return out


def write_network(path: str | os.PathLike, kind: str, class_name: str, config: dict,
                  state_dict: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32,
                  source: str | None = None, extra_metadata: dict[str, str] | None = None) -> Path:
    """Write ``state_dict`` + config to ``path`` atomically (temp file in the same folder, then rename).

    ``extra_metadata``: more ``psohead.*`` entries (strings), e.g. an encoder's generator digest."""
    if kind not in KINDS:
        raise CheckpointError(f"network kind must be one of {KINDS}, got {kind!r}")
    names = {v: k for k, v in STORAGE_DTYPES.items()}
    if dtype not in names:
        raise CheckpointError(f"storage dtype must be float32 or float16, got {dtype}")
    try:
        config_json = json.dumps(config, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"network config is not plain JSON: {err}") from None
    if not state_dict:
        raise CheckpointError("refusing to write a network file without tensors")
    tensors = _storage_tensors(state_dict, dtype)
    from .. import __version__

    metadata = {
        "psohead.format": FORMAT_VERSION,
        "psohead.kind": kind,
        "psohead.class": class_name,
        "psohead.config": config_json,
        "psohead.dtype": names[dtype],
        "psohead.sha256": _digest(tensors),
        "psohead.version": __version__,
    }
    if source:
        metadata["psohead.source"] = source
    for key, value in (extra_metadata or {}).items():
        if not key.startswith("psohead.") or key in metadata or not isinstance(value, str):
            raise CheckpointError(f"extra metadata {key!r}: must be a new psohead.* key with a text value")
        metadata[key] = value
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; give a file name ending in .safetensors")
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def _header_metadata(path: Path) -> dict:
    """The metadata of a safetensors file, with our own checks so damage gives a clear message."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", head)
        size = path.stat().st_size
        if n < 2 or n > _MAX_HEADER or 8 + n > size:
            raise CheckpointError(f"{path}: not a safetensors file, or truncated (header length {n}, file {size} bytes)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: not a safetensors file, or its header is corrupt") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header is not a JSON object")
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: safetensors metadata is not a JSON object")
    return meta


def read_metadata(path: str | os.PathLike) -> dict:
    """Our metadata (format checked, config parsed) without reading any tensor."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    meta = _header_metadata(path)
    if "psohead.format" not in meta:
        raise CheckpointError(f"{path}: a safetensors file without psohead metadata (not written by psohead); "
                              "convert official .pkl snapshots with `psohead convert`")
    if meta["psohead.format"] != FORMAT_VERSION:
        raise CheckpointError(f"{path}: psohead file format {meta['psohead.format']!r} is not supported "
                              f"(this version reads format {FORMAT_VERSION})")
    kind = meta.get("psohead.kind")
    if kind not in KINDS:
        raise CheckpointError(f"{path}: unknown network kind {kind!r} in psohead metadata")
    if meta.get("psohead.dtype", "float32") not in STORAGE_DTYPES:
        raise CheckpointError(f"{path}: unknown storage dtype {meta.get('psohead.dtype')!r}")
    try:
        config = json.loads(meta.get("psohead.config", ""))
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: psohead.config metadata is not valid JSON") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: psohead.config metadata is not a JSON object")
    return {**meta, "psohead.config": config}


def read_network(path: str | os.PathLike, dtype: torch.dtype = torch.float32, device="cpu") -> NetworkFile:
    """Read a psohead network file; floating tensors come back as ``dtype`` whatever they were stored as."""
    path = Path(path)
    meta = read_metadata(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            stored = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as err:  # safetensors reports damage as several exception types
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({err})") from None
    digest = meta.get("psohead.sha256")
    if digest is not None and _digest(stored) != digest:
        raise CheckpointError(f"{path}: tensor data does not match its checksum; the file is corrupt")
    state_dict = {n: (t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device))
                  for n, t in stored.items()}
    return NetworkFile(
        kind=meta["psohead.kind"],
        class_name=meta.get("psohead.class", ""),
        config=meta["psohead.config"],
        state_dict=state_dict,
        storage_dtype=meta.get("psohead.dtype", "float32"),
        metadata={k: v for k, v in meta.items() if k != "psohead.config"},
    )


def is_safetensors(path: str | os.PathLike) -> bool:
    """Cheap sniff: 8-byte little-endian header length followed by a JSON object."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _kind_of(config) -> str | None:
    from ..networks.config import DiscriminatorConfig, EncoderConfig, GeneratorConfig

    if isinstance(config, GeneratorConfig):
        return "generator"
    if isinstance(config, DiscriminatorConfig):
        return "discriminator"
    if isinstance(config, EncoderConfig):
        return "encoder"
    return None


def save_network(module: torch.nn.Module, path: str | os.PathLike, dtype: torch.dtype = torch.float32,
                 kind: str | None = None, config: dict | None = None, source: str | None = None,
                 extra_metadata: dict[str, str] | None = None) -> Path:
    """Save a generator / discriminator / encoder (its ``.config`` and ``state_dict()``) as a psohead file.

    ``kind`` and ``config`` default to what the module's config dataclass says; pass them for other
    modules. ``dtype=torch.float16`` halves the file (used for the bundled model); reading it back
    gives float32 again.
    """
    cfg = getattr(module, "config", None)
    if kind is None:
        kind = _kind_of(cfg)
        if kind is None:
            raise CheckpointError(f"cannot tell whether {type(module).__name__} is a generator, a "
                                  "discriminator or an encoder; pass kind=")
    if config is None:
        if cfg is None or not hasattr(cfg, "to_dict"):
            raise CheckpointError(f"{type(module).__name__} has no .config; pass config=")
        config = cfg.to_dict()
        # the attribute is overwritten when rendering at another resolution; keep the live value
        nrr = getattr(module, "neural_rendering_resolution", None)
        if "neural_rendering_resolution" in config and isinstance(nrr, int):
            config["neural_rendering_resolution"] = nrr
    return write_network(path, kind, type(module).__name__, config, module.state_dict(), dtype=dtype,
                         source=source, extra_metadata=extra_metadata)
