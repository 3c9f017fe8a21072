"""Our safetensors network format: round trips, fp16 storage, atomic writes, damaged/foreign files."""
from __future__ import annotations

import json
import os
import struct

import pytest
import torch
from torch import nn
from safetensors.torch import load_file, save_file

from psohead.checkpoint.safetensors_io import (
    is_safetensors, read_metadata, read_network, save_network, write_network)
from psohead.errors import CheckpointError
from psohead.networks.config import DiscriminatorConfig, GeneratorConfig


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 3)
        self.conv = nn.Conv2d(3, 2, 3)
        self.register_buffer("steps", torch.tensor([7, -2], dtype=torch.int64))
        self.register_buffer("avg", torch.randn(4))
        self.register_buffer("scratch", torch.zeros(2), persistent=False)


CONFIG = {"width": 5, "nested": {"a": [1, 2.5, None]}, "name": "tiny"}


def _save(tmp_path, module=None, **kw):
    module = module or Tiny()
    path = tmp_path / "net.safetensors"
    save_network(module, path, kind="generator", config=CONFIG, **kw)
    return module, path


def test_round_trip_is_exact(tmp_path):
    module, path = _save(tmp_path)
    net = read_network(path)
    assert net.kind == "generator" and net.class_name == "Tiny" and net.config == CONFIG
    assert net.storage_dtype == "float32"
    ref = module.state_dict()
    assert list(sorted(net.state_dict)) == sorted(ref)  # non-persistent buffer not stored
    for name, t in ref.items():
        assert net.state_dict[name].dtype == t.dtype
        assert torch.equal(net.state_dict[name], t), name
    fresh = Tiny()
    fresh.load_state_dict(net.state_dict, strict=True)


def test_plain_safetensors_readers_see_official_names(tmp_path):
    module, path = _save(tmp_path)
    plain = load_file(path)
    assert set(plain) == set(module.state_dict())
    assert is_safetensors(path)


def test_fp16_storage_halves_and_reads_back_float32(tmp_path):
    module = Tiny()
    with torch.no_grad():
        module.fc.weight.mul_(1000.0)
    p32 = tmp_path / "a.safetensors"
    p16 = tmp_path / "b.safetensors"
    save_network(module, p32, kind="generator", config=CONFIG)
    save_network(module, p16, kind="generator", config=CONFIG, dtype=torch.float16)
    stored = load_file(p16)
    assert stored["fc.weight"].dtype == torch.float16
    assert stored["steps"].dtype == torch.int64  # integers are never cast
    net = read_network(p16)
    assert net.storage_dtype == "float16"
    for name, t in module.state_dict().items():
        got = net.state_dict[name]
        assert got.dtype == t.dtype
        if t.is_floating_point():
            # fp16 keeps 11 significant bits: relative error <= 2^-11
            assert torch.all((got - t).abs() <= t.abs() * 2.0 ** -11 + 1e-7), name
            assert torch.equal(got, t.half().float())
        else:
            assert torch.equal(got, t)


def test_fp16_overflow_is_refused(tmp_path):
    module = Tiny()
    with torch.no_grad():
        module.avg[0] = 1e6
    with pytest.raises(CheckpointError, match="avg.*overflows float16"):
        save_network(module, tmp_path / "x.safetensors", kind="generator", config=CONFIG, dtype=torch.float16)
    assert not list(tmp_path.iterdir())


def test_read_as_other_dtype(tmp_path):
    _, path = _save(tmp_path)
    net = read_network(path, dtype=torch.float64)
    assert net.state_dict["fc.weight"].dtype == torch.float64
    assert net.state_dict["steps"].dtype == torch.int64


def test_config_dataclass_gives_kind_and_config(tmp_path):
    class WithConfig(Tiny):
        config = DiscriminatorConfig.fixture_small()

    class Gen(Tiny):
        config = GeneratorConfig.fixture_small()
        neural_rendering_resolution = 128  # live value wins over the config field

    save_network(WithConfig(), tmp_path / "d.safetensors")
    meta = read_metadata(tmp_path / "d.safetensors")
    assert meta["psohead.kind"] == "discriminator"
    assert DiscriminatorConfig.from_dict(meta["psohead.config"]) == DiscriminatorConfig.fixture_small()
    save_network(Gen(), tmp_path / "g.safetensors")
    cfg = read_metadata(tmp_path / "g.safetensors")["psohead.config"]
    assert cfg["neural_rendering_resolution"] == 128 and cfg["z_dim"] == 64
    with pytest.raises(CheckpointError, match="pass kind="):
        save_network(Tiny(), tmp_path / "t.safetensors")


def test_write_is_atomic_and_overwrites(tmp_path):
    _, path = _save(tmp_path)
    first = path.read_bytes()
    module2 = Tiny()
    save_network(module2, path, kind="generator", config=CONFIG)
    assert path.read_bytes() != first
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"]  # no temp files left

    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="not plain JSON"):  # failure leaves the old file
        save_network(module2, path, kind="generator", config={"x": object()})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"]


def test_bad_arguments(tmp_path):
    with pytest.raises(CheckpointError, match="kind"):
        write_network(tmp_path / "x.safetensors", "vae", "X", {}, Tiny().state_dict())
    with pytest.raises(CheckpointError, match="dtype"):
        write_network(tmp_path / "x.safetensors", "generator", "X", {}, Tiny().state_dict(), dtype=torch.bfloat16)
    with pytest.raises(CheckpointError, match="is a folder"):
        write_network(tmp_path, "generator", "X", {}, Tiny().state_dict())


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        read_network(tmp_path / "nope.safetensors")


def test_foreign_safetensors_without_our_metadata(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(3)}, path, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="without psohead metadata"):
        read_network(path)


def test_future_format_and_bad_metadata(tmp_path):
    base = {"psohead.format": "1", "psohead.kind": "generator", "psohead.config": "{}"}
    cases = [({"psohead.format": "2"}, "format '2' is not supported"),
             ({"psohead.kind": "vae"}, "unknown network kind"),
             ({"psohead.config": "{not json"}, "not valid JSON"),
             ({"psohead.config": "[1]"}, "not a JSON object"),
             ({"psohead.dtype": "int8"}, "storage dtype")]
    for change, message in cases:
        path = tmp_path / "m.safetensors"
        save_file({"w": torch.ones(3)}, path, metadata={**base, **change})
        with pytest.raises(CheckpointError, match=message):
            read_network(path)


def test_non_safetensors_and_truncated_files(tmp_path):
    _, path = _save(tmp_path)
    data = path.read_bytes()
    junk = tmp_path / "junk.safetensors"
    for content in (b"", b"abc", b"\x80\x04hello pickle bytes", os.urandom(64)):
        junk.write_bytes(content)
        with pytest.raises(CheckpointError, match="not a safetensors file"):
            read_network(junk)
    for cut in (len(data) - 1, len(data) // 2, 20):
        junk.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="corrupt|truncated"):
            read_network(junk)


def test_flipped_data_byte_fails_checksum(tmp_path):
    _, path = _save(tmp_path)
    data = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    data[8 + n + 5] ^= 0x40  # inside the tensor data section
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        read_network(path)


def test_garbled_header(tmp_path):
    _, path = _save(tmp_path)
    data = bytearray(path.read_bytes())
    data[9] = 0xFF  # invalid UTF-8 inside the JSON header
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="header is corrupt"):
        read_network(path)


def test_header_offsets_pointing_outside_the_file(tmp_path):
    _, path = _save(tmp_path)
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    name = next(k for k in header if k != "__metadata__")
    header[name]["data_offsets"] = [0, 10 ** 9]
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_network(path)
