"""``psohead render | video | mesh`` on a latent file (stand-in network; the real one is a slow test)."""
import imageio.v3 as iio
import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

import psohead.api
from conftest import require_shared
from export_standins import SphereG
from psohead.cli import main
from psohead.export.latent import save_latent
from psohead.export.volume import read_mrc


@pytest.fixture
def latent(tmp_path, monkeypatch):
    monkeypatch.setattr(psohead.api, "load_generator", lambda path, device=None: SphereG())
    return str(save_latent(tmp_path / "latent.safetensors", torch.zeros(1, 14, 32)))


def test_render_grid_and_single_view(latent, tmp_path, capsys):
    out = tmp_path / "views.png"
    assert main(["render", "--network", "x.pkl", "--latent", latent, "--yaws", "0,90,180",
                 "--cols", "2", "--render-resolution", "8", "--out", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape == (32, 32, 3)           # 2x2 cells of 16x16
    assert "3 views" in capsys.readouterr().out
    one = tmp_path / "back.png"
    assert main(["render", "--network", "x.pkl", "--latent", latent, "--yaws", "180", "--out", str(one)]) == 0
    img = np.asarray(Image.open(one))
    assert img.shape == (32, 32, 3) and img[0, 0, 2] < 15            # camera at -z: the back


def test_video(latent, tmp_path):
    out = tmp_path / "t.mp4"
    assert main(["video", "--network", "x.pkl", "--latent", latent, "--frames", "6", "--fps", "12",
                 "--render-resolution", "8", "--quiet", "--out", str(out)]) == 0
    assert np.stack(list(iio.imiter(out, plugin="FFMPEG"))).shape == (6, 16, 16, 3)


def test_mesh_formats_and_mrc(latent, tmp_path):
    outs = [tmp_path / "head.ply", tmp_path / "head.glb"]
    assert main(["mesh", "--network", "x.pkl", "--latent", latent, "--resolution", "32", "--quiet",
                 "--out", str(outs[0]), "--out", str(outs[1]), "--mrc", str(tmp_path / "d.mrc")]) == 0
    for path in outs:
        mesh = trimesh.load(path, force="mesh")
        assert mesh.is_watertight and abs(np.linalg.norm(mesh.vertices - [0, 0.05, 0], axis=1).mean() - 0.3) < 0.03
    assert read_mrc(tmp_path / "d.mrc").data.shape == (32, 32, 32)


@pytest.mark.parametrize("argv, message", [
    (["render", "--yaws", "0,x"], "--yaws"),
    (["video", "--out", "t.avi"], ".mp4"),
    (["mesh", "--out", "head.stl"], ".ply"),
    (["mesh", "--level", "high", "--out", "h.ply"], "--level"),
])
def test_bad_arguments_give_one_line(latent, tmp_path, capsys, argv, message):
    argv = argv + ([] if "--out" in argv else ["--out", str(tmp_path / "v.png")])
    assert main([*argv[:1], "--network", "x.pkl", "--latent", latent, *argv[1:]]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_latent_of_the_wrong_shape(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(psohead.api, "load_generator", lambda path, device=None: SphereG())
    bad = save_latent(tmp_path / "bad.safetensors", torch.zeros(1, 10, 32))
    assert main(["render", "--network", "x", "--latent", str(bad), "--out", str(tmp_path / "v.png")]) == 1
    assert "needs [14, 32]" in capsys.readouterr().err


@pytest.mark.slow
def test_verbs_on_the_official_fixture_network(tmp_path):
    pkl = require_shared("fixtures/panohead_small_official_format.pkl")
    common = ["--network", str(pkl), "--seed", "1", "--device", "cpu", "--quiet"]
    assert main(["render", *common, "--yaws", "0,180", "--kind", "image_raw", "--render-resolution", "16",
                 "--out", str(tmp_path / "v.png")]) == 0
    assert np.asarray(Image.open(tmp_path / "v.png")).shape == (16, 32, 3)
    assert main(["video", *common, "--frames", "2", "--kind", "image_raw", "--render-resolution", "16",
                 "--out", str(tmp_path / "t.mp4")]) == 0
    assert len(list(iio.imiter(tmp_path / "t.mp4", plugin="FFMPEG"))) == 2
    assert main(["mesh", *common, "--resolution", "48", "--out", str(tmp_path / "h.ply")]) == 0
    mesh = trimesh.load(tmp_path / "h.ply", force="mesh")
    assert len(mesh.faces) > 100 and mesh.is_watertight
    assert np.abs(mesh.vertices).max() <= 0.5 + 1e-6                 # inside the box
