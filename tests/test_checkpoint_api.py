"""load_generator / load_discriminator on the official fixture snapshot and on our own files."""
from __future__ import annotations

import pickle
import sys
import types

import pytest
import torch
from conftest import require_shared
from safetensors.torch import load_file, save_file

from psohead import api
from psohead.api import load_discriminator, load_generator, read_checkpoint, save_network
from psohead.checkpoint.safetensors_io import read_metadata, read_network, write_network
from psohead.errors import CheckpointError
from psohead.networks.generator import TriGridGenerator

PKL = ("fixtures", "panohead_small_official_format.pkl")
# Fixture README "Suggested tolerances": max|ours - ref| <= atol + rtol * max|ref|
TOL = {"image": (1e-4, 2e-4), "image_raw": (1e-4, 2e-4), "image_depth": (1e-5, 1e-4), "image_mask": (1e-5, 1e-4)}


@pytest.fixture(scope="module")
def pkl():
    return require_shared(*PKL)


@pytest.fixture(scope="module")
def weights():
    return load_file(require_shared("fixtures", "panohead_small_weights.safetensors"))


@pytest.fixture(scope="module")
def G(pkl):
    return load_generator(pkl)


def _prefixed(weights, prefix):
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


def test_official_g_ema_weights_bit_identical(G, weights):
    ref = _prefixed(weights, "G.")
    sd = G.state_dict()
    assert isinstance(G, TriGridGenerator) and not G.training
    assert sorted(sd) == sorted(ref) and len(sd) == 296
    for name, t in ref.items():
        assert sd[name].dtype == torch.float32 and torch.equal(sd[name], t), name
    assert not any(p.requires_grad for p in G.parameters())
    assert G.neural_rendering_resolution == 64


def test_official_g_and_d(pkl, weights):
    G_train = load_generator(pkl, which="G")
    for name, t in _prefixed(weights, "G.").items():
        assert torch.equal(G_train.state_dict()[name], t), name
    D = load_discriminator(pkl)
    ref = _prefixed(weights, "D.")
    assert sorted(D.state_dict()) == sorted(ref) and len(ref) == 92
    for name, t in ref.items():
        assert torch.equal(D.state_dict()[name], t), name


def test_official_forward_matches_fixture(G):
    io = load_file(require_shared("fixtures", "panohead_small_io.safetensors"))
    with torch.no_grad():  # one sample of caseA keeps this fast; the module carries the real weights
        out = G(io["z"][:1], io["caseA/c"][:1], truncation_psi=1, noise_mode="const", deterministic=True)
    for key, (atol, rtol) in TOL.items():
        ref = io[f"caseA/{key}"][:1]
        assert out[key].shape == ref.shape
        err = (out[key] - ref).abs().max().item()
        assert err <= atol + rtol * ref.abs().max().item(), (key, err)


def test_convert_round_trip_is_exact(G, tmp_path):
    path = save_network(G, tmp_path / "g.safetensors", source="test")
    meta = read_metadata(path)
    assert meta["psohead.kind"] == "generator" and meta["psohead.class"] == "TriGridGenerator"
    assert meta["psohead.config"] == G.config.to_dict()
    G2 = load_generator(path)
    assert G2.config == G.config and G2.neural_rendering_resolution == 64
    sd, sd2 = G.state_dict(), G2.state_dict()
    assert list(sd) == list(sd2)
    for name in sd:
        assert torch.equal(sd[name], sd2[name]), name


def test_fp16_round_trip(G, tmp_path):
    p32 = save_network(G, tmp_path / "g32.safetensors")
    p16 = save_network(G, tmp_path / "g16.safetensors", dtype=torch.float16)
    assert p16.stat().st_size < 0.55 * p32.stat().st_size
    G16 = load_generator(p16)
    for name, t in G.state_dict().items():
        got = G16.state_dict()[name]
        assert got.dtype == torch.float32
        assert torch.equal(got, t.half().float()), name


def test_discriminator_round_trip(pkl, tmp_path):
    D = load_discriminator(pkl)
    path = save_network(D, tmp_path / "d.safetensors")
    D2 = load_discriminator(path)
    for name, t in D.state_dict().items():
        assert torch.equal(D2.state_dict()[name], t), name
    with pytest.raises(CheckpointError, match="holds a discriminator, not a generator"):
        load_generator(path)


def test_device_and_dtype(G, tmp_path):
    path = save_network(G, tmp_path / "g.safetensors")
    G64 = load_generator(path, device="cpu", dtype=torch.float64)
    assert next(G64.parameters()).dtype == torch.float64


