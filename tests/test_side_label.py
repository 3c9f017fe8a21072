"""Side pseudo-labels: the photo warped to turned cameras through a surface (issue 28). The truth
is SynthHeads-360: a head rendered at two cameras, with its exact depth and silhouette."""
import math

import pytest
import torch

from psohead.camera import HEAD_LOOKAT, label_from_yaw_pitch, yaw_rotated
from psohead.errors import InputError
from psohead.inversion.presets import resolve_preset
from psohead.inversion.side import side_views, warp
from psohead.inversion.targets import TargetView
from psohead.synth.params import SCENE_KEYS, fixed_scene, sample_head, stack
from psohead.synth.render import RenderConfig, camera_rays, render

RES = 128


def _truth(labels: torch.Tensor, seed: int = 7):
    """Images [V,3,R,R] in [-1,1], ray depths and silhouettes [V,1,R,R] of one head at ``labels``."""
    n = labels.shape[0]
    out = render(labels, stack([sample_head(seed)]).expand(n, -1), stack([fixed_scene()], SCENE_KEYS).expand(n, -1),
                 RenderConfig(resolution=RES, ao=False))
    _, directions = camera_rays(labels, RES)
    forward = torch.nn.functional.normalize(labels.reshape(-1, 25)[:, [2, 6, 10]], dim=-1)
    cos = (directions * forward[:, None]).sum(-1).reshape(n, 1, RES, RES)  # camera z -> distance along the ray
    depth = out.depth.unsqueeze(1) / cos
    return out.rgb * 2 - 1, depth, out.hit.float().unsqueeze(1)


def _psnr(a, b, mask):
    err = ((a - b) ** 2 * mask).sum() / (3 * mask.sum())
    return float(10 * torch.log10(4 / err))


@pytest.mark.parametrize("degrees", [20.0, -30.0])
def test_warp_through_the_true_surface_gives_the_true_view(degrees):
    src = label_from_yaw_pitch(0.1, 0.05, lookat=HEAD_LOOKAT)
    labels = torch.cat([src, yaw_rotated(src, math.radians(degrees))])
    images, depth, hit = _truth(labels)
    warped, valid = warp(images[:1], hit[:1], depth, hit, labels)
    assert valid.shape == (1, 1, RES, RES) and set(valid.unique().tolist()) <= {0.0, 1.0}
    # the photo supplies most of the face and head the turned camera sees, and nothing off the head
    assert 0.5 < float((valid * hit[1:]).sum() / hit[1:].sum()) < 0.98
    assert float((valid * (1 - hit[1:])).sum()) == 0
    # the true view where the photo supplies it, up to resampling and the shading's view dependence
    # (25-35 dB from 5 to 20 degrees; the photo itself, unwarped, 20-25 dB)
    assert _psnr(warped, images[1:], valid) > 22
    assert _psnr(warped, images[1:], valid) > _psnr(images[:1], images[1:], valid) + 3
    assert torch.all(warped[valid.expand_as(warped) == 0] == -1)


def test_warp_leaves_out_what_the_photo_does_not_see():
    # turned 60 degrees the far side of the head comes into view: those pixels are not supplied,
    # and the supplied share shrinks with the angle
    src = label_from_yaw_pitch(0.0, 0.0, lookat=HEAD_LOOKAT)
    turns = (15.0, 35.0, 60.0)
    labels = torch.cat([src] + [yaw_rotated(src, math.radians(a)) for a in turns])
    images, depth, hit = _truth(labels, seed=11)
    _, valid = warp(images[:1], hit[:1], depth, hit, labels)
    share = [float((valid[i] * hit[i + 1]).sum() / hit[i + 1].sum()) for i in range(len(turns))]
    assert share[0] > share[1] > share[2]
    # a wrong surface (the target's depth pushed 10 cm back) is caught by the visibility test
    pushed = depth.clone()
    pushed[1:] += 0.4
    _, valid_pushed = warp(images[:1], hit[:1], pushed, hit, labels)
    assert float(valid_pushed.sum()) < 0.2 * float(valid.sum())


def test_identity_warp_returns_the_photo_where_its_mask_and_surface_are():
    src = label_from_yaw_pitch(-0.2, 0.0, lookat=HEAD_LOOKAT)
    labels = torch.cat([src, src])
    images, depth, hit = _truth(labels, seed=3)
    mask = hit[:1].clone()
    mask[..., :, : RES // 2] = 0  # the photo's foreground mask: only its right half
    warped, valid = warp(images[:1], mask, depth, hit, labels)
    inner = -torch.nn.functional.max_pool2d(-(hit[:1] * mask), 3, 1, 1)
    assert float((valid * (1 - inner)).sum()) == 0  # nothing outside the mask and the surface
    # all of it but the surface seen at a grazing angle (the head's outline)
    assert float(valid.sum()) > 0.75 * float(inner.sum())
    assert torch.allclose(warped * valid, images[:1] * valid, atol=2e-3)  # float rounding of the lift + projection


def test_side_views_are_two_masked_views_taking_turns_and_a_preset_setting():
    from psohead.api import load_generator

    G = load_generator("default")
    label = label_from_yaw_pitch(0.1, 0.0)
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(2)), label)
        photo = G.synthesis(ws, label, noise_mode="const", deterministic=True)["image"]
    front = TargetView("front", photo, label)
    views = side_views(G, ws, front, None, 25.0, 0.4)
    assert [v.name for v in views] == ["side+25", "side-25"]
    assert all(v.cycle == "side" and v.source == "side" and v.weight == pytest.approx(0.2) for v in views)
    for v, a in zip(views, (25.0, -25.0)):
        assert torch.allclose(v.label, yaw_rotated(label, math.radians(a)))
        assert 0.1 < float(v.mask.mean()) < 0.9
    # G's own render warped through G's own surface matches G's render at the turned camera
    with torch.no_grad():
        turned = G.synthesis(ws, views[0].label, noise_mode="const", deterministic=True)["image"]
    assert _psnr(views[0].image, turned, views[0].mask) > 22

    assert resolve_preset("fast").side.weight == 0
    assert resolve_preset("fast", {"side.weight": "0.5", "side.degrees": "25"}).side.degrees == 25
    with pytest.raises(InputError, match="side.degrees"):
        resolve_preset("fast", {"side.degrees": "90"})
