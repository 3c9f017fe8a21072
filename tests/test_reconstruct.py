"""reconstruct(): end-to-end on a tiny random generator (~35 s on 2 idle cores) and CLI errors."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from psohead.cli import main
from psohead.inversion.pipeline import reconstruct
from psohead.inversion.presets import Outputs, Preset, Rays, Stage1, Stage2


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).square().mean()
    return float(-10 * torch.log10(mse))


def test_cli_bad_inputs_fail_with_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reconstruct", str(tmp_path / "missing.jpg"), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "file not found" in err
    (tmp_path / "notes.png").write_text("not an image")
    assert main(["reconstruct", str(tmp_path / "notes.png"), "--out", str(out)]) == 1
    assert "not a readable image" in capsys.readouterr().err
    crop = tmp_path / "crop.png"
    Image.new("RGB", (32, 32)).save(crop)
    label = tmp_path / "label.json"
    label.write_text(json.dumps({"label": [0.0] * 25}))
    assert main(["reconstruct", str(crop), "--label", str(label), "--out", str(out)]) == 1
    assert "rotation" in capsys.readouterr().err
    assert main(["reconstruct", str(crop), "--label", str(label), "--out", str(out), "--back", "fk"]) == 1
    assert "--fk-bank" in capsys.readouterr().err
    assert not out.exists()


def _preset(s1, s2, **overrides):
    """Short steps, small outputs; ``overrides`` as ``section_field=value``."""
    return Preset("test", Stage1(steps=s1, w_avg_samples=500), Stage2(steps=s2), Rays(deterministic=True),
                  outputs=Outputs(video_frames=8, video_fps=8, mesh_resolution=32, texture_size=256, render_batch=4)
                  ).override(**overrides)


@pytest.fixture(scope="module")
def tiny():
    from inversion_tiny import rendered_target, tiny_generator

    torch.set_num_threads(2)
    G = tiny_generator()
    image, label, ws = rendered_target(G)
    return G, image, label, ws


def test_outputs_valid_and_interrupt_leaves_nothing(tiny, tmp_path, monkeypatch):
    import imageio.v3 as iio
    import trimesh

    from psohead.export.latent import load_latent
    from psohead.inversion import outputs

    G, image, label, _ = tiny
    out = tmp_path / "out"
    rec = reconstruct(image, out, label=label[0], network=G, preset=_preset(2, 2), back="prior", progress=False,
                      outputs_texture_from_photo=True)
    names = {p.name for p in out.iterdir() if p.name != ".psohead"}  # the folder's marker
    assert set(outputs.OUTPUT_FILES) <= names
    summary = json.loads((out / "reconstruction.json").read_text())
    assert summary["back"] == {"requested": "prior", "used": "prior", "prior_members": 1}
    assert summary["perceptual"] == "msssim"
    assert len(summary["losses"]["stage1"]["loss"]) == 2 and len(summary["losses"]["stage2"]["mse_back"]) == 2
    assert set(summary["files"]) == names
    assert {"stage1", "stage2", "write_video", "write_mesh"} <= set(summary["timings"])
    frames = list(iio.imiter(out / "turntable.mp4", plugin="FFMPEG"))
    assert len(frames) == 8 and frames[0].shape == (128, 128, 3)
    mesh = trimesh.load(out / "head.ply")
    assert len(mesh.vertices) > 0 and len(mesh.faces) > 0
    # the textured meshes of psohead mesh: GLB with UVs and a base colour texture, OBJ -> MTL -> PNG
    assert {"head.mtl", "head_albedo.png"} <= names and summary["mesh"]["texture_size"] == 256
    assert summary["mesh"]["from_photo"] and summary["mesh"]["texels_from_photo"] > 0
    (glb,) = trimesh.load(out / "head.glb", process=False).geometry.values()
    assert glb.visual.uv is not None and glb.visual.material.baseColorTexture.size == (256, 256)
    assert "mtllib head.mtl" in (out / "head.obj").read_text().splitlines()
    assert "map_Kd head_albedo.png" in (out / "head.mtl").read_text().splitlines()
    assert summary["mesh"]["files"] == {n: (out / n).stat().st_size for n in summary["mesh"]["files"]}
    assert torch.equal(load_latent(out / "latent.safetensors").ws.reshape(rec.ws.shape), rec.ws.cpu())
    assert Image.open(out / "views.png").size == (4 * 128, 2 * 128)
    assert Image.open(out / "back.png").size == (2 * 128, 128)  # pivot | final: the prior is the pivot
    assert "<video" in (out / "report.html").read_text()

    # A run killed while writing leaves the previous complete output untouched and no new folder.
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("psohead.export.video.write_turntable", boom)
    before = (out / "reconstruction.json").read_bytes()
    with pytest.raises(KeyboardInterrupt):
        reconstruct(image, out, label=label[0], network=G, preset=_preset(1, 1), back="none", progress=False)
    assert (out / "reconstruction.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_inversion_recovers_image_and_prior_protects_back(tiny):
    """Calibrated on the tiny random G: mean-latent render 8.3 dB, after 20+15 steps 12.7-13.9 dB;
    back change from the pivot: prior 0.63 vs none 5.4 (MSE in [-1,1] units)."""
    from psohead.inversion.projector import latent_stats

    G, image, label, _ = tiny
    with torch.no_grad():
        w_avg = latent_stats(G, 500).w_avg.repeat(1, G.num_ws, 1)
        start = G.synthesis(w_avg, label, noise_mode="const", deterministic=True)["image"]
    runs = {back: reconstruct(image, None, label=label[0], network=G, preset=_preset(20, 15, stage2_learning_rate=3e-3),
                              back=back, progress=False) for back in ("none", "prior")}
    for back, rec in runs.items():
        assert _psnr(rec.render(rec.render_label), image) > _psnr(start, image) + 3, back
    # Stage 1 is identical in both runs (deterministic), so the pivot's back render is the same.
    assert torch.allclose(runs["none"].pivot_back, runs["prior"].pivot_back, atol=1e-5)
    dist = {b: float((r.render(r.back_label()) - r.pivot_back).square().mean()) for b, r in runs.items()}
    assert dist["prior"] < 0.3 * dist["none"], dist


def test_cli_with_network_file(tiny, tmp_path):
    from psohead.checkpoint.safetensors_io import save_network

    G, image, label, _ = tiny
    net = tmp_path / "tiny.safetensors"
    save_network(G, net)
    crop = tmp_path / "crop.png"
    Image.fromarray(((image[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()).save(crop)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": [["crop.png", label[0].tolist()]]}))
    out = tmp_path / "result"
    assert main(["reconstruct", str(crop), "--out", str(out), "--network", str(net), "--preset", "fast",
                 "--stage1-steps", "1", "--stage2-steps", "1", "--set", "outputs.video_frames=4",
                 "--set", "outputs.mesh_resolution=32", "--back", "none", "--set", "runtime.cuda_graphs=false",
                 "--set", "outputs.texture_size=256", "--mesh-faces", "600", "--texture-from-photo",
                 "--quiet"]) == 0
    summary = json.loads((out / "reconstruction.json").read_text())
    preset = summary["settings"]["preset"]
    assert preset["runtime"]["cuda_graphs"] is False and preset["stage1"]["steps"] == 1
    assert summary["settings"]["label_source"] == "dataset.json"
    assert preset["outputs"]["video_frames"] == 4 and summary["back"]["used"] == "none"
    assert [v["name"] for v in summary["views"]] == ["front"]
    assert {"views.png", "turntable.mp4", "generator.safetensors", "report.html"} <= set(summary["files"])
    # the shared mesh flags and --set reach the preset (one step leaves this head no surface to mesh)
    outputs = preset["outputs"]
    assert (outputs["texture_size"], outputs["mesh_faces"], outputs["texture_from_photo"]) == (256, 600, True)


@pytest.mark.parametrize("argv, message", [
    (["--texture-size", "0"], "outputs.texture_size must be a power of two"),
    (["--set", "outputs.texture_size=16384"], "outputs.texture_size must be a power of two"),
    (["--mesh-faces", "-1"], "outputs.mesh_faces must be an integer >= 0"),
    (["--no-texture", "--texture-from-photo"], "--texture-from-photo needs the texture"),
])
def test_cli_bad_mesh_options_fail_with_one_line(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert main(["reconstruct", str(tmp_path / "photo.jpg"), "--out", str(out), *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not out.exists()


def test_mesh_flags_are_the_mesh_commands_and_the_presets():
    import argparse

    from psohead.cli._mesh_flags import add_mesh_flags, mesh_flags
    from psohead.cli.reconstruct import preset_overrides
    from psohead.export.mesh_options import MeshOptions
    from psohead.inversion.presets import resolve_preset

    p = argparse.ArgumentParser()
    add_mesh_flags(p)
    p.add_argument("--set", action="append", default=[], dest="settings")
    for name in ("stage1_steps", "stage2_steps", "precision"):
        p.add_argument(f"--{name}", default=None)
    args = p.parse_args(["--mesh-faces", "20000", "--texture-size", "512", "--texture-from-photo"])
    expect = MeshOptions(resolution=128, faces=20000, texture_size=512, texture_from_photo=True)
    assert MeshOptions(resolution=128, **mesh_flags(args)) == expect              # psohead mesh
    assert resolve_preset("fast", preset_overrides(args)).outputs.mesh_options() == expect   # reconstruct
    untextured = p.parse_args(["--no-texture"])
    assert resolve_preset("fast", preset_overrides(untextured)).outputs.mesh_options().texture is False
    # fast takes the face from the photo where it has a texture; --no-texture and
    # --no-texture-from-photo leave it out, psohead mesh only does it when asked
    assert resolve_preset("fast").outputs.mesh_options().texture_from_photo is True
    assert resolve_preset("quality").outputs.mesh_options().texture_from_photo is True
    assert resolve_preset("fast", preset_overrides(untextured)).outputs.mesh_options().texture_from_photo is False
    plain = p.parse_args(["--no-texture-from-photo"])
    assert resolve_preset("fast", preset_overrides(plain)).outputs.mesh_options() == MeshOptions(resolution=128)
    assert MeshOptions(resolution=128, **mesh_flags(p.parse_args([]))).texture_from_photo is False
    # no flag: the preset's own values, whatever --set changed
    assert resolve_preset("fast", preset_overrides(p.parse_args(["--set", "outputs.mesh_faces=7000"]))
                          ).outputs.mesh_faces == 7000


def test_fk_back_supervises_both_stages_and_adds_the_prior_in_stage_2(tiny, tmp_path):
    """--back fk: the bank image is a target from stage 1 on; stage 2 also gets the prior views."""
    import math

    import numpy as np

    from psohead.camera import label_from_yaw_pitch
    from psohead.io.dataset_writer import DatasetWriter

    G, image, label, _ = tiny
    yy, xx = np.mgrid[:64, :64]
    with DatasetWriter(tmp_path / "bank") as w:
        for i, radius in enumerate((14, 20, 26)):
            m = (yy - 32) ** 2 + (xx - 32) ** 2 < radius ** 2
            img = np.zeros((64, 64, 3), np.uint8)
            img[m] = (90, 60, 30)
            w.add(f"{i:05d}", img, (m * 255).astype(np.uint8), label_from_yaw_pitch(math.pi, 0.0)[0])
    rec = reconstruct(image, None, label=label[0], network=G, preset=_preset(2, 2), back="fk",
                      fk_bank=tmp_path / "bank", progress=False)
    assert rec.back["used"] == "fk" and rec.back["item"].startswith("0000")
    sources = [v.source for v in rec.views]
    assert sources.count("fk") == 1 and sources.count("prior") >= 1 and sources[0] == "input"
    s1_views = [k for k in rec.history["stage1"] if k.startswith("mse_")]
    assert s1_views == ["mse_front", "mse_back"]  # the FK image already supervised stage 1


def test_colour_matched_prior_is_recorded_shown_and_moves_the_target(tiny, tmp_path):
    _, image, label, _ = tiny  # the bundled model below: the tiny one renders no opaque head to recolour
    mask = torch.zeros(128, 128)
    mask[16:120, 24:104] = 1
    photo = image.clone()
    photo[..., 16:42, 24:104] = torch.tensor([0.6, 0.2, -0.3]).reshape(1, 3, 1, 1)  # the hair band
    out = tmp_path / "out"
    rec = reconstruct(photo, out, label=label[0], mask=mask.numpy(), network="default", back="prior",
                      progress=False, preset=_preset(2, 1, back_colour_match=True))
    shift = torch.tensor(json.loads((out / "reconstruction.json").read_text())["back"]["prior_colour_shift"])
    assert shift.shape == (3,) and shift.abs().max() > 0.05
    target = next(v.image for v in rec.views if v.name == "back" and v.source == "prior")
    # shift x the render's mask in [0,1], per channel (clamping to [-1,1] only shrinks it); 0.02 allows
    # for the pivot's back being rendered alone and the target in a batch with the +-30 degree views
    moved = target - rec.pivot_back.clamp(-1, 1)
    for ch in range(3):
        lo, hi = sorted((0.0, float(shift[ch])))
        assert float(moved[0, ch].min()) >= lo - 0.02 and float(moved[0, ch].max()) <= hi + 0.02
        if abs(float(shift[ch])) > 0.05:
            assert float(moved[0, ch].abs().max()) > 0.5 * abs(float(shift[ch]))
    assert Image.open(out / "back.png").size == (3 * 128, 128)  # pivot | colour-shifted target | final


def test_quality_preset_averages_the_prior_over_its_stage1_members(tiny):
    """The prior targets are the mean of the members' renders (their first member is the pivot),
    the member count is recorded, and the front-only baseline does not pay for members."""
    from psohead.inversion.back.prior import prior_views

    G, image, label, _ = tiny
    preset = _preset(6, 1, stage1_members=3, back_colour_match=False)
    rec = reconstruct(image, None, label=label[0], network=G, preset=preset, back="prior", progress=False)
    assert rec.back["prior_members"] == 3
    assert rec.members.shape[0] == 3 and torch.equal(rec.members[:1], rec.ws)
    targets = [v for v in rec.views if v.source == "prior"]
    pivot_only = prior_views(G, rec.ws, label, preset.back)
    # exploration noise made the members differ, so the averaged back is not the pivot's own
    assert float((targets[0].image - pivot_only[0].image).abs().mean()) > 1e-4
    none = reconstruct(image, None, label=label[0], network=G, preset=preset, back="none", progress=False)
    assert "prior_members" not in none.back and all(v.source == "input" for v in none.views)
    assert none.members is None


def test_prior_shrink_blends_the_prior_towards_the_mean_latents_back(tiny):
    """prior_shrink = a: every prior target is (1 - a) x the unshrunk target + a x the mean latent's
    target at the same camera in the photo's hair colour; stage 1 and the front are untouched."""
    from psohead.api import load_generator
    from psohead.camera import back_label
    from psohead.inversion.back.prior import prior_colour, prior_views, render_prior
    from psohead.inversion.projector import latent_stats
    from psohead.io.images import mask_tensor

    _, image, label, _ = tiny  # the bundled model: the tiny one renders no opaque head to recolour
    mask = torch.zeros(128, 128)
    mask[16:120, 24:104] = 1
    cfg = _preset(3, 0, back_augment_degrees=45.0, back_mirror_average=True, back_colour_match=True)
    runs = [reconstruct(image, None, label=label[0], mask=mask.numpy(), network="default", back="prior",
                        progress=False, preset=cfg, **shrink)
            for shrink in ({}, {"back_shrink": "flat", "back_shrink_amount": 0.25})]
    plain, shrunk = runs
    assert torch.equal(plain.ws, shrunk.ws) and shrunk.back["prior_shrink"] == 0.25
    assert "prior_shrink" not in plain.back
    G = load_generator("default", device="cpu")
    ro = {"ray_start": cfg.rays.ray_start}  # what reconstruct renders with
    w_avg = latent_stats(G, cfg.stage1.w_avg_samples).w_avg.repeat(1, int(G.backbone.num_ws), 1)
    front = plain.views[0]
    back, back_mask = render_prior(G, w_avg, back_label(label), ro)
    colour = prior_colour(front, mask_tensor(plain.mask, 128), back, back_mask)  # the mask it used
    head = prior_views(G, w_avg, label, cfg.back, colour=colour, render_overrides=ro)
    before, after = ([v for v in r.views if v.source == "prior"] for r in runs)
    assert len(after) == len(head) == 3
    for b, a, h in zip(before, after, head):
        torch.testing.assert_close(a.image, 0.75 * b.image + 0.25 * h.image, atol=1e-4, rtol=0)
        assert float((a.image - b.image).abs().mean()) > 1e-3  # the mean head's back is not the latent's
    assert torch.equal(front.image, shrunk.views[0].image)


