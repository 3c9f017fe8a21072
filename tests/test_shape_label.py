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
from psohead.inversion.shape import FittedHead, above_chin, fit_head, opacity_bounds, project, shape_views
from psohead.inversion.targets import TargetView, views_loss
from psohead.synth import head as H
from psohead.synth.params import sample_head

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
