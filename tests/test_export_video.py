"""View grids and turntable videos rendered through the generator API (analytic stand-in G)."""
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from export_standins import SphereG
from psohead.camera import RADIUS, label_from_yaw_pitch
from psohead.errors import InputError
from psohead.export.video import turntable_yaws, write_turntable, write_video
from psohead.export.views import make_grid, render_views, save_grid
from psohead.io.images import to_uint8

WS = torch.zeros(1, 14, 32)


def expected_colour(yaw, pitch=0.0):
    """What SphereG paints for a camera at (yaw, pitch): its position / RADIUS mapped to uint8."""
    pos = label_from_yaw_pitch(yaw, pitch)[0, [3, 7, 11]] / RADIUS
    return np.clip(pos.numpy() * 127.5 + 128, 0, 255)


def test_to_uint8_mappings():
    img = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1)
    assert to_uint8(img)[0, 0, 0].tolist() == [0, 128, 255]
    depth = torch.tensor([2.0, 3.0]).view(2, 1, 1, 1)
    d = to_uint8(depth, "image_depth", depth_range=(2.0, 4.0))
    assert d.shape == (2, 1, 1, 3) and d[:, 0, 0, 0].tolist() == [255, 127]      # near is bright
    assert to_uint8(torch.ones(1, 1, 2, 2), "image_mask").max() == 255


def test_render_views_uses_the_right_cameras_in_batches():
    G = SphereG()
    yaws = [0.0, math.pi / 2, math.pi, 3 * math.pi / 2, 0.3]
    views = render_views(G, WS, yaws, pitch=0.2, batch_size=2, neural_rendering_resolution=8)
    assert views.shape == (5, 16, 16, 3) and views.dtype == np.uint8
    assert G.calls == [2, 2, 1] and G.planes_made == 1  # one tri-grid for every call
    for v, yaw in zip(views, yaws):
        assert np.abs(v.astype(float) - expected_colour(yaw, 0.2)).max() <= 1
    # yaw 0 looks at the face from +z; yaw 90 deg puts the camera at +x (the subject's left)
    assert views[0, 0, 0, 2] > 240 and views[1, 0, 0, 0] > 240 and views[2, 0, 0, 2] < 15
    default = render_views(G, WS, neural_rendering_resolution=4)
    assert default.shape[0] == 8
    with pytest.raises(InputError, match="unknown image kind"):
        render_views(G, WS, [0.0], key="image_normals")


def test_grid_layout_and_file(tmp_path):
    imgs = np.stack([np.full((4, 6, 3), 10 * i, np.uint8) for i in range(5)])
    grid = make_grid(imgs, cols=3, pad=2)
    assert grid.shape == (2 * 4 + 2, 3 * 6 + 2 * 2, 3)
    assert grid[0, 0, 0] == 0 and grid[0, 8, 0] == 10 and grid[6, 0, 0] == 30 and grid[6, 8, 0] == 40
    assert (grid[6:, 16:] == 0).all()                                   # empty sixth cell
    path = save_grid(imgs, tmp_path / "views.png", cols=3, pad=2)
    assert np.array_equal(np.asarray(Image.open(path)), grid)
    with pytest.raises(InputError):
        make_grid(imgs.astype(np.float32))


def test_turntable_yaws_cover_one_turn():
    y = turntable_yaws(8)
    assert y.tolist() == pytest.approx([i * math.pi / 4 for i in range(8)])


def test_turntable_video_decodes_with_the_right_frames(tmp_path):
    G = SphereG()
    path = write_turntable(G, WS, tmp_path / "turntable.mp4", frames=12, fps=24, batch_size=5,
                           neural_rendering_resolution=16, progress=False)
    assert G.calls == [5, 5, 2]
    frames = np.stack(list(iio.imiter(path, plugin="FFMPEG")))
    assert frames.shape == (12, 32, 32, 3)
    for i, frame in enumerate(frames):       # H.264 is lossy: flat colours survive within a few levels
        assert np.abs(frame.reshape(-1, 3).mean(0) - expected_colour(2 * math.pi * i / 12)).max() < 6
    meta = iio.immeta(path, plugin="FFMPEG")
    assert meta["codec"] == "h264" and meta["fps"] == pytest.approx(24)
    assert "yuv420p" in meta.get("pix_fmt", "yuv420p")
    assert [p.name for p in tmp_path.iterdir()] == ["turntable.mp4"]


def test_write_video_pads_odd_sizes_and_checks_frames(tmp_path):
    frames = [np.full((15, 21, 3), 100, np.uint8)] * 3
    path = write_video(frames, tmp_path / "odd.mp4", fps=10)
    assert np.stack(list(iio.imiter(path))).shape == (3, 16, 22, 3)
    with pytest.raises(InputError, match="size"):
        write_video([np.zeros((16, 16, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)], tmp_path / "bad.mp4")
    with pytest.raises(InputError, match="no frames"):
        write_video([], tmp_path / "empty.mp4")
    with pytest.raises(InputError, match=".mp4"):
        write_video(frames, tmp_path / "x.avi")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.mp4"]



def test_renders_in_batches_from_one_tri_grid_are_the_generators_own():
    """Views rendered two per call from a tri-grid made once equal one synthesis call of them all."""
    from inversion_tiny import tiny_generator
    from psohead.export.views import render_labels

    G = tiny_generator()
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0)), label_from_yaw_pitch(0.0))
    labels = torch.cat([label_from_yaw_pitch(y) for y in (0.0, 0.8, math.pi, -0.8, 0.3)])
    got = render_labels(G, ws, labels, batch_size=2)
    want = to_uint8(G.synthesis(ws, labels, noise_mode="const", deterministic=True)["image"])
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # float rounding of the batch sizes
