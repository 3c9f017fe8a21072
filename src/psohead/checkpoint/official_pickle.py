"""Read official PanoHead / EG3D snapshot pickles without executing anything they contain.

A snapshot (spec 4.1-4.6) pickles every network class together with its module source and expects
the loader to ``exec`` that source. We never do: the file is first scanned opcode by opcode and
every global it names must be on a short allow-list (spec 4.4), then an unpickler that maps exactly
those globals to inert stand-ins turns it into plain data (records holding each object's state
dict), from which the ``state_dict()`` of each network is read. Anything else is an
:class:`UnsafePickleError` raised before a single opcode has run.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import pickletools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, UnsafePickleError
from .legacy_storage import parse_storage_blob

NETWORK_KEYS = ("G", "G_ema", "D")
_MAX_MODULE_DEPTH = 64


class _Dict(dict):
    """Stands in for ``OrderedDict`` / ``EasyDict``; instance state from BUILD is dropped."""

    def __setstate__(self, state):
        if state not in (None, {}) and not isinstance(state, dict):
            raise CheckpointError("snapshot has a dictionary with malformed instance state")


class _PlainObject:
    """Stands in for a non-persistent class pickled by reference (RaySampler, Sequential, ...)."""

    class_path = ""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise CheckpointError(f"snapshot has a {self.class_path} whose state is not a dict")
        self.state = state


def _plain_class(path: str) -> type:
    return type(path.rsplit(".", 1)[1], (_PlainObject,), {"class_path": path, "__module__": __name__})


_PLAIN_CLASSES = {
    path: _plain_class(path)
    for path in (
        "training.volumetric_rendering.ray_sampler.RaySampler",
        "torch.nn.modules.container.Sequential",
        "torch.nn.modules.activation.Softplus",
    )
}


@dataclass
class _PersistentRecord:
    """What ``_reconstruct_persistent_obj(meta)`` would have built, kept as data (source not run)."""

    class_name: str
    state: dict
    source_sha256: str

    def __setstate__(self, state):
        raise CheckpointError("snapshot tries to modify a persistent object after creating it")


def _reconstruct_persistent_obj(meta):
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise CheckpointError("snapshot has a malformed persistent-object record")
    if meta.get("version") != 6:
        raise CheckpointError(f"snapshot persistent-object version {meta.get('version')!r} is not 6")
    class_name, state, src = meta.get("class_name"), meta.get("state"), meta.get("module_src")
    if not isinstance(class_name, str) or not isinstance(state, dict) or not isinstance(src, str):
        raise CheckpointError("snapshot persistent-object record lacks class_name/state/module_src")
    # module_src is only fingerprinted, never compiled or executed
    return _PersistentRecord(class_name, state, hashlib.sha256(src.encode("utf-8", "replace")).hexdigest())


def _ints(x, what: str) -> tuple[int, ...]:
    if not isinstance(x, (tuple, list)) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in x):
        raise CheckpointError(f"snapshot tensor has a malformed {what}")
    return tuple(x)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    if not isinstance(storage, torch.Tensor) or storage.dim() != 1:
        raise CheckpointError("snapshot tensor does not point at a storage")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise CheckpointError("snapshot tensor has a malformed storage offset")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise CheckpointError("snapshot tensor size and stride differ in length")
    if metadata:
        raise CheckpointError("snapshot tensor carries metadata snapshots never have")
    if 0 not in size:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.numel():
            raise CheckpointError("snapshot tensor reaches past the end of its storage")
    view = torch.as_strided(storage, size, stride, storage_offset)
    if storage_offset == 0 and view.is_contiguous() and view.numel() == storage.numel():
        return view
    return view.clone(memory_format=torch.contiguous_format)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, torch.Tensor):
        raise CheckpointError("snapshot parameter does not wrap a tensor")
    return data


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError("snapshot has a numpy scalar of object dtype; refusing it")
    if isinstance(data, str):  # protocol 0-2 pickles carry the bytes as latin-1 text
        data = data.encode("latin-1")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise CheckpointError("snapshot has a malformed numpy scalar")
    return np.frombuffer(data, dtype=dtype)[0]


def _numpy_dtype(spec, align=False, copy=False):
    dtype = np.dtype(spec, align=bool(align), copy=bool(copy))
    if dtype.hasobject:
        raise UnsafePickleError("snapshot has a numpy object dtype; refusing it")
    return dtype


def _copyreg_reconstructor(cls, base, state):
    if not (isinstance(cls, type) and issubclass(cls, (_PlainObject, _Dict))) or base not in (object, dict, _Dict):
        raise UnsafePickleError("snapshot asks copyreg to build something other than a plain stand-in")
    obj = cls.__new__(cls)
    if base is not object and state:
        obj.update(state)
    return obj


# (module, name) of every global an official snapshot may name -> the inert object we hand out
_ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): parse_storage_blob,
    ("collections", "OrderedDict"): _Dict,
    ("dnnlib.util", "EasyDict"): _Dict,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("copyreg", "_reconstructor"): _copyreg_reconstructor,
    ("builtins", "object"): object,
    **{tuple(path.rsplit(".", 1)): cls for path, cls in _PLAIN_CLASSES.items()},
}
_RENAMED_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}  # Python 2 era names


def _allowed(module: str, name: str):
    module = _RENAMED_MODULES.get(module, module)
    obj = _ALLOWED.get((module, name))
    if obj is None:
        raise UnsafePickleError(f"pickle refers to {module}.{name}, which a network snapshot never contains; "
                                "refusing to load it (nothing was executed)")
    return obj


_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
               "BINUNICODE8"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_UNKNOWN = object()


def scan_globals(f) -> set[tuple[str, str]]:
    """Every global the pickle in ``f`` names, checked against the allow-list before anything runs.

    STACK_GLOBAL takes its names from the stack, so the scan follows string pushes and the memo;
    a global whose name is not a literal is refused rather than guessed.
    """
    found: set[tuple[str, str]] = set()
    memo: dict = {}
    recent: list = []  # statically known values pushed since the last other stack operation
    top = _UNKNOWN
    for op, arg, _pos in pickletools.genops(f):
        name = op.name
        if name in _STRING_OPS:
            top = arg
            recent.append(arg)
        elif name in _GET_OPS:
            top = memo.get(arg, _UNKNOWN)
            recent.append(top)
        elif name == "MEMOIZE":
            memo[len(memo)] = top
        elif name in _PUT_OPS:
            memo[arg] = top
        elif name in ("FRAME", "PROTO"):
            pass
        elif name in ("GLOBAL", "INST"):
            module, qualname = arg.split(" ", 1)
            _allowed(module, qualname)
            found.add((module, qualname))
            recent, top = [], _UNKNOWN
        elif name == "STACK_GLOBAL":
            if len(recent) < 2 or not all(isinstance(v, str) for v in recent[-2:]):
                raise UnsafePickleError("pickle builds a global from a computed name; refusing it (nothing was executed)")
            _allowed(recent[-2], recent[-1])
            found.add((recent[-2], recent[-1]))
            recent, top = [], _UNKNOWN
        elif name in ("EXT1", "EXT2", "EXT4"):
            raise UnsafePickleError("pickle uses the copyreg extension registry, which snapshots never do; refusing it")
        elif name in ("PERSID", "BINPERSID"):
            raise CheckpointError("pickle has a persistent id, which a network snapshot never has at top level")
        else:
            recent, top = [], _UNKNOWN
    return found


class _SnapshotUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        return _allowed(module, name)

    def persistent_load(self, pid):
        raise CheckpointError(f"pickle has an unknown persistent id {str(pid)[:80]!r}")


def restricted_load(f):
    """Unpickle the seekable binary file ``f`` into inert data, or raise before running anything."""
    start = f.tell()
    scan_globals(f)
    f.seek(start)
    return _SnapshotUnpickler(f).load()


@dataclass
class OfficialNetwork:
    """One network of a snapshot, as plain data."""

    key: str  # 'G', 'G_ema' or 'D'
    class_name: str  # e.g. 'TriPlaneGenerator', 'MaskDualDiscriminatorV2'
    init_kwargs: dict  # constructor kwargs exactly as the training script passed them
    state_dict: dict[str, torch.Tensor]  # official state_dict() names, in state_dict() order
    rendering_kwargs: dict | None = None
    neural_rendering_resolution: int | None = None
    source_sha256: str = ""  # fingerprint of the embedded (never executed) module source


@dataclass
class OfficialSnapshot:
    networks: dict[str, OfficialNetwork] = field(default_factory=dict)
    training_set_kwargs: dict | None = None


def _plain(x):
    """Stand-in dicts / numpy scalars -> plain Python values (for configs)."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    if isinstance(x, np.generic):
        return x.item()
    return x


