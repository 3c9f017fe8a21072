"""psohead.camera against the official camera fixtures, the sample labels and analytic cases."""
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from psohead import camera
from psohead.errors import LabelError
from conftest import require_shared


@pytest.fixture(scope="module")
def io():
    return load_file(str(require_shared("fixtures", "panohead_small_io.safetensors")))


def close(a, b, atol=1e-6, rtol=1e-6):
    return (a - b).abs().max().item() <= atol + rtol * b.abs().max().item()


def test_lookat_sampler_matches_official(io):
    hv, look, rad = io["camera/lookat_hv"], io["camera/lookat_position"], io["camera/lookat_radius"]
    for i in range(hv.shape[0]):
        ours = camera.lookat_pose(float(hv[i, 0]), float(hv[i, 1]), look[i].tolist(), float(rad[i]))
        assert close(ours[0], io["camera/lookat_cam2world"][i]), i


def test_fov_to_intrinsics_matches_official(io):
    for fov, ref in zip(io["camera/fov_degrees"].tolist(), io["camera/fov_intrinsics"]):
        assert close(camera.fov_to_intrinsics(fov), ref)


def test_view_labels_match_official(io):
    assert close(camera.label_from_yaw_pitch(0.0), io["camera/view_frontal"])
    assert close(camera.label_from_yaw_pitch(math.pi), io["camera/view_back"], atol=2e-6)
    assert close(camera.label_from_yaw_pitch(math.pi / 3), io["camera/view_side60"], atol=2e-6)
    # the pitched fixture view uses sampler v directly: pitch = asin(1 - 2v/pi)
    v = math.pi / 2 - 0.3
    ref = camera.build_label(camera.lookat_pose(math.pi / 2 - 0.4, v))
    assert close(ref, io["camera/view_pitch"])
    ours = camera.label_from_yaw_pitch(-0.4, math.asin(1 - 2 * v / math.pi))
    assert close(ours, io["camera/view_pitch"], atol=1e-5)


@pytest.mark.parametrize("yaw,pitch", [(0.0, 0.0), (0.7, 0.2), (-2.0, -0.3), (math.pi, 0.1), (3.0, 0.5)])
def test_yaw_pitch_round_trip(yaw, pitch):
    lab = camera.label_from_yaw_pitch(yaw, pitch, radius=2.7)
    y, p, r = camera.yaw_pitch_from_label(lab)
    assert abs(math.remainder(y.item() - yaw, 2 * math.pi)) < 1e-5
    assert abs(p.item() - pitch) < 1e-5 and abs(r.item() - 2.7) < 1e-5


def test_geometry_conventions():
    front = camera.label_from_yaw_pitch(0.0, lookat=(0, 0, 0))
    c2w, k = camera.split_label(front)
    assert torch.allclose(c2w[0, :3, :3], torch.diag(torch.tensor([1.0, -1.0, -1.0])), atol=1e-6)
    assert torch.allclose(c2w[0, :3, 3], torch.tensor([0.0, 0.0, 2.7]), atol=1e-6)
    back = camera.split_label(camera.label_from_yaw_pitch(math.pi, lookat=(0, 0, 0)))[0]
    assert torch.allclose(back[0, :3, 3], torch.tensor([0.0, 0.0, -2.7]), atol=1e-5)
    up = camera.split_label(camera.label_from_yaw_pitch(0.0, 0.4))[0]
    assert up[0, 1, 3] > 0  # positive pitch = camera above
    left = camera.split_label(camera.label_from_yaw_pitch(math.pi / 2))[0]
    assert left[0, 0, 3] > 2.6  # positive yaw = subject's left (+x)


def test_projection_of_known_point():
    """The look-at point projects to the image centre; +x world appears on the image right."""
    lab = camera.label_from_yaw_pitch(0.0, lookat=(0, 0, 0.2))
    c2w, k = camera.split_label(lab)
    w2c = torch.linalg.inv(c2w[0])

    def project(p):
        pc = w2c @ torch.tensor([*p, 1.0])
        uv = k[0] @ (pc[:3] / pc[2])
        return uv[:2]

    assert torch.allclose(project((0, 0, 0.2)), torch.tensor([0.5, 0.5]), atol=1e-6)
    assert project((0.1, 0, 0.2))[0] > 0.5  # subject's left on the image right
    assert project((0, 0.1, 0.2))[1] < 0.5  # up in the world is up in the image


def test_sample_labels_are_valid_and_yaws_sane():
    data = json.loads(require_shared("data", "panohead_samples", "img", "dataset.json").read_text())
    for name, values in data["labels"]:
        lab = camera.parse_label(values, name)
        yaw, pitch, radius = camera.yaw_pitch_from_label(lab)
        assert abs(radius.item() - 2.7) < 0.05
        assert abs(yaw.item()) < math.radians(30) and abs(pitch.item()) < math.radians(20)
        assert camera.format_label(lab)[:3] == values[:3]


def test_back_and_flip_labels():
    lab = camera.label_from_yaw_pitch(0.3, 0.1, lookat=(0, 0, 0))
    yaw, pitch, _ = camera.yaw_pitch_from_label(camera.back_label(lab))
    assert abs(math.remainder(yaw.item() - (0.3 + math.pi), 2 * math.pi)) < 1e-5
    assert abs(pitch.item() - 0.1) < 1e-5
    fyaw, fpitch, _ = camera.yaw_pitch_from_label(camera.flip_label(lab))
    assert abs(fyaw.item() + 0.3) < 1e-5 and abs(fpitch.item() - 0.1) < 1e-5
    camera.validate_label(camera.flip_label(lab))
    camera.validate_label(camera.back_label(lab))


def test_orbit_is_evenly_spaced():
    labs = camera.orbit_labels(8)
    yaws = camera.yaw_pitch_from_label(labs)[0]
    diffs = torch.remainder(yaws.roll(-1) - yaws, 2 * math.pi)
    assert torch.allclose(diffs, torch.full((8,), math.pi / 4), atol=1e-5)


@pytest.mark.parametrize("bad,msg", [
    ([0.0] * 24, "25 numbers"),
    ([float("nan")] * 25, "NaN"),
    ([2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 4.2647, 0, 0.5, 0, 4.2647, 0.5, 0, 0, 1], "rigid"),
    (["a"] * 25, "numbers"),
])
def test_bad_labels_raise_clear_errors(bad, msg):
    with pytest.raises(LabelError, match=msg):
        camera.parse_label(bad) if isinstance(bad[0], str) else camera.validate_label(bad)


def test_camera_offset_moves_only_the_translation():
    c = camera.label_from_yaw_pitch(0.3, 0.1)
    out = camera.apply_offset(c, torch.tensor([[0.1, -0.2, 0.05]], dtype=torch.float64))
    assert out.dtype == c.dtype
    moved = out - c
    assert torch.allclose(moved[0, [3, 7, 11]], torch.tensor([0.1, -0.2, 0.05]), atol=1e-7)
    moved[0, [3, 7, 11]] = 0
    assert torch.count_nonzero(moved) == 0
