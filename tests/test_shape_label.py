"""The geometric pseudo-label: an adult head fitted to face landmarks, its opacity bounds and the
loss on them (issue 28)."""
import math

import numpy as np
import pytest
import torch

from psohead.camera import HEAD_LOOKAT, label_from_yaw_pitch, yaw_rotated
from psohead.errors import InputError
from psohead.inversion.losses import opacity_loss
from psohead.inversion.presets import resolve_preset
from psohead.inversion.shape import (FittedHead, _grow, above_chin, fit_head, hair_margins, hair_room_cm, opacity_bounds,
                                     project, shape_views)
from psohead.inversion.targets import TargetView, views_loss
from psohead.synth import head as H
from psohead.synth.params import CM_WORLD, sample_head

CROP = 512


def _truth(seed: int) -> dict:
    """A SynthHeads-360 head with its hair taken off: its cranium is the truth."""
    record = sample_head(seed)
    record.update(cap_on=0.0, cap_thick=0.0, curtain_on=0.0, bun_on=0.0, tail_on=0.0, curl_amp=0.0)
    return record


def _landmarks_px(record: dict, label: torch.Tensor) -> np.ndarray:
    return project(H.face_landmarks(record), label.double()).numpy() * CROP


@pytest.mark.parametrize("seed,yaw", [(3, 0.0), (11, 0.25), (42, -0.3)])
def test_fit_to_landmarks_recovers_the_heads_size(seed, yaw):
    """Landmarks of a SynthHeads-360 head -> the fitted adult head's cranial breadth and length
    within 10 % of the head's own (adult heads vary ~4 % about the mean), and its side silhouette
    overlapping the true one above the chin."""
    truth = _truth(seed)
    label = label_from_yaw_pitch(yaw, 0.05, lookat=HEAD_LOOKAT)
    fitted = fit_head(_landmarks_px(truth, label), CROP, label)
    assert fitted.rms_px < 6  # the same face mesh, other proportions: a few pixels in 512
    for radius in ("cran_rx", "cran_rz"):
        got, want = fitted.record[radius] * fitted.record["scale"], truth[radius] * truth["scale"]
        assert abs(got / want - 1) < 0.10, (radius, got, want)

    side = yaw_rotated(label, math.pi / 2)
    res = 64
    true_head = FittedHead(truth, torch.zeros(3), None)
    want = true_head.silhouettes(side, res)[0, 0] > 0.5
    got = fitted.silhouettes(side, res)[0, 0] > 0.5
    above = above_chin(true_head, side, res)[0, 0] > 0  # the neck and shoulders are no fit's business
    want, got = want & above, got & above
    iou = (want & got).sum() / (want | got).sum()
    assert iou > 0.85, float(iou)


def test_fit_without_landmarks_is_the_synthheads_placement():
    fitted = fit_head(None, CROP, label_from_yaw_pitch(0.0, lookat=HEAD_LOOKAT))
    assert fitted.rms_px is None and fitted.record["scale"] == 1.0 and not fitted.offset.any()


def test_bounds_cover_the_silhouette_and_leave_below_the_chin_free():
    fitted = fit_head(None, CROP, label_from_yaw_pitch(0.0, lookat=HEAD_LOOKAT))
    side = label_from_yaw_pitch(math.pi / 2, lookat=HEAD_LOOKAT)
    sil = fitted.silhouettes(side, 64)[0, 0]
    bounds = opacity_bounds(fitted, side, 64, margin=0.03, inner=0.01)[0]
    most, least = bounds
    assert (least <= sil + 1e-6).all() and (most >= sil - 1e-6).all()
    assert least.sum() < sil.sum() < most.sum()
    assert (most[-1] == 1).all() and (least[-1] == 0).all()  # the bottom row (shoulders): no bound
    assert (most[0] == 0).all()  # above the head: nothing allowed


def test_coarse_bounds_allow_what_the_fine_ones_allow():
    """Bounds for a 16² render are the 64² ones averaged down: the same area allowed, where
    growing a 16² silhouette by whole 16² pixels would allow far more."""
    fitted = fit_head(None, CROP, label_from_yaw_pitch(0.0, lookat=HEAD_LOOKAT))
    side = label_from_yaw_pitch(math.pi / 2, lookat=HEAD_LOOKAT)
    fine = opacity_bounds(fitted, side, 64, margin=0.03, inner=0.01)
    coarse = opacity_bounds(fitted, side, 16, margin=0.03, inner=0.01)
    assert coarse.shape[-1] == 16
    assert torch.allclose(coarse.mean((2, 3)), fine.mean((2, 3)), atol=1e-5)
    assert torch.allclose(coarse, torch.nn.functional.avg_pool2d(fine, 4), atol=1e-6)