def _module_state(obj, where: str) -> dict:
    if isinstance(obj, (_PersistentRecord, _PlainObject)) and isinstance(getattr(obj, "state", None), dict):
        return obj.state
    raise CheckpointError(f"snapshot entry {where} is not a network module")


def _collect(obj, prefix: str, out: dict, depth: int = 0) -> None:
    """Walk modules like ``nn.Module.state_dict``: own parameters, persistent buffers, then children."""
    if depth > _MAX_MODULE_DEPTH:
        raise CheckpointError("snapshot modules nest too deeply (cyclic?)")
    state = _module_state(obj, prefix.rstrip(".") or "<root>")
    params = state.get("_parameters") or {}
    buffers = state.get("_buffers") or {}
    children = state.get("_modules") or {}
    skip = state.get("_non_persistent_buffers_set") or set()
    if not all(isinstance(d, dict) for d in (params, buffers, children)):
        raise CheckpointError(f"snapshot module {prefix.rstrip('.') or '<root>'} has malformed members")
    for name, value in list(params.items()) + [(n, v) for n, v in buffers.items() if n not in skip]:
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"snapshot entry {prefix}{name} is not a tensor")
        out[prefix + name] = value
    for name, child in children.items():
        if child is not None:
            _collect(child, f"{prefix}{name}.", out, depth + 1)