def test_default_missing_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(api, "DEFAULT_GENERATOR", tmp_path / "default_generator.safetensors")
    with pytest.raises(CheckpointError, match="bundled default generator .* is missing"):
        load_generator("default")


def test_default_name_loads_the_bundled_file(G, monkeypatch, tmp_path):
    bundled = save_network(G, tmp_path / "default_generator.safetensors", dtype=torch.float16)
    monkeypatch.setattr(api, "DEFAULT_GENERATOR", bundled)
    G2 = load_generator("default")
    assert torch.equal(G2.state_dict()["t_mapping.fc1.weight"], G.state_dict()["t_mapping.fc1.weight"].half().float())


def test_error_messages(G, pkl, tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_generator(tmp_path / "missing.pkl")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"GIF89a not a network")
    with pytest.raises(CheckpointError, match="neither a psohead .safetensors file nor an official .pkl"):
        load_generator(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(2)}, foreign)
    with pytest.raises(CheckpointError, match="without psohead metadata"):
        load_generator(foreign)
    with pytest.raises(CheckpointError, match="use load_discriminator"):
        load_generator(pkl, which="D")
    with pytest.raises(CheckpointError, match="which must be one of"):
        load_generator(pkl, which="G_emaa")
    truncated = tmp_path / "cut.pkl"
    truncated.write_bytes(pkl.read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_generator(truncated)


def test_shape_mismatch_names_the_tensors(G, tmp_path):
    net = read_network(save_network(G, tmp_path / "g.safetensors"))
    config = dict(net.config, channel_max=8)  # the weights were made for channel_max=16
    path = write_network(tmp_path / "bad.safetensors", "generator", "TriGridGenerator", config, net.state_dict)
    with pytest.raises(CheckpointError, match=r"shape mismatch \(file vs config\) backbone\.synthesis\..* and \d+ more"):
        load_generator(path)
    sd = dict(net.state_dict)
    sd.pop("decoder.net.0.bias")
    sd["extra.weight"] = torch.ones(1)
    path = write_network(tmp_path / "bad2.safetensors", "generator", "TriGridGenerator", net.config, sd)
    with pytest.raises(CheckpointError, match="missing decoder.net.0.bias; unexpected extra.weight"):
        load_generator(path)


def test_unusable_config(G, tmp_path):
    net = read_network(save_network(G, tmp_path / "g.safetensors"))
    config = {k: v for k, v in net.config.items() if k != "rendering_kwargs"}
    config["rendering_kwargs"] = {"box_warp": 1}
    path = write_network(tmp_path / "bad.safetensors", "generator", "TriGridGenerator", config, net.state_dict)
    with pytest.raises(CheckpointError, match="config is not usable"):
        load_generator(path)


class _Call:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_unknown_official_class(tmp_path, monkeypatch):
    # a stand-in for torch_utils.persistence so pickle writes the genuine global name
    fake = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("never called")

    _reconstruct_persistent_obj.__module__ = fake.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    fake._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", fake)
    state = {"_parameters": {"w": torch.ones(2)}, "_buffers": {}, "_modules": {}, "_init_args": (),
             "_init_kwargs": {"z_dim": 8}}
    meta = {"type": "class", "version": 6, "class_name": "StyleGAN3Generator", "state": state, "module_src": ""}
    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Call(_reconstruct_persistent_obj, meta)}, protocol=4))
    with pytest.raises(CheckpointError, match="official StyleGAN3Generator, which psohead cannot load"):
        load_generator(path)
    with pytest.raises(CheckpointError, match="StyleGAN3Generator"):
        read_checkpoint(path)


@pytest.mark.slow
def test_converted_file_reproduces_case_a_and_b(G, tmp_path):
    io = load_file(require_shared("fixtures", "panohead_small_io.safetensors"))
    G2 = load_generator(save_network(G, tmp_path / "g.safetensors"))
    with torch.no_grad():
        a = G2(io["z"], io["caseA/c"], noise_mode="const", deterministic=True)
        b = G2(io["z"], io["caseB/c"], truncation_psi=0.7, truncation_cutoff=14, noise_mode="const",
               deterministic=True)
    b["image_sub4"] = b["image"][:, :, ::4, ::4]
    for case, out, keys in (("caseA", a, TOL), ("caseB", b, ("image_sub4", "image_raw", "image_depth", "image_mask"))):
        for key in keys:
            atol, rtol = TOL.get(key, TOL["image"])
            ref = io[f"{case}/{key}"]
            err = (out[key] - ref).abs().max().item()
            assert err <= atol + rtol * ref.abs().max().item(), (case, key, err)
