"""The CUDA code paths end to end (skipped without a GPU; on a GPU machine run
``python -m pytest tests/test_cuda.py``, see README): tensors made on the GPU meet CPU-made
labels in the writers, so only a real GPU run catches device mix-ups."""
import json

import imageio.v3 as iio
import pytest
import torch
import trimesh
from PIL import Image

from psohead.cli import main

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def reconstruction(tmp_path_factory):
    from inversion_tiny import rendered_target, tiny_generator
    from psohead.inversion.presets import Preset
    from psohead.inversion.reconstruct import reconstruct

    G = tiny_generator()
    image, label, _ = rendered_target(G)
    out = tmp_path_factory.mktemp("cuda") / "out"
    preset = Preset("test", 3, 3, deterministic=True, w_avg_samples=500, video_frames=8, video_fps=8,
                    mesh_resolution=32, render_batch=4)
    rec = reconstruct(image, out, label=label[0], network=G, preset=preset, back="prior", device="cuda",
                      progress=False)
    return rec, out


def test_reconstruct_writes_every_output(reconstruction):
    from psohead.inversion import outputs

    rec, out = reconstruction
    assert rec.ws.device.type == "cuda"
    assert set(outputs.OUTPUT_FILES) <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "reconstruction.json").read_text())
    assert summary["back"]["used"] == "prior" and len(summary["losses"]["stage2"]["loss"]) == 3
    assert len(list(iio.imiter(out / "turntable.mp4", plugin="FFMPEG"))) == 8
    assert len(trimesh.load(out / "head.ply").vertices) > 0


@pytest.mark.parametrize("verb, extra, name", [
    ("render", ["--yaws", "0,180"], "views.png"),
    ("video", ["--frames", "4", "--quiet"], "t.mp4"),
    ("mesh", ["--resolution", "32", "--quiet"], "head.ply"),
])
def test_verbs_on_the_tuned_network(reconstruction, tmp_path, verb, extra, name):
    _, out = reconstruction
    target = tmp_path / name
    assert main([verb, "--network", str(out / "generator.safetensors"), "--latent", str(out / "latent.safetensors"),
                 "--device", "cuda", "--out", str(target), *extra]) == 0
    assert target.stat().st_size > 0
    if name.endswith(".png"):
        assert Image.open(target).size[0] > 0


def test_camera_offset_follows_the_label_device():
    from psohead.camera import apply_offset, label_from_yaw_pitch

    label = label_from_yaw_pitch(0.0)
    out = apply_offset(label, torch.tensor([[0.0, 0.1, 0.0]], device="cuda"))
    assert out.device == label.device and out[0, 7] == pytest.approx(float(label[0, 7]) + 0.1)
