"""Fast unit tests of the inversion building blocks (no optimisation loops)."""
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from psohead.errors import InputError, LabelError
from psohead.inversion import losses
from psohead.inversion.inputs import parse_extra_view, prepare_input
from psohead.inversion.back.colour import mask_box
from psohead.inversion.back.photo import place_by_mask
from psohead.inversion.back.plan import plan_back
from psohead.inversion.presets import BackPrior, resolve_preset
from psohead.inversion.projector import ProjectorConfig, latent_stats, learning_rate
from psohead.camera import back_label, label_from_yaw_pitch, yaw_pitch_from_label


def test_learning_rate_schedule_matches_official_formula():
    cfg = ProjectorConfig(num_steps=100)
    assert learning_rate(0, cfg) == 0.0  # official quirk: lr 0 at step 0
    assert learning_rate(2, cfg) == pytest.approx(0.1 * 2 / 5)  # ramp-up over the first 5 %
    assert learning_rate(50, cfg) == pytest.approx(0.1)
    assert learning_rate(87.5, cfg) == pytest.approx(0.05)  # half-way down the cosine ramp


def test_masked_mse_counts_only_foreground():
    x, y = torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    y[..., :2] = 2.0  # left half differs by 2
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1
    assert float(losses.masked_mse(x, y)[0]) == pytest.approx(2.0)
    assert float(losses.masked_mse(x, y, mask)[0]) == pytest.approx(4.0)
    assert float(losses.masked_mse(x, y, 1 - mask)[0]) == pytest.approx(0.0)


def _fake_vgg_state(path, fmt):
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in losses.VGG16Features().features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)
    if fmt == "pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file
        save_file(state, str(path))


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_lpips_from_user_weights(tmp_path, fmt):
    vgg_path = tmp_path / f"vgg16.{fmt}"
    _fake_vgg_state(vgg_path, fmt)
    lin_path = tmp_path / "vgg.pth"
    torch.save({f"lin{i}.model.1.weight": torch.full((1, c, 1, 1), 0.5) for i, c in
                enumerate((64, 128, 256, 512, 512))}, lin_path)
    loss = losses.build_perceptual("auto", vgg16=vgg_path, lpips_linear=lin_path)
    assert loss.name == "lpips-vgg16"
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.allclose(loss(x, x), torch.zeros(2), atol=1e-6)
    y = x.flip(-1)
    d = loss(x, y)
    assert (d > 0).all()
    base = losses.LPIPSVGG16(losses.load_vgg16(vgg_path))  # unit weights: twice the 0.5-weighted distance
    assert torch.allclose(base(x, y), 2 * d, rtol=1e-4)


def test_bad_perceptual_inputs(tmp_path):
    bad = tmp_path / "vgg.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, bad)
    with pytest.raises(InputError, match="not a torchvision vgg16"):
        losses.load_vgg16(bad)
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="cannot read"):
        losses.load_vgg16(tmp_path / "junk.pth")
    with pytest.raises(InputError, match="needs VGG16 weights"):
        losses.build_perceptual("lpips")
    with pytest.raises(InputError, match="unknown perceptual"):
        losses.build_perceptual("vgg19")


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_msssim_zero_for_identical_and_positive_otherwise(size):
    loss = losses.MSSSIM()
    torch.manual_seed(1)
    x = torch.rand(2, 3, size, size) * 2 - 1
    assert torch.allclose(loss(x, x), torch.zeros(2), atol=1e-5)
    assert (loss(x, -x) > 0.1).all()


def test_place_by_mask_matches_reference_width_and_top():
    img = torch.zeros(1, 3, 40, 40)
    mask = torch.zeros(1, 1, 40, 40)
    mask[..., 10:20, 5:15] = 1  # width 10, top 10
    ref = torch.zeros(1, 1, 64, 64)
    ref[..., 8:40, 12:32] = 1  # width 20, top 8, centre x 22
    _, placed = place_by_mask(img, mask, ref)
    top, bottom, left, right = mask_box(placed[0, 0])
    assert top == pytest.approx(8, abs=1) and bottom == pytest.approx(28, abs=1)
    assert left == pytest.approx(12, abs=1) and right == pytest.approx(32, abs=1)


