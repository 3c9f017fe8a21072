"""Safe import of official snapshot pickles: fixture parity, malicious pickles, corrupt files."""
from __future__ import annotations

import builtins
import io
import json
import os
import pickle
import pickletools
import subprocess
import sys
import types
import warnings

import pytest
import torch
from conftest import require_shared
from safetensors.torch import load_file

from psohead.checkpoint import read_official_pickle
from psohead.checkpoint.legacy_storage import parse_storage_blob
from psohead.checkpoint.official_pickle import restricted_load, scan_globals
from psohead.errors import CheckpointError, UnsafePickleError

PKL = ("fixtures", "panohead_small_official_format.pkl")


@pytest.fixture(scope="module")
def snapshot():
    return read_official_pickle(require_shared(*PKL))


@pytest.fixture(scope="module")
def meta():
    return json.loads(require_shared("fixtures", "panohead_small_meta.json").read_text())


@pytest.fixture(scope="module")
def weights():
    return load_file(require_shared("fixtures", "panohead_small_weights.safetensors"))


def _appendix_names(letter: str) -> tuple[list[str], list[str]]:
    """Parameter and buffer names, in named_parameters()/named_buffers() order, from the spec."""
    text = require_shared("spec", "PANOHEAD_SPEC.md").read_text()
    block = text[text.index(f"## Appendix {letter}"):]
    block = block[block.index("```") + 3:]
    lines = block[:block.index("```")].splitlines()
    return [ln.split()[1] for ln in lines if ln.startswith("P ")], [ln.split()[1] for ln in lines if ln.startswith("B ")]


# --- the fixture snapshot ------------------------------------------------------------------------

@pytest.mark.parametrize("key,prefix,count", [("G", "G.", 296), ("G_ema", "G.", 296), ("D", "D.", 92)])
def test_fixture_tensors_bit_identical(snapshot, weights, key, prefix, count):
    sd = snapshot.networks[key].state_dict
    ref = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    assert len(sd) == count == len(ref)
    assert set(sd) == set(ref)
    for name, tensor in ref.items():
        assert sd[name].dtype == tensor.dtype and sd[name].shape == tensor.shape, name
        assert torch.equal(sd[name], tensor), name


@pytest.mark.parametrize("key,letter", [("G_ema", "A"), ("D", "B")])
def test_state_dict_order_matches_module_walk(snapshot, key, letter):
    # state_dict() lists each module's params, then its buffers, then recurses, so restricted to
    # params (or buffers) it is named_parameters() (named_buffers()) order, given by spec Appendix A/B.
    params, buffers = _appendix_names(letter)
    names = list(snapshot.networks[key].state_dict)
    assert [n for n in names if n in set(params)] == params
    assert [n for n in names if n in set(buffers)] == buffers
    assert set(names) == set(params) | set(buffers)


def test_fixture_configs(snapshot, meta):
    g_expected = {k: v for k, v in meta["G_kwargs"].items() if k != "class_name"} | meta["common_kwargs"]
    d_expected = {k: v for k, v in meta["D_kwargs"].items() if k != "class_name"} | meta["common_kwargs"]
    for key in ("G", "G_ema"):
        net = snapshot.networks[key]
        assert net.class_name == meta["G_kwargs"]["class_name"].rsplit(".", 1)[1]
        assert net.init_kwargs == g_expected
        assert net.rendering_kwargs == meta["rendering_kwargs"]
        assert net.neural_rendering_resolution == meta["neural_rendering_resolution"] == 64
    d = snapshot.networks["D"]
    assert d.class_name == "MaskDualDiscriminatorV2"
    assert d.init_kwargs == d_expected
    assert snapshot.training_set_kwargs == meta["pickle"]["training_set_kwargs"]


def test_fixture_globals_are_exactly_the_documented_ones(meta):
    with open(require_shared(*PKL), "rb") as f:
        found = scan_globals(f)
    assert {f"{m}.{n}" for m, n in found} == set(meta["pickle"]["globals"])


