"""reconstruct(): end-to-end on a tiny random generator (~35 s on 2 idle cores) and CLI errors."""
import json
from dataclasses import replace

import pytest
import torch
from PIL import Image

from psohead.cli import main
from psohead.inversion.presets import Preset


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


def _preset(s1, s2, **kw):
    return Preset("test", s1, s2, deterministic=True, w_avg_samples=500, video_frames=8, video_fps=8,
                  mesh_resolution=32, render_batch=4, **kw)


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
    from psohead.inversion.reconstruct import reconstruct

    G, image, label, _ = tiny
    out = tmp_path / "out"
    rec = reconstruct(image, out, label=label[0], network=G, preset=_preset(2, 2), back="prior", progress=False)
    names = {p.name for p in out.iterdir()}
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
    from psohead.inversion.reconstruct import reconstruct

    G, image, label, _ = tiny
    with torch.no_grad():
        w_avg = latent_stats(G, 500).w_avg.repeat(1, G.num_ws, 1)
        start = G.synthesis(w_avg, label, noise_mode="const", deterministic=True)["image"]
    runs = {back: reconstruct(image, None, label=label[0], network=G, preset=_preset(20, 15, stage2_lr=3e-3),
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
                 "--stage1-steps", "1", "--stage2-steps", "1", "--video-frames", "4", "--mesh-resolution", "32",
                 "--back", "none", "--no-cuda-graphs", "--quiet"]) == 0
    summary = json.loads((out / "reconstruction.json").read_text())
    assert summary["settings"]["preset"]["cuda_graphs"] is False
    assert summary["settings"]["label_source"] == "dataset.json"
    assert summary["settings"]["preset"]["video_frames"] == 4 and summary["back"]["used"] == "none"
    assert [v["name"] for v in summary["views"]] == ["front"]
    assert {"views.png", "turntable.mp4", "generator.safetensors", "report.html"} <= set(summary["files"])


def test_fk_back_supervises_both_stages_and_adds_the_prior_in_stage_2(tiny, tmp_path):
    """--back fk: the bank image is a target from stage 1 on; stage 2 also gets the prior views."""
    import math

    import numpy as np

    from psohead.camera import label_from_yaw_pitch
    from psohead.inversion.reconstruct import reconstruct
    from psohead.training.dataset_writer import DatasetWriter

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
    from psohead.inversion.reconstruct import reconstruct

    _, image, label, _ = tiny  # the bundled model below: the tiny one renders no opaque head to recolour
    mask = torch.zeros(128, 128)
    mask[16:120, 24:104] = 1
    photo = image.clone()
    photo[..., 16:42, 24:104] = torch.tensor([0.6, 0.2, -0.3]).reshape(1, 3, 1, 1)  # the hair band
    out = tmp_path / "out"
    rec = reconstruct(photo, out, label=label[0], mask=mask.numpy(), network="default", back="prior",
                      progress=False, preset=_preset(2, 1, prior_colour_match=True))
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
    from psohead.inversion.pseudo_back import prior_views
    from psohead.inversion.reconstruct import reconstruct

    G, image, label, _ = tiny
    preset = _preset(6, 1, prior_ensemble=3, prior_colour_match=False)
    rec = reconstruct(image, None, label=label[0], network=G, preset=preset, back="prior", progress=False)
    assert rec.back["prior_members"] == 3
    assert rec.members.shape[0] == 3 and torch.equal(rec.members[:1], rec.ws)
    targets = [v for v in rec.views if v.source == "prior"]
    pivot_only = prior_views(G, rec.ws, label, preset.back_augment_degrees, preset.back_augment_alternate,
                             mirror_average=preset.prior_mirror_average)
    # exploration noise made the members differ, so the averaged back is not the pivot's own
    assert float((targets[0].image - pivot_only[0].image).abs().mean()) > 1e-4
    none = reconstruct(image, None, label=label[0], network=G, preset=preset, back="none", progress=False)
    assert "prior_members" not in none.back and all(v.source == "input" for v in none.views)
    assert none.members is None