def test_back_camera_is_front_turned_by_pi():
    front = label_from_yaw_pitch(0.3, 0.1)
    yaw, pitch, radius = yaw_pitch_from_label(back_label(front))
    assert float(yaw) == pytest.approx(0.3 - math.pi, abs=1e-5)
    assert float(pitch) == pytest.approx(0.1, abs=1e-5)
    assert float(radius) == pytest.approx(2.7, abs=1e-4)


@pytest.mark.parametrize("weight", [0.3, 0.6])
def test_prior_views_share_the_prior_weight_and_average_it_when_alternating(weight):
    from inversion_tiny import rendered_target, tiny_generator
    from psohead.inversion.back.prior import prior_views
    from psohead.inversion.targets import step_views

    G = tiny_generator()
    _, label, ws = rendered_target(G)
    views = prior_views(G, ws, label, BackPrior(augment_degrees=30.0, augment_alternate=True, weight=weight))
    assert [v.name for v in views] == ["back", "back+30", "back-30"]
    assert sum(v.weight for v in views) == pytest.approx(weight)
    yaws = [float(yaw_pitch_from_label(v.label)[0]) for v in views]
    turn = (yaws[1] - yaws[0] + math.pi) % (2 * math.pi) - math.pi
    assert turn == pytest.approx(math.radians(30), abs=1e-4)
    per_step = [sum(v.weight for v in step_views(views, step)[1]) for step in range(4)]
    assert per_step == pytest.approx([weight] * 4)  # one of the +-30 views per step, at twice its weight


def test_plan_back(tmp_path):
    assert plan_back("none").kind == "none"
    assert plan_back("auto").kind == "prior"
    assert plan_back("auto", has_bank=True).kind == "prior"  # measured the better default
    assert plan_back("fk", has_bank=True).kind == "fk"
    with pytest.raises(InputError, match="--fk-bank"):
        plan_back("fk")
    with pytest.raises(InputError, match="not found"):
        plan_back(tmp_path / "nope.png")
    photo = tmp_path / "back.png"
    Image.new("RGB", (8, 8)).save(photo)
    plan = plan_back(str(photo))
    assert plan.kind == "photo" and plan.photo == photo


def test_inputs_errors_and_dataset_json(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        prepare_input(tmp_path / "missing.png", label=label_from_yaw_pitch(0)[0])
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(InputError, match="not a readable image"):
        prepare_input(tmp_path / "text.png", label=label_from_yaw_pitch(0)[0])
    crop = tmp_path / "crop.png"
    Image.new("RGB", (16, 16), (10, 20, 30)).save(crop)
    with pytest.raises(LabelError):
        prepare_input(crop, label=[1.0] * 24)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LabelError, match="not readable JSON"):
        prepare_input(crop, label=bad)
    lab = label_from_yaw_pitch(0.5)[0]
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": [["crop.png", lab.tolist()]]}))
    got = prepare_input(crop)
    assert got.label_source == "dataset.json" and torch.allclose(got.label[0], lab, atol=1e-6)
    assert np.asarray(got.image)[0, 0].tolist() == [10, 20, 30]
    path, yaw = parse_extra_view(f"{crop}:90")
    assert path == crop and yaw == pytest.approx(math.pi / 2)
    with pytest.raises(InputError, match="not found"):
        parse_extra_view(str(tmp_path / "nope.png:30"))


def test_presets():
    assert resolve_preset("auto").name == "fast"
    official = resolve_preset("official")
    assert (official.stage1.steps, official.stage2.steps, official.stage2.learning_rate) == (500, 500, 3e-4)
    assert resolve_preset("fast", stage2_steps=7).stage2.steps == 7
    assert resolve_preset("fast", {"stage2.steps": "7"}) == resolve_preset("fast", stage2_steps=7)
    with pytest.raises(InputError):
        resolve_preset("slow")


def test_latent_stats_official_wstd_is_sqrt2_larger():
    from inversion_tiny import tiny_generator

    G = tiny_generator()
    ours = latent_stats(G, num_samples=64)
    official = latent_stats(G, num_samples=64, official_w_std=True)
    assert torch.equal(ours.w_avg, official.w_avg)
    assert official.w_std == pytest.approx(math.sqrt(2) * ours.w_std, rel=1e-5)
    assert ours.w_avg.shape == (1, 1, G.w_dim)