def _network(key: str, record) -> OfficialNetwork:
    if not isinstance(record, _PersistentRecord):
        raise CheckpointError(f"snapshot entry {key!r} is not a persistent network object")
    state_dict: dict[str, torch.Tensor] = {}
    _collect(record, "", state_dict)
    state = record.state
    init_kwargs = state.get("_init_kwargs") or {}
    if not isinstance(init_kwargs, dict) or state.get("_init_args", ()) not in ((), []):
        raise CheckpointError(f"snapshot network {key!r} has malformed constructor arguments")
    nrr = state.get("neural_rendering_resolution")
    rendering = state.get("rendering_kwargs")
    return OfficialNetwork(
        key=key,
        class_name=record.class_name,
        init_kwargs=_plain(init_kwargs),
        state_dict=state_dict,
        rendering_kwargs=_plain(rendering) if isinstance(rendering, dict) else None,
        neural_rendering_resolution=int(nrr) if isinstance(nrr, (int, np.integer)) else None,
        source_sha256=record.source_sha256,
    )


def read_official_pickle(path: str | os.PathLike, keys=NETWORK_KEYS) -> OfficialSnapshot:
    """Parse an official snapshot ``.pkl`` into plain data for the networks in ``keys``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    with open(path, "rb") as f:
        if f.read(1) != b"\x80":
            raise CheckpointError(f"{path}: not a pickle file (official snapshots start with a PROTO opcode)")
        f.seek(0)
        try:
            top = restricted_load(f)
        except CheckpointError as err:
            raise type(err)(f"{path}: {err}") from None
        except Exception as err:  # truncated, garbled or structurally wrong pickle
            raise CheckpointError(f"{path}: corrupt or truncated pickle ({type(err).__name__}: {err})") from None
    if not isinstance(top, dict):
        raise CheckpointError(f"{path}: not a network snapshot (top level is not a dict)")
    present = [k for k in keys if top.get(k) is not None]
    if not present:
        raise CheckpointError(f"{path}: snapshot holds none of {', '.join(keys)}")
    try:
        networks = {k: _network(k, top[k]) for k in present}
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None
    tsk = top.get("training_set_kwargs")
    return OfficialSnapshot(networks=networks, training_set_kwargs=_plain(tsk) if isinstance(tsk, dict) else None)