def test_prior_shrink_blends_the_prior_towards_the_mean_latents_back(tiny):
    """prior_shrink = a: every prior target is (1 - a) x the unshrunk target + a x the mean latent's
    target at the same camera in the photo's hair colour; stage 1 and the front are untouched."""
    from psohead.api import load_generator
    from psohead.inversion.imageio import mask_tensor
    from psohead.inversion.projector import latent_stats
    from psohead.inversion.pseudo_back import back_cameras, prior_colour_shift, prior_views, render_prior
    from psohead.inversion.reconstruct import reconstruct

    _, image, label, _ = tiny  # the bundled model: the tiny one renders no opaque head to recolour
    mask = torch.zeros(128, 128)
    mask[16:120, 24:104] = 1
    cfg = _preset(3, 0, back_augment_degrees=45.0, prior_mirror_average=True, prior_colour_match=True)
    runs = [reconstruct(image, None, label=label[0], mask=mask.numpy(), network="default", back="prior",
                        progress=False, preset=replace(cfg, prior_shrink=a)) for a in (0.0, 0.25)]
    plain, shrunk = runs
    assert torch.equal(plain.ws, shrunk.ws) and shrunk.back["prior_shrink"] == 0.25
    assert "prior_shrink" not in plain.back
    G = load_generator("default", device="cpu")
    G.rendering_kwargs = {**G.rendering_kwargs, "ray_start": cfg.ray_start}  # as reconstruct sets it
    w_avg = latent_stats(G, cfg.w_avg_samples).w_avg.repeat(1, int(G.backbone.num_ws), 1)
    front = plain.views[0]
    back, back_mask = render_prior(G, w_avg, back_cameras(label)[0][1])
    shift = prior_colour_shift(front, mask_tensor(plain.mask, 128), back, back_mask)  # the mask it used
    head = prior_views(G, w_avg, label, 45.0, colour_shift=shift, mirror_average=True)
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
    from psohead.inversion.imageio import mask_tensor
    from psohead.inversion.projector import latent_stats
    from psohead.inversion.pseudo_back import (back_cameras, prior_colour_shift, prior_views, render_prior,
                                              spread_weights)
    from psohead.inversion.reconstruct import reconstruct

    _, image, label, _ = tiny
    mask = torch.zeros(128, 128)
    mask[16:120, 24:104] = 1
    cfg = _preset(3, 0, back_augment_degrees=45.0, prior_mirror_average=True, prior_colour_match=True,
                  prior_ensemble=2)
    plain, spread = (reconstruct(image, None, label=label[0], mask=mask.numpy(), network="default", back="prior",
                                 progress=False, preset=replace(cfg, prior_shrink_spread=c)) for c in (0.0, 4.0))
    assert torch.equal(plain.members, spread.members) and spread.back["prior_shrink_spread"] == 4.0
    assert 0 < spread.back["prior_shrink_mean_weight"] < 1 and "prior_shrink" not in spread.back
    G = load_generator("default", device="cpu")
    G.rendering_kwargs = {**G.rendering_kwargs, "ray_start": cfg.ray_start}
    w_avg = latent_stats(G, cfg.w_avg_samples).w_avg.repeat(1, int(G.backbone.num_ws), 1)
    back, back_mask = render_prior(G, w_avg, back_cameras(label)[0][1])
    shift = prior_colour_shift(plain.views[0], mask_tensor(plain.mask, 128), back, back_mask)
    head = torch.cat([v.image for v in prior_views(G, w_avg, label, 45.0, colour_shift=shift, mirror_average=True)])
    each = torch.stack([torch.cat([v.image for v in prior_views(G, m[None], label, 45.0, mirror_average=True)])
                        for m in spread.members])
    before, after = (torch.cat([v.image for v in r.views if v.source == "prior"]) for r in (plain, spread))
    weight = spread_weights(each, before, head, 4.0)
    assert float(weight.std()) > 0.05  # per pixel, not one number
    torch.testing.assert_close(after, (1 - weight) * before + weight * head, atol=1e-4, rtol=0)
    assert torch.equal(plain.views[0].image, spread.views[0].image)
