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
    from psohead.inversion.pipeline import reconstruct
    from psohead.inversion.presets import Outputs, Preset, Rays, Shape, Stage1, Stage2

    G = tiny_generator()
    image, label, _ = rendered_target(G)
    out = tmp_path_factory.mktemp("cuda") / "out"
    preset = Preset("test", Stage1(steps=3, w_avg_samples=500), Stage2(steps=3), Rays(deterministic=True),
                    shape=Shape(weight=1.0), outputs=Outputs(video_frames=8, video_fps=8, mesh_resolution=32, render_batch=4))
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


def test_reconstruct_ran_its_steps_as_cuda_graphs(reconstruction):
    rec, out = reconstruction
    assert json.loads((out / "reconstruction.json").read_text())["settings"]["cuda_graphs_used"] == \
        {"stage1": True, "stage2": True}


@pytest.mark.parametrize("bounded", [False, True])
@pytest.mark.parametrize("stage", [1, 2])
def test_graphed_step_matches_eager_and_follows_parameter_updates(stage, bounded):
    """Replays give the eager images (and, with an opacity-bound view, its opacity) and gradients
    (stage 1: d/d ws; stage 2: d/d weights) and keep doing so after the weights change in place
    (an optimiser step)."""
    from inversion_tiny import rendered_target, tiny_generator
    from psohead.inversion.graphs import StepRenderer
    from psohead.inversion.pivotal import tuned_parameters
    from psohead.inversion.back.prior import back_cameras
    from psohead.inversion.targets import TargetView

    G = tiny_generator()
    target, label, ws = rendered_target(G)
    G = G.cuda().requires_grad_(False)
    cams = back_cameras(label, 30.0)
    views = [TargetView("front", target, label.cuda(), 1.0)] + [TargetView(n, target, lab.cuda(), w) for n, lab, w in cams]
    if bounded:  # the shape label's kind of view: opacity only, at its bounds' resolution
        views.insert(1, TargetView("shape", None, cams[0][1].cuda(), 1.0, opacity=torch.ones(1, 2, 8, 8).cuda()))
    params = tuned_parameters(G)
    if stage == 2:
        for p in params:
            p.requires_grad_(True)
    graphed = StepRenderer(G, deterministic=True, graphs=True)
    eager = StepRenderer(G, deterministic=True, graphs=False)
    assert not StepRenderer(G, deterministic=False, graphs=True).graphs  # random rays stay eager

    def run(render):
        w = ws.cuda().clone().requires_grad_(stage == 1)
        images, opacity = render(w, views)
        assert (opacity is not None) == bounded
        loss = (images - target.cuda()).square().mean() + (opacity.square().mean() if bounded else 0)
        wrt = [w] if stage == 1 else params
        out = torch.cat([images.flatten()] + ([opacity.flatten()] if bounded else []))
        return out.detach().clone(), torch.autograd.grad(loss, wrt, allow_unused=True)

    for step in range(3):  # call 1 runs eagerly, call 2 captures, call 3 replays after the update
        got, got_g = run(graphed)
        want, want_g = run(eager)
        assert torch.allclose(got, want, atol=1e-4)
        for a, b in zip(got_g, want_g):
            assert (a is None) == (b is None)
            if a is not None:
                assert torch.allclose(a, b, atol=1e-5, rtol=1e-3)
        with torch.no_grad():  # an in-place update, like Adam's
            for p in params[:4]:
                p.add_(0.05 * torch.randn_like(p))
    assert graphed.used_graphs and graphed.fallback is None


@pytest.mark.parametrize("stage", [1, 2])
def test_graphed_steps_preview_what_eager_steps_preview(stage):
    """A graphed step's render lives in a static buffer that the next replay overwrites: each
    step's preview must still be that step's picture, as the eager run shows it."""
    import numpy as np

    from inversion_tiny import rendered_target, tiny_generator
    from psohead.inversion.losses import build_perceptual
    from psohead.inversion.pivotal import PivotalConfig, tune
    from psohead.inversion.projector import ProjectorConfig, latent_stats, project
    from psohead.inversion.targets import TargetView

    G = tiny_generator()
    target, label, ws = rendered_target(G)
    G = G.cuda()
    views = [TargetView("front", target, label, 1.0).to("cuda")]
    loss = build_perceptual("msssim").cuda()
    stats = latent_stats(G, num_samples=256)

    def previews(graphs: bool):
        events = []
        if stage == 1:
            cfg = ProjectorConfig(num_steps=5, deterministic=True, cuda_graphs=graphs, preview_seconds=0)
            result = project(G, views, loss, stats, cfg, progress=events.append)
        else:
            cfg = PivotalConfig(num_steps=5, deterministic=True, cuda_graphs=graphs, preview_seconds=0)
            result = tune(G, ws.cuda(), views, loss, cfg, progress=events.append)[1]
        assert result.cuda_graphs == graphs
        return [e.preview.astype(int) for e in events if e.preview is not None]

    graphed, eager = previews(True), previews(False)
    assert len(graphed) == len(eager) == 5
    for got, want in zip(graphed, eager):
        assert np.abs(got - want).mean() < 1.0
    assert np.abs(graphed[-1] - graphed[0]).mean() > 1.0  # the steps changed the picture


def test_reconstructor_serves_photos_on_the_gpu_without_changing_its_network():
    """Two photos through one Reconstructor on CUDA: the loaded generator stays as loaded (its
    rendering options too) and the tuned copies render with the inversion's ray start."""
    from inversion_tiny import rendered_target, tiny_generator
    from psohead.inversion.pipeline import Reconstructor

    G = tiny_generator()
    photos = [rendered_target(G, seed=s)[:2] for s in (1, 2)]
    G = G.cuda()
    before = {k: v.clone() for k, v in G.state_dict().items()}
    kwargs = dict(G.rendering_kwargs)
    R = Reconstructor(G, device="cuda", preset="fast", stage1_steps=2, stage2_steps=2, stage1_w_avg_samples=200)
    assert R.G is G
    recs = [R(image, label=label[0], back="prior", progress=False) for image, label in photos]
    assert G.rendering_kwargs == kwargs and all(torch.equal(before[k], v) for k, v in G.state_dict().items())
    assert all(r.G.rendering_kwargs["ray_start"] == 2.35 for r in recs)
    assert not torch.equal(recs[0].ws, recs[1].ws)