def test_grow_by_vertical_and_horizontal_pixels():
    dot = torch.zeros(1, 1, 9, 9)
    dot[..., 4, 4] = 1
    grown = _grow(dot, (1, 3))[0, 0]
    want = torch.zeros(9, 9)
    want[3:6, 1:8] = 1
    assert torch.equal(grown, want)
    assert torch.equal(_grow(dot, 0), dot)


def _fitted_to(record: dict, label: torch.Tensor) -> FittedHead:
    return fit_head(_landmarks_px(record, label), CROP, label)


def test_hair_room_from_the_mask_of_a_bald_and_a_haired_head():
    """The photo's mask of a bald head leaves about no room beyond the fitted head; of the same
    head with thick hair, about the hair's thickness (SynthHeads-360's cap_thick) above and beside."""
    label = label_from_yaw_pitch(0.1, 0.05, lookat=HEAD_LOOKAT)
    haired = sample_head(4)  # curly: a thick cap of hair
    assert haired["cap_on"] == 1 and haired["cap_thick"] / CM_WORLD > 2.5
    bald = _truth(4)
    fitted = _fitted_to(haired, label)  # the face is the same: the same fit
    cm = CM_WORLD * fitted.record["scale"]
    res = 128
    for record, lo, hi in ((bald, 0.0, 1.0), (haired, haired["cap_thick"] / CM_WORLD - 0.5, 8.0)):
        mask = FittedHead(record, torch.zeros(3), None).silhouettes(label, res)
        above, beside = (v / cm for v in hair_margins(fitted, label, mask, res))
        assert lo <= above <= hi and lo <= beside <= hi, (record["cap_on"], above, beside)
    # clamped to [minimum, MAX_HAIR_CM]; a mask of nothing measures nothing
    assert hair_room_cm(fitted, label, torch.zeros(1, 1, 64, 64), 1.5) == (1.5, 1.5)
    everything = hair_room_cm(fitted, label, torch.ones(1, 1, 64, 64), 1.5)  # to the crop's edges
    assert all(4.0 < v <= 12.0 for v in everything), everything
    assert hair_room_cm(fitted, label, torch.ones(1, 1, 64, 64), 15.0) == (15.0, 15.0)


def test_hair_room_keeps_the_haired_outline_inside_the_bounds():
    """At the sides and the back, the bounds grown by the hair the front mask shows admit the haired
    head's true outline above the chin; the fixed 1.5 cm margin cuts part of it away."""
    label = label_from_yaw_pitch(0.0, 0.05, lookat=HEAD_LOOKAT)
    haired = sample_head(4)
    fitted = _fitted_to(haired, label)
    true_head = FittedHead(haired, torch.zeros(3), None)
    room = hair_room_cm(fitted, label, true_head.silhouettes(label, 128), 1.5)
    res = 64
    cams = torch.cat([yaw_rotated(label, math.radians(a)) for a in (90.0, 180.0)])
    outline = (true_head.silhouettes(cams, res) > 0.5) & (above_chin(fitted, cams, res) > 0)
    for margin_cm, least in ((room, 0.97), (1.5, None)):
        views = shape_views(fitted, label, res, 1.0, margin_cm, 0.5)[::2]  # +90 and 180
        most = torch.cat([v.opacity[:, :1] for v in views]) > 0.5
        admitted = float((most & outline).sum() / outline.sum())
        if least is not None:
            assert admitted >= least, admitted
        else:
            assert admitted < 0.95, admitted


def test_opacity_loss_is_the_squared_excursion():
    op = torch.full((1, 1, 4, 4), 0.5)
    bounds = torch.stack([torch.full((4, 4), 0.2), torch.zeros(4, 4)])[None]
    assert torch.allclose(opacity_loss(op, bounds), torch.tensor([0.09]))
    bounds = torch.stack([torch.ones(4, 4), torch.full((4, 4), 0.9)])[None]
    assert torch.allclose(opacity_loss(op, bounds), torch.tensor([0.16]))
    inside = torch.stack([torch.full((4, 4), 0.6), torch.full((4, 4), 0.4)])[None]
    assert opacity_loss(op, inside).item() == 0


def test_shape_views_have_no_image_and_need_the_opacity():
    fitted = fit_head(None, CROP, label_from_yaw_pitch(0.0, lookat=HEAD_LOOKAT))
    views = shape_views(fitted, label_from_yaw_pitch(0.0, lookat=HEAD_LOOKAT), 16, 0.9, 1.5, 0.5)
    assert [v.image for v in views] == [None] * 3 and sum(v.weight for v in views) == pytest.approx(0.9)
    with pytest.raises(ValueError):
        views_loss(torch.zeros(3, 3, 16, 16), views, None)
    with pytest.raises(ValueError):
        TargetView("both", torch.zeros(1, 3, 4, 4), views[0].label, opacity=views[0].opacity)