@pytest.mark.parametrize("size", [40, 64, 128, 256, 512])
def test_msssim_loss_matches_pytorch_msssim_at_the_window_it_picks(size):
    reference = pytest.importorskip("pytorch_msssim")
    g = torch.Generator().manual_seed(size)
    x = torch.rand(2, 3, size, size, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    x01, y01 = (losses.area_downsample(t).add(1).div(2) for t in (x, y))
    side = min(x01.shape[-2:])
    win = {40: 3, 64: 3, 128: 7, 256: 11, 512: 11}[size]  # largest odd window with side > 16 * (win - 1)
    if side <= 16 * (win - 1):
        expect = 1 - reference.ssim(x01, y01, data_range=1.0, size_average=False, win_size=win)
    else:
        expect = 1 - reference.ms_ssim(x01, y01, data_range=1.0, size_average=False, win_size=win)
    assert torch.allclose(losses.MSSSIM()(x, y), expect, atol=2e-6)


def test_prior_colour_gives_the_prior_head_the_photos_hair_colour():
    from inversion_tiny import rendered_target, tiny_generator
    from psohead.inversion.back.prior import prior_colour, prior_views, render_prior
    from psohead.inversion.targets import TargetView

    size = (128, 128)
    mask = torch.zeros(1, 1, *size)
    mask[..., 20:100, 30:98] = 1
    hair = torch.tensor([0.05, -0.1, 0.12])  # the photo's head: this colour in its top quarter, noise below
    photo = torch.rand(1, 3, *size) * 2 - 1
    photo[..., 20:40, 30:98] = hair.reshape(1, 3, 1, 1)
    back = torch.rand(1, 3, *size) * 1.6 - 0.8  # a back render: head in rows 10-65 (the top half), shoulders below
    back[..., 66:, :] = 0.9
    back_mask = torch.zeros(1, 1, *size)
    back_mask[..., 10:120, 40:90] = 1
    front = TargetView("front", photo, torch.zeros(1, 25))
    colour = prior_colour(front, mask, back, back_mask)
    shift = colour.shift
    shifted_head = (back + shift.reshape(1, 3, 1, 1))[0, :, 10:66, 40:90].flatten(1)
    assert torch.allclose(shifted_head.median(1).values, hair, atol=1e-6)
    assert torch.equal(prior_colour(front, mask, back, torch.zeros_like(back_mask)).shift, torch.zeros(3))

    G = tiny_generator()  # prior_views adds the shift weighted by each render's own mask
    _, label, ws = rendered_target(G)
    plain, moved = prior_views(G, ws, label)[0].image, prior_views(G, ws, label, colour=colour)[0].image
    _, render_mask = render_prior(G, ws, prior_views(G, ws, label)[0].label)
    assert torch.allclose(moved, (plain + shift.reshape(1, 3, 1, 1) * render_mask).clamp(-1, 1), atol=1e-6)
    assert not torch.allclose(moved, plain)


def test_prior_colour_spread_evens_out_a_blotchy_head_to_the_photos_even_hair():
    """A prior head in blotches of two colours, a photo with evenly dark hair: with ``spread`` the
    recoloured head's median is the photo's hair colour and its spread along every opponent axis is
    at most the photo's (here: nearly none); without, the blotches stay as far apart as before.
    Where the photo's hair varies more than the render, nothing is scaled up."""
    from psohead.inversion.back.colour import colour_spread
    from psohead.inversion.back.prior import prior_colour
    from psohead.inversion.targets import TargetView

    size = (64, 64)
    mask = torch.zeros(1, 1, *size)
    mask[..., 8:60, 12:52] = 1
    hair = torch.tensor([-0.8, -0.82, -0.85])
    photo = torch.zeros(1, 3, *size)
    photo[..., 8:22, 12:52] = hair.reshape(1, 3, 1, 1) + 0.01 * torch.randn(1, 3, 14, 40)
    back = torch.zeros(1, 3, *size)
    back_mask = torch.zeros(1, 1, *size)
    back_mask[..., 4:60, 10:54] = 1
    orange, blue = torch.tensor([0.4, -0.1, -0.6]), torch.tensor([-0.6, -0.3, 0.2])
    checker = ((torch.arange(64)[:, None] // 4 + torch.arange(64)[None] // 4) % 2).bool()
    back[0] = torch.where(checker, orange.reshape(3, 1, 1), blue.reshape(3, 1, 1))
    front = TargetView("front", photo, torch.zeros(1, 25))
    head = (slice(None), slice(None), slice(4, 32), slice(10, 54))  # the top half, where it is measured
    for spread in (False, True):
        colour = prior_colour(front, mask, back, back_mask, spread=spread)
        moved = colour.apply(back, back_mask)[head][0].flatten(1)
        if spread:
            assert torch.allclose(moved.median(1).values, hair, atol=0.02)
            assert (colour_spread(moved) <= colour_spread(photo[..., 8:22, 12:52][0].flatten(1)) + 0.01).all()
        else:
            assert (moved.max(1).values - moved.min(1).values).max() > 0.9  # the blotches kept
    noisy_photo = TargetView("front", torch.rand(1, 3, *size) * 2 - 1, torch.zeros(1, 25))
    even_back = torch.full((1, 3, *size), 0.2)
    assert torch.equal(prior_colour(noisy_photo, mask, even_back, back_mask, spread=True).scale, torch.ones(3))


def test_mirrored_camera_is_the_negated_yaw_and_its_own_inverse():
    from psohead.camera import mirrored_label

    cam = label_from_yaw_pitch(torch.tensor([0.4, 2.9]), torch.tensor([0.15, -0.2]))
    mirrored = mirrored_label(cam)
    assert torch.allclose(mirrored, label_from_yaw_pitch(torch.tensor([-0.4, -2.9]), torch.tensor([0.15, -0.2])),
                          atol=1e-5)
    assert torch.allclose(mirrored_label(mirrored), cam, atol=1e-6)
    assert torch.linalg.det(mirrored[:, :16].reshape(-1, 4, 4)[:, :3, :3]) == pytest.approx(1.0, abs=1e-5)


def test_mirror_averaged_prior_is_left_right_symmetric():
    """A frontal photo's back camera is its own mirror, and the +-30 views are each other's: the
    averaged targets must show that symmetry exactly, whatever the (asymmetric) latent renders."""
    from inversion_tiny import tiny_generator
    from psohead.inversion.back.prior import prior_views

    G = tiny_generator()
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(3)), torch.zeros(1, 25))
    front = label_from_yaw_pitch(0.0, 0.1)
    plain = prior_views(G, ws, front, BackPrior(augment_degrees=30.0))
    views = prior_views(G, ws, front, BackPrior(augment_degrees=30.0, mirror_average=True))

    def gap(a, b):  # mean, not max: a few pixels move with 1e-7 changes of the camera (sample placement)
        return float((a - b).abs().mean())

    assert gap(plain[0].image, plain[0].image.flip(-1)) > 0.01
    assert gap(plain[1].image, plain[2].image.flip(-1)) > 0.01
    assert gap(views[0].image, views[0].image.flip(-1)) < 2e-4
    assert gap(views[1].image, views[2].image.flip(-1)) < 2e-4
    assert gap(views[0].image, 0.5 * (plain[0].image + plain[0].image.flip(-1))) < 2e-4


def test_projector_members_without_noise_each_follow_the_single_run():
    """Members differ only by their exploration noise: with none, every one must take the steps a
    projection alone takes (losses add, the w regulariser counts per member, Adam is element-wise)."""
    from inversion_tiny import rendered_target, tiny_generator
    from psohead.inversion.projector import project
    from psohead.inversion.targets import TargetView

    G = tiny_generator()
    image, label, _ = rendered_target(G, seed=4)
    stats = latent_stats(G, num_samples=256)
    views = [TargetView("front", image, label)]
    loss = losses.build_perceptual("msssim")
    # A strong regulariser, so a member weighted 1/K (a mean over the batch) would stand out.
    cfg = ProjectorConfig(num_steps=6, deterministic=True, initial_noise_factor=0.0, regularize_w_weight=300.0)
    alone = project(G, views, loss, stats, cfg, progress=False)
    batch = project(G, views, loss, stats, cfg, progress=False, members=3)
    assert alone.members is None and batch.members.shape == (3, *alone.ws.shape[1:])
    assert torch.equal(batch.ws, batch.members[:1])
    # Mean, not max: Adam turns float-rounding gradients of near-flat entries into lr-sized steps.
    assert float((batch.members - alone.ws).abs().mean()) < 2e-3
    assert float((alone.ws - stats.w_avg).abs().mean()) > 0.05  # it did move
    assert batch.history["loss"][-1] == pytest.approx(alone.history["loss"][-1], rel=3e-3)  # per member
    noisy = project(G, views, loss, stats, ProjectorConfig(num_steps=6, deterministic=True), progress=False,
                    members=2)
    assert float((noisy.members[0] - noisy.members[1]).abs().max()) > 1e-3


def test_prior_of_an_ensemble_is_the_mean_of_its_members_priors():
    from inversion_tiny import tiny_generator
    from psohead.inversion.back.prior import prior_views

    G = tiny_generator()
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(5))
    ws = G.mapping(z, torch.zeros(2, 25))
    front = label_from_yaw_pitch(0.2, 0.0)
    cfg = BackPrior(augment_degrees=45.0, mirror_average=True)
    each = [prior_views(G, ws[i:i + 1], front, cfg) for i in range(2)]
    both = prior_views(G, ws, front, cfg)
    assert float((each[0][0].image - each[1][0].image).abs().mean()) > 0.01
    for k, view in enumerate(both):
        assert torch.allclose(view.image, 0.5 * (each[0][k].image + each[1][k].image), atol=1e-5)
        assert view.weight == each[0][k].weight


