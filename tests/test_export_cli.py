"""``psohead render | video | mesh`` on a latent file (stand-in network; the real one is a slow test)."""
import json

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
    outs = [tmp_path / "head.ply", tmp_path / "head.glb", tmp_path / "m" / "x.obj"]
    assert main(["mesh", "--network", "x.pkl", "--latent", latent, "--resolution", "32", "--quiet",
                 "--texture-size", "256", "--bake-views", "4", "--scale", "1",
                 *[a for p in outs for a in ("--out", str(p))], "--mrc", str(tmp_path / "d.mrc")]) == 0
    for path in outs:
        mesh = trimesh.load(path, force="mesh")
        assert abs(np.linalg.norm(mesh.vertices - [0, 0.05, 0], axis=1).mean() - 0.3) < 0.03
    assert trimesh.load(outs[0]).is_watertight
    assert sorted(p.name for p in outs[2].parent.iterdir()) == ["x.mtl", "x.obj", "x_albedo.png"]
    assert np.asarray(Image.open(outs[2].parent / "x_albedo.png")).shape == (256, 256, 3)
    assert read_mrc(tmp_path / "d.mrc").data.shape == (32, 32, 32)


def test_mesh_untextured_in_metres_and_from_the_photo(latent, tmp_path, capsys):
    out = tmp_path / "a" / "head.glb"
    assert main(["mesh", "--network", "x.pkl", "--latent", latent, "--resolution", "32", "--quiet", "--no-texture",
                 "--mesh-faces", "500", "--out", str(out)]) == 0
    (mesh,) = trimesh.load(out, process=False).geometry.values()
    assert len(mesh.faces) <= 500 and getattr(mesh.visual, "uv", None) is None
    r = np.linalg.norm(mesh.vertices - np.array([0, 0.05, 0]) * 0.44, axis=1).mean()
    assert abs(r - 0.3 * 0.44) < 0.015                              # metres by default
    assert "0.44 m per world unit" in capsys.readouterr().out
    # a reconstruct folder: crop.png + label.json beside the latent
    folder = tmp_path / "rec"
    folder.mkdir()
    Image.new("RGB", (64, 64), (20, 220, 40)).save(folder / "crop.png")
    from psohead.camera import format_label, label_from_yaw_pitch
    (folder / "label.json").write_text(json.dumps({"label": format_label(label_from_yaw_pitch(0.0)[0])}))
    rec_latent = str(save_latent(folder / "latent.safetensors", torch.zeros(1, 14, 32)))
    out = tmp_path / "b" / "head.obj"
    assert main(["mesh", "--network", "x.pkl", "--latent", rec_latent, "--resolution", "32", "--quiet",
                 "--texture-size", "256", "--bake-views", "4", "--texture-from-photo", "--out", str(out)]) == 0
    albedo = np.asarray(Image.open(tmp_path / "b" / "head_albedo.png")).reshape(-1, 3)
    assert (np.abs(albedo.astype(int) - [20, 220, 40]).max(1) < 8).mean() > 0.1   # the photo's green


@pytest.mark.parametrize("argv, message", [
    (["render", "--yaws", "0,x"], "--yaws"),
    (["video", "--out", "t.avi"], ".mp4"),
    (["mesh", "--out", "head.stl"], ".ply"),
    (["mesh", "--level", "high", "--out", "h.ply"], "--level"),
    (["mesh", "--texture-size", "1000", "--out", "h.glb"], "power of two"),
    (["mesh", "--mesh-faces", "-5", "--out", "h.glb"], "faces must be"),
    (["mesh", "--photo", "x", "--out", "h.glb"], "only used with --texture-from-photo"),
    (["mesh", "--no-colors", "--texture-from-photo", "--out", "h.glb"], "geometry only"),
    (["mesh", "--texture-from-photo", "--out", "h.glb"], "no photo crop"),
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
