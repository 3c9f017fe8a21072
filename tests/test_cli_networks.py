"""`psohead convert | info | generate`, run in-process through the real argument parser."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import require_shared
from PIL import Image
from safetensors.torch import load_file, save_file

from psohead.api import save_network
from psohead.checkpoint.safetensors_io import read_metadata
from psohead.cli import main
from psohead.networks.config import GeneratorConfig
from psohead.networks.generator import TriGridGenerator

PKL = ("fixtures", "panohead_small_official_format.pkl")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random generator small enough to render in a second (128² output, 32² neural rendering)."""
    cfg = GeneratorConfig.fixture_small()
    rk = dict(cfg.rendering_kwargs, superresolution_module="training.superresolution.SuperresolutionHybrid2X",
              triplane_size=32, depth_resolution=4, depth_resolution_importance=4)
    cfg = cfg.replace(z_dim=8, img_resolution=128, channel_base=128, channel_max=8, rendering_kwargs=rk,
                      sr_kwargs={"channel_base": 128, "channel_max": 8, "fused_modconv_default": "inference_only"},
                      neural_rendering_resolution=32)
    torch.manual_seed(0)
    return save_network(TriGridGenerator.from_config(cfg), tmp_path_factory.mktemp("tiny") / "tiny.safetensors")


def _err(capsys) -> str:
    return capsys.readouterr().err.strip()


def test_generate_writes_views_and_grid(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["generate", "--network", str(tiny), "--seeds", "3,5", "--yaw", "0,180", "--pitch", "10",
               "--outdir", str(out), "--deterministic", "--quiet"])
    assert rc == 0, _err(capsys)
    names = sorted(p.name for p in out.iterdir() if p.name != ".psohead")  # the folder's marker
    assert names == ["grid.png", "seed0003_yaw0_pitch10.png", "seed0003_yaw180_pitch10.png",
                     "seed0005_yaw0_pitch10.png", "seed0005_yaw180_pitch10.png"]
    views = {n: np.asarray(Image.open(out / n)) for n in names}
    for n, im in views.items():
        assert im.dtype == np.uint8 and im.shape == ((256, 256, 3) if n == "grid.png" else (128, 128, 3)), n
    grid = views["grid.png"]  # rows = seeds, columns = views
    assert np.array_equal(grid[:128, :128], views["seed0003_yaw0_pitch10.png"])
    assert np.array_equal(grid[128:, 128:], views["seed0005_yaw180_pitch10.png"])
    assert not np.array_equal(views["seed0003_yaw0_pitch10.png"], views["seed0005_yaw0_pitch10.png"])
    assert not np.array_equal(views["seed0003_yaw0_pitch10.png"], views["seed0003_yaw180_pitch10.png"])
    # same seed, deterministic rendering -> the same pixels, whatever other seeds were generated
    # (same views: convolutions are not bit-identical across batch sizes)
    again = tmp_path / "again"
    assert main(["generate", "--network", str(tiny), "--seeds", "5", "--yaw", "0,180", "--pitch", "10",
                 "--outdir", str(again), "--deterministic", "--quiet"]) == 0
    assert np.array_equal(np.asarray(Image.open(again / "seed0005_yaw180_pitch10.png")),
                          views["seed0005_yaw180_pitch10.png"])


@pytest.mark.parametrize("args, message", [
    (["--seeds", "7-3"], "--seeds '7-3'"),
    (["--seeds", "x"], "--seeds 'x'"),
    (["--yaw", "front"], "--yaw 'front'"),
    (["--pitch", "90"], "strictly between -90 and 90"),
])
def test_generate_bad_arguments(tiny, tmp_path, capsys, args, message):
    assert main(["generate", "--network", str(tiny), "--outdir", str(tmp_path), *args]) == 1
    err = _err(capsys)
    assert err.startswith("psohead generate: error:") and message in err and "\n" not in err


def test_convert_official_pickle(tmp_path, capsys):
    pkl = require_shared(*PKL)
    weights = load_file(require_shared("fixtures", "panohead_small_weights.safetensors"))
    for which, prefix, cls in (("G_ema", "G.", "TriGridGenerator"), ("D", "D.", "MaskDualDiscriminatorV2")):
        dst = tmp_path / f"{which}.safetensors"
        assert main(["convert", str(pkl), str(dst), "--which", which]) == 0, _err(capsys)
        assert f"wrote {dst}" in capsys.readouterr().out
        meta = read_metadata(dst)
        assert meta["psohead.class"] == cls and meta["psohead.source"] == f"{which} of {pkl.name}"
        got = load_file(dst)
        ref = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        assert sorted(got) == sorted(ref)
        assert all(torch.equal(got[k], v) for k, v in ref.items())
    half = tmp_path / "half.safetensors"
    assert main(["convert", str(tmp_path / "G_ema.safetensors"), str(half), "--fp16"]) == 0
    got = load_file(half)
    assert got["decoder.net.0.weight"].dtype == torch.float16
    assert torch.equal(got["decoder.net.0.weight"], weights["G.decoder.net.0.weight"].half())


def test_info_counts_match_the_official_parameter_counts(capsys):
    pkl = require_shared(*PKL)
    counts = json.loads(require_shared("fixtures", "panohead_small_meta.json").read_text())["param_counts"]
    assert main(["info", str(pkl)]) == 0, _err(capsys)
    out = capsys.readouterr().out
    assert "kind:     generator (TriPlaneGenerator -> TriGridGenerator)" in out
    assert "neural rendering resolution: 64" in out and "z_dim=64" in out and "depth_resolution=12" in out
    assert out.splitlines()[-1].split()[:2] == ["total", f"{counts['G']:,}"]
    assert "backbone" in out and "superresolution" in out and "t_mapping" in out
    assert main(["info", str(pkl), "--which", "D"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split()[:2] == ["total", f"{counts['D']:,}"]


def test_info_on_our_file(tiny, capsys):
    assert main(["info", str(tiny)]) == 0, _err(capsys)
    out = capsys.readouterr().out
    assert "storage:  float32, written by psohead" in out and "neural rendering resolution: 32" in out


@pytest.mark.parametrize("verb", ["convert", "info", "generate"])
def test_bad_network_files_exit_with_one_line(verb, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pkl"
    corrupt.write_bytes(b"\x80\x04\x95garbage")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(2)}, foreign)
    cases = {tmp_path / "missing.pkl": "no such file", corrupt: "corrupt or truncated pickle",
             foreign: "without psohead metadata"}
    for path, message in cases.items():
        argv = {"convert": ["convert", str(path), str(tmp_path / "o.safetensors")], "info": ["info", str(path)],
                "generate": ["generate", "--network", str(path), "--outdir", str(tmp_path / "g")]}[verb]
        assert main(argv) == 1
        err = _err(capsys)
        assert err.startswith(f"psohead {verb}: error:") and message in err and "\n" not in err, err
    assert not (tmp_path / "o.safetensors").exists()


@pytest.mark.slow
def test_generate_from_official_pickle(tmp_path):
    out = tmp_path / "out"
    assert main(["generate", "--network", str(require_shared(*PKL)), "--seeds", "0", "--yaw", "0,90",
                 "--outdir", str(out), "--deterministic", "--quiet"]) == 0
    assert np.asarray(Image.open(out / "grid.png")).shape == (512, 1024, 3)