def test_quality_preset_is_fast_with_an_ensemble_prior_shrunk_by_its_spread():
    fast, quality = resolve_preset("fast"), resolve_preset("quality")
    assert fast.stage1.members == 1 and quality.stage1.members == 4
    assert (fast.back.shrink, quality.back.shrink) == ("flat", "spread") and quality.back.shrink_amount > 0
    assert quality.override(stage1_members=1, back_shrink="flat", back_shrink_amount=fast.back.shrink_amount) \
        == dataclasses.replace(fast, name="quality")
    with pytest.raises(InputError, match="stage1.members"):
        resolve_preset("fast", stage1_members=0)
    for bad in (-0.1, 0.0, 1.0):
        with pytest.raises(InputError, match="back.shrink_amount"):
            resolve_preset("fast", back_shrink_amount=bad)
    with pytest.raises(InputError, match="back.shrink_amount must be > 0"):
        resolve_preset("quality", back_shrink_amount=-1.0)
    with pytest.raises(InputError, match="back.shrink must be one of"):  # one field says which blend
        resolve_preset("quality", back_shrink="both")
    with pytest.raises(InputError, match="stage1.members >= 2"):  # one member has no spread
        resolve_preset("quality", stage1_members=1)


def test_spread_weights_are_the_empirical_bayes_shrinkage_of_the_members_mean():
    """Constant images: two members at m +- s have variance s^2, so the weight is
    c s^2 / (c s^2 + (p - t)^2); members that agree keep the prior (weight 0)."""
    from psohead.inversion.back.prior import spread_weights

    size, s, gap, c = 64, 0.2, 0.3, 4.0
    members = torch.stack([torch.full((2, 3, size, size), 0.1 + s), torch.full((2, 3, size, size), 0.1 - s)])
    prior, towards = torch.full((2, 3, size, size), 0.1), torch.full((2, 3, size, size), 0.1 - gap)
    weights = spread_weights(members, prior, towards, c)
    assert weights.shape == (2, 1, size, size)
    expected = c * s ** 2 / (c * s ** 2 + gap ** 2)  # 0.64
    torch.testing.assert_close(weights, torch.full_like(weights, expected), atol=1e-4, rtol=0)
    agree = spread_weights(members[:1].expand(2, -1, -1, -1, -1), prior, towards, c)
    assert float(agree.abs().max()) < 1e-6