def test_prior_shrink_spread_blends_each_pixel_by_the_members_disagreement(tiny):
    """prior_shrink_spread = c: each prior target is (1 - w) x the members' mean + w x the mean
    latent's target, w = spread_weights of the members' own renders (rendered here one by one);
    stage 1 and the front are untouched, and the weight varies over the image."""
    from psohead.api import load_generator
    from psohead.camera import back_label
    from psohead.inversion.back.prior import prior_colour, prior_views, render_prior, spread_weights
    from psohead.inversion.projector import latent_stats
    from psohead.io.images import mask_tensor

    _, image, label, _ = tiny
    mask = torch.zeros(128, 128)
    mask[16:120, 24:104] = 1
    cfg = _preset(3, 0, back_augment_degrees=45.0, back_mirror_average=True, back_colour_match=True,
                  stage1_members=2)
    plain, spread = (reconstruct(image, None, label=label[0], mask=mask.numpy(), network="default", back="prior",
                                 progress=False, preset=cfg, **shrink)
                     for shrink in ({}, {"back_shrink": "spread", "back_shrink_amount": 4.0}))
    assert torch.equal(plain.members, spread.members) and spread.back["prior_shrink_spread"] == 4.0
    assert 0 < spread.back["prior_shrink_mean_weight"] < 1 and "prior_shrink" not in spread.back
    G = load_generator("default", device="cpu")
    ro = {"ray_start": cfg.rays.ray_start}
    w_avg = latent_stats(G, cfg.stage1.w_avg_samples).w_avg.repeat(1, int(G.backbone.num_ws), 1)
    back, back_mask = render_prior(G, w_avg, back_label(label), ro)
    colour = prior_colour(plain.views[0], mask_tensor(plain.mask, 128), back, back_mask)
    head = torch.cat([v.image for v in prior_views(G, w_avg, label, cfg.back, colour=colour,
                                                   render_overrides=ro)])
    each = torch.stack([torch.cat([v.image for v in prior_views(G, m[None], label, cfg.back, render_overrides=ro)])
                        for m in spread.members])
    before, after = (torch.cat([v.image for v in r.views if v.source == "prior"]) for r in (plain, spread))
    weight = spread_weights(each, before, head, 4.0)
    assert float(weight.std()) > 0.05  # per pixel, not one number
    torch.testing.assert_close(after, (1 - weight) * before + weight * head, atol=1e-4, rtol=0)
    assert torch.equal(plain.views[0].image, spread.views[0].image)


