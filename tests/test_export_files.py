"""Latent files, MRC volumes, the HTML report and atomic writes."""
import base64
import re
import struct

import numpy as np
import pytest
import torch

from psohead.camera import label_from_yaw_pitch
from psohead.errors import InputError, LabelError
from psohead.atomic import atomic_path
from psohead.export.latent import load_latent, save_latent
from psohead.export.report import svg_chart, write_report
from psohead.export.volume import read_mrc, write_mrc


def test_latent_round_trip(tmp_path):
    ws = torch.randn(1, 14, 512)
    label = label_from_yaw_pitch(0.3, 0.1)
    path = save_latent(tmp_path / "latent.safetensors", ws, label=label, meta={"steps": 500, "back": "prior"},
                       delta=[0.01, -0.02, 0.0])
    lat = load_latent(path)
    assert torch.equal(lat.ws, ws)
    assert torch.allclose(lat.label, label)
    assert lat.delta.shape == (1, 3) and lat.delta[0].tolist() == pytest.approx([0.01, -0.02, 0.0])
    assert lat.meta == {"steps": 500, "back": "prior"}
    plain = load_latent(save_latent(tmp_path / "w2.safetensors", ws[0]))   # [num_ws, w_dim] accepted
    assert plain.ws.shape == (1, 14, 512) and plain.label is None and plain.delta is None and plain.meta == {}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_latent_reads_official_projected_w(tmp_path):
    w = np.random.default_rng(0).standard_normal((1, 14, 512)).astype(np.float32)
    np.savez(tmp_path / "projected_w.npz", w=w)
    assert np.array_equal(load_latent(tmp_path / "projected_w.npz").ws.numpy(), w)


def test_latent_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_latent(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="not a readable"):
        load_latent(tmp_path / "junk.safetensors")
    with pytest.raises(InputError, match="finite"):
        save_latent(tmp_path / "nan.safetensors", torch.full((1, 14, 512), float("nan")))
    with pytest.raises(LabelError):
        save_latent(tmp_path / "bad.safetensors", torch.zeros(1, 14, 512), label=torch.zeros(1, 25))
    assert not (tmp_path / "nan.safetensors").exists() and not (tmp_path / "bad.safetensors").exists()


def test_mrc_round_trip_and_header(tmp_path):
    rng = np.random.default_rng(0)
    grid = rng.random((5, 6, 7)).astype(np.float32)   # distinct sizes catch axis mix-ups
    path = write_mrc(grid, tmp_path / "density.mrc", voxel_size=0.01, origin=(-0.5, -0.4, -0.3))
    raw = path.read_bytes()
    assert len(raw) == 1024 + 4 * grid.size
    assert struct.unpack_from("<4i", raw, 0) == (5, 6, 7, 2)           # nx ny nz, mode 2 = float32
    assert raw[208:212] == b"MAP "
    # x fastest on disk: the second stored float is grid[1, 0, 0]
    assert struct.unpack_from("<2f", raw, 1024) == (grid[0, 0, 0], grid[1, 0, 0])
    vol = read_mrc(path)
    assert np.array_equal(vol.data, grid)
    assert vol.voxel_size == pytest.approx((0.01,) * 3)
    assert vol.origin == pytest.approx((-0.5, -0.4, -0.3))


def test_mrc_rejects_non_volumes(tmp_path):
    with pytest.raises(InputError, match="3-D"):
        write_mrc(np.zeros((4, 4)), tmp_path / "x.mrc")
    (tmp_path / "y.mrc").write_bytes(b"\0" * 2000)
    with pytest.raises(InputError, match="not an MRC"):
        read_mrc(tmp_path / "y.mrc")


def test_report_is_self_contained(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    img[:, :, 0] = 200
    video = tmp_path / "turntable.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42fake-video-bytes")
    out = write_report(tmp_path / "report.html", title="Head <1>", images={"input": img, "views": img},
                       video=video, curves={"stage 1": {"mse": [1.0, 0.5, 0.25], "lpips": [0.9, 0.8, 0.7]}},
                       settings={"stage1": {"steps": 500}, "back": "prior"})
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "Head &lt;1&gt;" in text
    # No external resources: every src is a data URI and nothing is fetched over the network.
    srcs = re.findall(r'src="([^"]*)"', text)
    assert len(srcs) == 3 and all(s.startswith("data:") for s in srcs)
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in text
    b64 = re.search(r'src="data:video/mp4;base64,([^"]+)"', text).group(1)
    assert base64.b64decode(b64) == video.read_bytes()
    png = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', text).group(1))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert text.count("<polyline") == 2 and "stage1.steps" in text


def test_svg_chart_maps_values_to_the_plot_box():
    svg = svg_chart({"loss": [4.0, 2.0, 0.0]}, "t", width=200, height=100, log=False)
    pts = [tuple(map(float, p.split(","))) for p in re.search(r'points="([^"]+)"', svg).group(1).split()]
    ys = [p[1] for p in pts]
    assert ys[0] < ys[1] < ys[2]                                  # SVG y grows downward
    assert ys[1] == pytest.approx((ys[0] + ys[2]) / 2)            # linear axis
    assert pts[0][0] < pts[1][0] < pts[2][0]


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".bin" and tmp.parent == tmp_path
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"                      # not visible until the block ends
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_written_files_get_the_umask_mode(tmp_path):
    """Outputs are shared files: a temp-then-rename write must not leave mkstemp's 0600 mode."""
    import os

    from psohead.checkpoint.safetensors_io import save_network
    from psohead.atomic import write_image, write_json

    old = os.umask(0o022)
    try:
        net = save_network(torch.nn.Linear(2, 2), tmp_path / "net.safetensors", kind="generator", config={})
        png = tmp_path / "grid.png"
        write_image(png, np.zeros((4, 4, 3), np.uint8))
        js = tmp_path / "x.json"
        write_json(js, {})
        for path in (net, png, js):
            assert os.stat(path).st_mode & 0o777 == 0o644, path
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "net.safetensors", "x.json"]