def test_spread_weights_shrink_where_the_members_disagree_over_a_window_scaled_to_the_width():
    from psohead.inversion.back.prior import spread_weights

    for width, half in ((256, 3), (512, 7)):  # windows of 7 and 15 pixels, ~2.75 % of the width
        members = torch.zeros(2, 1, 3, width, width)
        members[0, 0, :, width // 2, width // 2] = 1.0  # one pixel where the two disagree
        prior = torch.zeros(1, 3, width, width)
        weights = spread_weights(members, prior, prior - 0.5, 1.0)[0, 0]
        row = weights[width // 2]
        centre = width // 2
        assert float(row[centre]) > 0 and float(row[centre + half]) > 0 and float(row[centre - half]) > 0
        assert float(row[centre + half + 1]) == 0 and float(row[centre - half - 1]) == 0
        assert float(weights[centre + half + 1].abs().max()) == 0


def test_shrink_views_takes_one_weight_map_per_view():
    from psohead.inversion.back.prior import shrink_views
    from psohead.inversion.targets import TargetView

    lab = label_from_yaw_pitch(0.0)
    views = [TargetView(f"v{i}", torch.full((1, 3, 4, 4), float(i)), lab) for i in range(2)]
    towards = [TargetView(f"v{i}", torch.full((1, 3, 4, 4), 10.0), lab) for i in range(2)]
    amount = torch.zeros(2, 1, 4, 4)
    amount[0, :, :, :2] = 0.5  # view 0: left half halfway; view 1: unchanged
    out = shrink_views(views, towards, amount)
    assert torch.equal(out[0].image[..., :2], torch.full((1, 3, 4, 2), 5.0))
    assert torch.equal(out[0].image[..., 2:], torch.zeros(1, 3, 4, 2))
    assert torch.equal(out[1].image, views[1].image)
    uniform = shrink_views(views, towards, 0.1)
    torch.testing.assert_close(uniform[1].image, torch.full((1, 3, 4, 4), 1.9))


def test_projector_members_rendered_together_or_one_by_one_agree():
    """The CPU renders members one at a time, CUDA all at once: same noise, same steps."""
    from inversion_tiny import rendered_target, tiny_generator
    from psohead.inversion.projector import project
    from psohead.inversion.targets import TargetView

    G = tiny_generator()
    image, label, _ = rendered_target(G, seed=6)
    stats = latent_stats(G, num_samples=256)
    views = [TargetView("front", image, label), TargetView("side", image.flip(-1), label_from_yaw_pitch(0.5), 0.3)]
    loss = losses.build_perceptual("msssim")
    cfg = ProjectorConfig(num_steps=5, deterministic=True, regularize_w_weight=300.0)
    apart = project(G, views, loss, stats, cfg, progress=False, members=3, members_per_call=1)
    together = project(G, views, loss, stats, cfg, progress=False, members=3, members_per_call=3)
    assert float((apart.members - together.members).abs().mean()) < 2e-3
    assert float((apart.members[0] - apart.members[2]).abs().mean()) > 1e-2  # the noise separated them
    assert apart.history["mse_side"][-1] == pytest.approx(together.history["mse_side"][-1], rel=1e-2)


def test_projector_from_a_given_latent_previews_that_latent_first():
    """Started from a code (the encoder's guess), stage 1's first event shows that code's front
    as it renders without exploration noise; the steps' own previews follow."""
    from inversion_tiny import rendered_target, tiny_generator
    from psohead.io.images import to_uint8
    from psohead.inversion.projector import project
    from psohead.inversion.targets import TargetView

    G = tiny_generator()
    image, label, ws = rendered_target(G, seed=4)
    _, _, start = rendered_target(G, seed=5)
    stats = latent_stats(G, num_samples=256)
    events = []
    project(G, [TargetView("front", image, label)], losses.build_perceptual("msssim"), stats,
            ProjectorConfig(num_steps=2, deterministic=True, preview_seconds=0), progress=events.append,
            init_ws=start)
    shown = [(e.step, e.preview) for e in events if e.preview is not None]
    assert [step for step, _ in shown] == [0, 1, 2]
    truth = to_uint8(rendered_target(G, seed=5)[0])[0].astype(int)  # the start, rendered on its own
    assert np.abs(shown[0][1] - truth).max() <= 1
    assert np.abs(shown[1][1] - truth).mean() > 1  # step 0 renders it with exploration noise


def test_latent_adam_takes_torch_adams_steps():
    """The projector's written-out Adam against torch.optim.Adam: the same latent after 30 steps
    of changing gradients and learning rates (the official schedule's ramp)."""
    from psohead.inversion.projector import LatentAdam

    gen = torch.Generator().manual_seed(0)
    start = torch.randn(2, 14, 512, generator=gen)
    ours, theirs = start.clone().requires_grad_(True), start.clone().requires_grad_(True)
    adam, reference = LatentAdam(ours), torch.optim.Adam([theirs], lr=0.1, betas=(0.9, 0.999))
    for step in range(30):
        grad = torch.randn(start.shape, generator=gen) * (1 + step % 3)
        lr = 0.1 * min(1.0, (step + 1) / 5) * (1 - step / 40)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        adam.step(lr)
        for group in reference.param_groups:
            group["lr"] = lr
        reference.step()
    assert not torch.equal(ours, start)
    assert torch.equal(ours, theirs)