def test_selected_keys_only(meta):
    snap = read_official_pickle(require_shared(*PKL), keys=("D",))
    assert list(snap.networks) == ["D"]


# --- tensors and storages written by torch itself -------------------------------------------------

def test_torch_pickled_tensors_round_trip():
    base = torch.arange(60, dtype=torch.float32).reshape(5, 12)
    values = {
        "view": base[1:, ::3],  # offset + strides into a shared storage
        "same_storage": base,
        "param": torch.nn.Parameter(torch.randn(3, 2)),
        "half": torch.randn(4).half(),
        "long": torch.arange(-3, 3),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
    }
    out = restricted_load(io.BytesIO(pickle.dumps(values, protocol=4)))
    for name, ref in values.items():
        assert out[name].dtype == ref.dtype and out[name].shape == ref.shape, name
        assert torch.equal(out[name], ref.detach()), name


def _legacy_storage_blob(t: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage deprecation
        torch.save(t.storage(), buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


def test_storage_blob_from_torch_save():
    t = torch.randn(7, dtype=torch.float64)
    assert torch.equal(parse_storage_blob(_legacy_storage_blob(t)), t)


def test_storage_blob_corruptions():
    blob = _legacy_storage_blob(torch.arange(10, dtype=torch.float32))
    with pytest.raises(CheckpointError, match="magic"):
        parse_storage_blob(pickle.dumps(12345, protocol=2) + blob[len(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)):])
    with pytest.raises(CheckpointError, match="truncated"):
        parse_storage_blob(blob[:-3])
    with pytest.raises(CheckpointError, match="trailing"):
        parse_storage_blob(blob + b"\0")
    with pytest.raises(CheckpointError, match="zip"):
        parse_storage_blob(b"PK\x03\x04" + blob)
    evil = blob.replace(b"ctorch\nFloatStorage\n", b"cposix\nsystem\nq\x99\x99\x99\x99")
    assert evil != blob
    with pytest.raises(UnsafePickleError, match="posix.system"):
        parse_storage_blob(evil)


# --- malicious pickles ---------------------------------------------------------------------------

def _write(tmp_path, payload: bytes):
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    return path


class _Call:
    """Pickles as ``func(*args)``: the classic code-execution gadget."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _gadgets(marker):
    cmd = f"touch {marker}"
    return {
        "posix.system": _Call(os.system, cmd),
        "builtins.eval": _Call(builtins.eval, f"__import__('os').system({cmd!r})"),
        "builtins.exec": _Call(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.Popen": _Call(subprocess.Popen, ["touch", str(marker)]),
        "builtins.getattr": _Call(builtins.getattr, 0, "real"),
        "builtins.__import__": _Call(builtins.__import__, "os"),
    }


@pytest.mark.parametrize("name", ["posix.system", "builtins.eval", "builtins.exec", "subprocess.Popen",
                                  "builtins.getattr", "builtins.__import__"])
def test_code_execution_gadgets_refused(tmp_path, name):
    marker = tmp_path / "pwned"
    gadget = _gadgets(marker)[name]
    # the gadget sits after perfectly normal content, inside a snapshot-shaped dict
    payload = pickle.dumps({"training_set_kwargs": {"resolution": 512}, "G_ema": gadget}, protocol=4)
    with pytest.raises(UnsafePickleError, match=name.replace(".", r"\.")):
        read_official_pickle(_write(tmp_path, payload))
    assert not marker.exists()
    # the gadget really does run under stock unpickling, so the test above means something
    if name == "posix.system":
        pickle.loads(payload)
        assert marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_gadget_refused_at_every_protocol(tmp_path, protocol):
    marker = tmp_path / "pwned"
    with pytest.raises(UnsafePickleError, match="system"):
        read_official_pickle(_write(tmp_path, b"\x80\x02" + pickle.dumps(_gadgets(marker)["posix.system"],
                                                                      protocol=protocol).lstrip(b"\x80\x02\x04")))
    assert not marker.exists()


def test_computed_global_name_refused(tmp_path):
    # STACK_GLOBAL whose module name is not a literal (an empty list sits below 'system')
    payload = b"\x80\x04]\x8c\x06system\x93."
    with pytest.raises(UnsafePickleError, match="computed name"):
        read_official_pickle(_write(tmp_path, payload))


def test_extension_registry_refused(tmp_path):
    with pytest.raises(UnsafePickleError, match="extension registry"):
        read_official_pickle(_write(tmp_path, b"\x80\x02\x82\x01."))


def test_unknown_persistent_id_refused(tmp_path):
    with pytest.raises(CheckpointError, match="persistent id"):
        read_official_pickle(_write(tmp_path, b"\x80\x02X\x03\x00\x00\x00abcQ."))


def test_embedded_module_source_never_executed(tmp_path, monkeypatch):
    marker = tmp_path / "src_ran"
    # A stand-in for torch_utils.persistence, so pickle writes the genuine global name.
    fake = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("never called")

    _reconstruct_persistent_obj.__module__ = fake.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    fake._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", fake)
    state = {"training": False, "_parameters": {"w": torch.ones(2)}, "_buffers": {}, "_modules": {},
             "_non_persistent_buffers_set": set(), "_init_args": (), "_init_kwargs": {"z_dim": 8}}
    meta = {"type": "class", "version": 6, "class_name": "TriPlaneGenerator", "state": state,
            "module_src": f"open({str(marker)!r}, 'w').write('ran')\nclass TriPlaneGenerator: pass\n"}
    payload = pickle.dumps({"G_ema": _Call(_reconstruct_persistent_obj, meta)}, protocol=4)
    snap = read_official_pickle(_write(tmp_path, payload))
    net = snap.networks["G_ema"]
    assert net.class_name == "TriPlaneGenerator" and net.init_kwargs == {"z_dim": 8}
    assert torch.equal(net.state_dict["w"], torch.ones(2))
    assert not marker.exists()


# --- corrupt files -------------------------------------------------------------------------------

def test_truncated_snapshot(tmp_path):
    data = require_shared(*PKL).read_bytes()
    for cut in (len(data) // 3, len(data) - 5):
        path = _write(tmp_path, data[:cut])
        with pytest.raises(CheckpointError, match="corrupt or truncated") as err:
            read_official_pickle(path)
        assert not isinstance(err.value, UnsafePickleError)


def test_not_a_pickle(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(CheckpointError, match="not a pickle"):
        read_official_pickle(path)
    garbled = tmp_path / "garbled.pkl"
    garbled.write_bytes(b"\x80\x04\xff\xfe\xfd")
    with pytest.raises(CheckpointError, match="corrupt"):
        read_official_pickle(garbled)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        read_official_pickle(tmp_path / "nope.pkl")


def test_not_a_snapshot(tmp_path):
    with pytest.raises(CheckpointError, match="not a network snapshot"):
        read_official_pickle(_write(tmp_path, pickle.dumps([1, 2, 3], protocol=4)))
    with pytest.raises(CheckpointError, match="holds none of"):
        read_official_pickle(_write(tmp_path, pickle.dumps({"x": 1}, protocol=4)))
    with pytest.raises(CheckpointError, match="not a persistent network"):
        read_official_pickle(_write(tmp_path, pickle.dumps({"G_ema": {"a": 1}}, protocol=4)))


def test_disassembly_sanity():
    # guard for the hand-written opcode strings above: they must be well-formed pickles
    for payload in (b"\x80\x04]\x8c\x06system\x93.", b"\x80\x02\x82\x01.", b"\x80\x02X\x03\x00\x00\x00abcQ."):
        pickletools.dis(payload, out=io.StringIO())