def test_one_reconstructor_serves_many_photos_and_never_changes_its_network(tiny, monkeypatch):
    """The network is loaded once; every photo gives what a fresh pipeline gives; the loaded
    generator (weights and rendering options) is the same after as before."""
    from inversion_tiny import rendered_target

    import psohead.api
    from psohead.inversion.pipeline import Reconstructor

    G, _, _, _ = tiny
    before = {k: v.clone() for k, v in G.state_dict().items()}
    kwargs, res = dict(G.rendering_kwargs), G.neural_rendering_resolution
    loads = []
    real_load = psohead.api.load_generator
    monkeypatch.setattr(psohead.api, "load_generator", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    R = Reconstructor(G, device="cpu", preset=_preset(3, 2))
    assert R.G is G and not loads
    photos = [rendered_target(G, seed=s)[:2] for s in (7, 8)]
    recs = [R(img, label=lab[0], back="prior", progress=False) for img, lab in photos]
    assert G.rendering_kwargs == kwargs and G.neural_rendering_resolution == res
    assert all(torch.equal(before[k], v) for k, v in G.state_dict().items())
    assert recs[0].G is not G and recs[0].G.rendering_kwargs["ray_start"] == 2.35 == recs[0].render_overrides["ray_start"]
    fresh = reconstruct(photos[1][0], None, label=photos[1][1][0], network=G, preset=_preset(3, 2), back="prior",
                        progress=False)
    assert torch.equal(fresh.ws, recs[1].ws)  # nothing of photo 1 leaks into photo 2
    assert torch.allclose(fresh.render(fresh.render_label), recs[1].render(recs[1].render_label), atol=1e-6)
    # per-photo overrides change that photo only
    short = R(photos[0][0], label=photos[0][1][0], back="none", progress=False, stage1_steps=1)
    assert len(short.history["stage1"]["loss"]) == 1 and R.preset.stage1.steps == 3


def test_progress_events_name_every_stage_and_a_raising_callback_cancels(tiny, tmp_path):
    from psohead.inversion.pipeline import Reconstructor
    from psohead.progress import Progress

    G, image, label, _ = tiny
    R = Reconstructor(G, device="cpu", preset=_preset(3, 2))
    events: list[Progress] = []
    R(image, tmp_path / "out", label=label[0], back="prior", progress=events.append)
    stages = list(dict.fromkeys(e.stage for e in events))
    assert stages == ["preprocess", "stage1", "pseudo_back", "stage2", "views", "video", "mesh", "save", "report"]
    mesh = [e for e in events if e.stage == "mesh"]
    assert mesh[-1].step == mesh[-1].total > 1  # the bake's render batches
    s1 = [e for e in events if e.stage == "stage1"]
    assert [e.step for e in s1] == [0, 1, 2, 3] and {e.total for e in s1} == {3}
    assert any("loss" in e.message for e in s1[1:])

    class Cancelled(Exception):
        pass

    def cancel_in_stage2(event):
        if event.stage == "stage2" and event.step == 1:
            raise Cancelled

    with pytest.raises(Cancelled):
        R(image, tmp_path / "cancelled", label=label[0], back="prior", progress=cancel_in_stage2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing of the cancelled run


def test_progress_previews_show_each_stage_throttled_and_end_on_the_saved_front(tiny, tmp_path):
    """A callable sees the head being fitted: the step's own front render, uint8 at the image
    size, at the first step of each stage and then as often as ``runtime.preview_seconds`` allows;
    the last preview is the front the run saves, and the fit visibly approaches it."""
    import numpy as np

    from psohead.inversion.pipeline import Reconstructor
    from psohead.progress import Progress

    G, image, label, _ = tiny
    R = Reconstructor(G, device="cpu", preset=_preset(3, 3, outputs_mesh=False))
    size = (G.img_resolution, G.img_resolution, 3)
    events: list[Progress] = []
    R(image, tmp_path / "out", label=label[0], back="prior", progress=events.append, runtime_preview_seconds=0)
    shown = [e for e in events if e.preview is not None]
    assert all(e.preview.shape == size and e.preview.dtype == np.uint8 for e in shown)
    # every step's render (taken during the step, reported after it), then the final front
    assert [(e.stage, e.step) for e in shown] == [("stage1", 1), ("stage1", 2), ("stage1", 3),
                                                  ("stage2", 1), ("stage2", 2), ("stage2", 3), ("views", 0)]
    front = np.asarray(Image.open(tmp_path / "out" / "front.png").convert("RGB")).astype(int)
    saved = front[:, front.shape[1] - size[1]:]  # input crop | render
    assert np.abs(shown[-1].preview - saved).max() <= 1
    # the steps show the fit closing in on that head: the last step far nearer to it than the first
    error = [np.abs(e.preview - saved).mean() for e in shown[:-1]]
    assert error[-1] < 0.25 * error[0] and error[-1] > 0  # (a step's render precedes its update)

    events.clear()
    R(image, None, label=label[0], back="prior", progress=events.append, runtime_preview_seconds=1e6)
    assert [(e.stage, e.step) for e in events if e.preview is not None] == [("stage1", 1), ("stage2", 1)]


def test_only_a_callable_is_offered_previews_and_they_are_throttled(monkeypatch):
    import numpy as np

    from psohead import progress as progress_module
    from psohead.progress import track

    assert not track(range(2), "stage1", True, preview_seconds=0).wants_preview()  # a bar
    assert not track(range(2), "stage1", False, preview_seconds=0).wants_preview()
    assert not track(range(2), "stage1", print, preview_seconds=None).wants_preview()
    clock = [100.0]
    monkeypatch.setattr(progress_module, "perf_counter", lambda: clock[0])
    got = []
    bar = track(range(5), "stage1", got.append, preview_seconds=2.0)
    picture = np.zeros((4, 4, 3), np.uint8)
    for step in bar:  # a step every 0.75 s: previews at 0, 2.25 and 4.5 s -> steps 0, 3
        if bar.wants_preview():
            bar.show(picture + step)
        clock[0] += 0.75
    assert [(e.step, int(e.preview[0, 0, 0])) for e in got if e.preview is not None] == [(1, 0), (4, 3)]
    assert len(got) == 6 and got[-1].preview is None


@pytest.mark.parametrize("frames, rendered", [(8, []), (12, [45, 135, 225, 315])])
def test_still_views_come_from_the_turntable_where_it_passes_their_yaw(tiny, tmp_path, monkeypatch, frames,
                                                                       rendered):
    """views.png holds the head at yaw 0, 45, ... 315: the turntable frames at those yaws are used
    (8 frames: all of them; 12: 0/90/180/270) and only the others are rendered again. Every
    tile equals a fresh render at its yaw."""
    import math

    from psohead.export import views as views_module
    from psohead.inversion.outputs import VIEW_YAWS_DEG

    G, image, label, _ = tiny
    asked, grids = [], []
    render_views, save_grid = views_module.render_views, views_module.save_grid

    def keeping(images, *args, **kwargs):
        grids.append(images)
        return save_grid(images, *args, **kwargs)

    def counting(G, ws, yaws, **kwargs):
        asked.extend(round(math.degrees(y)) for y in yaws)
        return render_views(G, ws, yaws, **kwargs)

    monkeypatch.setattr(views_module, "render_views", counting)
    monkeypatch.setattr(views_module, "save_grid", keeping)
    rec = reconstruct(image, tmp_path / "out", label=label[0], network=G, back="none", progress=False,
                      preset=_preset(1, 0, outputs_video_frames=frames, outputs_mesh=False))
    assert asked == rendered
    fresh = render_views(rec.G, rec.ws, [math.radians(a) for a in VIEW_YAWS_DEG], delta=rec.delta,
                         batch_size=1, deterministic=True)
    (grid,) = grids
    assert grid.shape == fresh.shape and np.abs(grid.astype(int) - fresh.astype(int)).max() <= 1