@pytest.mark.slow
def test_stage2_with_a_shape_view_pulls_opacity_into_the_bounds():
    """Pivotal tuning of a tiny generator on one shape view: its opacity moves toward the bounds
    (the loss falls by more than half) and the front, not supervised, is the image term's only."""
    from inversion_tiny import rendered_target, tiny_generator
    from psohead.inversion.losses import MSSSIM
    from psohead.inversion.pivotal import PivotalConfig, tune

    torch.set_num_threads(2)
    G = tiny_generator()
    target, label, ws = rendered_target(G, seed=2)
    side = yaw_rotated(label, math.pi / 2)
    with torch.no_grad():
        before = G.synthesis(ws, side, noise_mode="const", deterministic=True)["image_mask"]
    # bounds: nothing allowed in the left half, full opacity required in a block of the right half
    bounds = torch.zeros(1, 2, 32, 32)
    bounds[:, 0, :, 16:] = 1
    bounds[:, 1, 8:24, 20:28] = 1
    views = [TargetView("front", target, label, 1.0),
             TargetView("shape", None, side, 50.0, source="shape", opacity=bounds)]
    G_t, result = tune(G, ws, views, MSSSIM(), PivotalConfig(num_steps=25, learning_rate=3e-3, deterministic=True),
                       progress=False)
    with torch.no_grad():
        after = G_t.synthesis(ws, side, noise_mode="const", deterministic=True)["image_mask"]
    assert opacity_loss(after, bounds) < 0.5 * opacity_loss(before, bounds)
    assert "shape_shape" in result.history and "mse_shape" not in result.history
    assert result.history["shape_shape"][-1] < result.history["shape_shape"][0]


def test_preset_shape_section_is_checked():
    assert resolve_preset("fast", {"shape.weight": "2.5"}).shape.weight == 2.5
    assert resolve_preset("fast", shape_margin_cm=3).shape.margin_cm == 3.0
    for key, value in (("shape.weight", -1), ("shape.margin_cm", 25), ("shape.inner_cm", -0.1)):
        with pytest.raises(InputError, match=key):
            resolve_preset("fast", {key: value})


def test_reconstruction_sizes_the_labels_room_from_the_photos_mask():
    """A haired head's crop, its mask and its landmarks through the Reconstructor: the label's
    margin above and beside grows from ``shape.margin_cm`` to about the hair's thickness, and stays
    at the fixed margin with ``shape.hair_from_photo`` off."""
    from inversion_tiny import tiny_generator
    from psohead.inversion.pipeline import Reconstructor

    torch.set_num_threads(2)
    label = label_from_yaw_pitch(0.0, 0.05, lookat=HEAD_LOOKAT)
    haired = sample_head(4)
    size = 128
    mask = FittedHead(haired, torch.zeros(3), None).silhouettes(label, size)[0, 0].numpy()
    image = np.repeat((mask[..., None] * 200).astype(np.uint8), 3, axis=2)
    landmarks = project(H.face_landmarks(haired), label.double()).numpy() * size
    thick = haired["cap_thick"] / CM_WORLD
    for hair_from_photo, lo, hi in ((True, thick - 0.5, 8.0), (False, 1.5, 1.5)):
        R = Reconstructor(tiny_generator(), device="cpu", preset="fast", stage1_steps=1, stage2_steps=1,
                          stage1_w_avg_samples=50, shape_weight=1.0, shape_hair_from_photo=hair_from_photo)
        rec = R(image, label=label[0], mask=(mask * 255).astype(np.uint8), landmarks=landmarks, back="prior",
                progress=False)
        shape = rec.settings["shape"]
        assert shape["used"] and shape["landmarks_fitted"]
        assert all(lo <= v <= hi for v in shape["margin_cm"]), (hair_from_photo, shape["margin_cm"])
        assert sum(v.source == "shape" for v in rec.views) == 3
    # the photo alone (plain PTI): no pseudo-label of any kind
    rec = R(image, label=label[0], mask=(mask * 255).astype(np.uint8), landmarks=landmarks, back="none",
            progress=False)
    assert not rec.settings["shape"]["used"] and [v.source for v in rec.views] == ["input"]


def test_crop_landmarks_without_the_face_preprocessing_installed_is_none(monkeypatch):
    """An aligned crop reconstructed where the preprocess extra is not installed: the label is fitted
    without landmarks instead of the reconstruction failing (dlib is imported on first use)."""
    from PIL import Image

    from psohead.inversion.shape import crop_landmarks
    from psohead.preprocess import landmarks
    from psohead.preprocess.native import MissingDependency

    def missing(rgb):
        raise MissingDependency("face preprocessing needs dlib, which is not installed")

    monkeypatch.setattr(landmarks, "detect_faces", missing)
    assert crop_landmarks(Image.new("RGB", (64, 64))) is None
