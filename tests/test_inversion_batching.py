"""Stage-2 batching: one synthesis call for all views (one tri-grid for the shared latent, gather
sampling on CPU) gives the loss and gradients of the per-view loop with PyTorch's grid_sample;
cycled views keep their mean weight."""
import math

import pytest
import torch

from psohead.inversion.losses import MSSSIM
from psohead.inversion.pivotal import tuned_parameters
from psohead.inversion.back.prior import back_cameras
from psohead.inversion.graphs import StepRenderer
from psohead.inversion.targets import TargetView, step_views, views_loss
from psohead.networks import renderer, trigrid


def _grid_sample_mean(planes, coordinates, box_warp, depth):
    """Reference sampler: torch's grid_sample on the per-item planes (the pre-gather code path)."""
    return trigrid.sample_trigrid(planes.expand(coordinates.shape[0], -1, -1, -1, -1), coordinates, box_warp,
                                  depth).mean(1)


def test_batched_stage2_step_matches_per_view_loop(monkeypatch):
    from inversion_tiny import rendered_target, tiny_generator

    torch.set_num_threads(2)
    G = tiny_generator().train()  # stage 2 tunes G in train mode
    G.requires_grad_(False)
    params = tuned_parameters(G)
    for p in params:
        p.requires_grad_(True)
    target, label, _ = rendered_target(G, seed=3)
    _, _, ws = rendered_target(G, seed=4)
    views = [TargetView("front", target, label, 1.0)]
    views += [TargetView(name, target.flip(-1), lab, w, None, "prior") for name, lab, w in back_cameras(label, 30.0)]
    loss_fn = MSSSIM()

    images, _ = StepRenderer(G, deterministic=True)(ws, views)
    loss, terms = views_loss(images, views, loss_fn)
    grads = torch.autograd.grad(loss, params, allow_unused=True)

    monkeypatch.setattr(renderer, "sample_trigrid_mean", _grid_sample_mean)
    ref_loss, ref_terms = 0.0, []
    for v in views:
        img = G.synthesis(ws, v.label, noise_mode="const", deterministic=True)["image"]
        part, t = views_loss(img, [v], loss_fn)
        ref_loss = ref_loss + part
        ref_terms.append(t)
    ref_grads = torch.autograd.grad(ref_loss, params, allow_unused=True)

    assert float(loss) == pytest.approx(float(ref_loss.detach()), rel=1e-5)
    assert torch.allclose(terms, torch.cat(ref_terms, 1), rtol=1e-4, atol=1e-6, equal_nan=True)
    assert sum(g is not None for g in grads) > 0.9 * len(params)
    # float32 summation order differs (one backbone pass with summed gradients vs four): relative
    # 1e-4 per tensor, plus a floor for scalars such as noise strengths (sums of cancelling terms).
    floor = 1e-5 * max(float(r.abs().max()) for r in ref_grads if r is not None)
    for p, g, r in zip(params, grads, ref_grads):
        assert (g is None) == (r is None), tuple(p.shape)
        if g is not None:  # None: parameters the images do not depend on
            assert float((g - r).norm()) <= 1e-4 * float(r.norm()) + floor, tuple(p.shape)


def test_gather_sampler_matches_grid_sample_values_and_gradients():
    torch.manual_seed(0)
    for n_planes, n in ((1, 3), (2, 2)):
        planes = torch.randn(n_planes, 3, 4 * 3, 6, 7, dtype=torch.float64, requires_grad=True)
        pts = (torch.rand(n, 400, 3, dtype=torch.float64) - 0.5) * 1.5  # a third lies outside the box
        pts[0, :4] = torch.tensor([[0.5, 0.5, 0.5], [-0.5, -0.5, -0.5], [0.49, -0.499, 0.2], [2.0, 0.0, 0.0]])
        pts[0, 4] = float("nan")
        got = trigrid.sample_trigrid_mean(planes, pts, 1.0, 3)
        ref = _grid_sample_mean(planes, pts, 1.0, 3)
        assert torch.allclose(got, ref, atol=1e-12)
        g = torch.randn_like(ref)
        assert torch.allclose(torch.autograd.grad(got, planes, g)[0], torch.autograd.grad(ref, planes, g)[0],
                              atol=1e-12)


def test_cycled_views_take_turns_with_the_same_mean_weight():
    img, lab = torch.zeros(1, 3, 4, 4), torch.zeros(1, 25)
    views = [TargetView("front", img, lab, 1.0), TargetView("back", img, lab, 0.15),
             TargetView("back+30", img, lab, 0.075, cycle="aug"), TargetView("back-30", img, lab, 0.075, cycle="aug")]
    seen = {v.name: 0.0 for v in views}
    for step in range(4):
        active, chosen = step_views(views, step)
        assert [views[i].name for i in active][:2] == ["front", "back"] and len(active) == 3
        for v in chosen:
            seen[v.name] += v.weight / 4
    assert seen == pytest.approx({v.name: v.weight for v in views})
    assert math.isclose(sum(v.weight for v in step_views(views, 1)[1]), sum(v.weight for v in views))


def test_cached_target_features_give_the_same_loss_and_gradient(tmp_path):
    """LPIPS (random VGG weights) and views_loss with a TargetCache vs recomputing everything."""
    from test_inversion import _fake_vgg_state

    from psohead.inversion import losses
    from psohead.inversion.targets import TargetCache

    vgg = tmp_path / "vgg.pth"
    _fake_vgg_state(vgg, "pth")
    lpips = losses.build_perceptual("lpips", vgg16=vgg)
    torch.manual_seed(3)
    x = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    ref = lpips(x, y)
    got = lpips(x, y, lpips.target_features(y))
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-7)
    g = torch.randn(2)
    assert torch.allclose(torch.autograd.grad(got, x, g)[0], torch.autograd.grad(ref, x, g)[0], atol=1e-6)

    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 2:10] = 1
    views = [TargetView("front", y[:1], torch.zeros(1, 25)),
             TargetView("back", y[1:], torch.zeros(1, 25), 0.3, mask, "photo")]
    images = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)  # targets get resized to this
    cache = TargetCache()
    for _ in range(2):  # second call: everything from the cache
        loss, terms = views_loss(images, views, lpips, cache=cache)
        ref_loss, ref_terms = views_loss(images, views, lpips)
        assert torch.allclose(loss, ref_loss, rtol=1e-5) and torch.allclose(terms, ref_terms, rtol=1e-5, atol=1e-7, equal_nan=True)
    assert torch.allclose(torch.autograd.grad(loss, images)[0], torch.autograd.grad(ref_loss, images)[0],
                          atol=1e-7)


def test_bounded_views_render_the_opacity_synthesis_gives():
    """A step with picture and opacity-bound views: the pictured ones get synthesis's images, the
    bounded ones its image_mask (at the network's resolution, the same rays; at half of it, the
    image_mask of a half-resolution synthesis), and gradients flow to the latent through both."""
    from inversion_tiny import rendered_target, tiny_generator

    torch.manual_seed(0)
    G = tiny_generator().requires_grad_(False)
    target, label, ws = rendered_target(G, seed=5)
    res = int(G.neural_rendering_resolution)
    side = [TargetView(name, None, lab, w, None, "shape", opacity=torch.ones(1, 2, r, r))
            for (name, lab, w), r in zip(back_cameras(label, 30.0), (res, res, res))]
    views = [TargetView("front", target, label, 1.0), side[0], TargetView("back", target, side[1].label, 0.5), side[2]]
    w = ws.clone().requires_grad_(True)
    images, opacity = StepRenderer(G, deterministic=True)(w, views)
    assert images.shape[0] == 2 and opacity.shape == (2, 1, res, res)
    for got, v in zip(images, (views[0], views[2])):
        want = G.synthesis(ws, v.label, noise_mode="const", deterministic=True)["image"][0]
        assert torch.allclose(got, want, atol=1e-5)
    for got, v in zip(opacity, (views[1], views[3])):
        want = G.synthesis(ws, v.label, noise_mode="const", deterministic=True)["image_mask"][0]
        assert torch.allclose(got, want, atol=1e-6)
    grad, = torch.autograd.grad(opacity.sum(), w)
    assert grad.abs().sum() > 0

    half = [TargetView(v.name, None, v.label, v.weight, None, "shape", opacity=torch.ones(1, 2, res // 2, res // 2))
            for v in side[:1]]
    _, small = StepRenderer(G, deterministic=True)(ws, half)
    want = G.synthesis(ws, half[0].label, neural_rendering_resolution=res // 2, noise_mode="const",
                       deterministic=True)["image_mask"]
    assert small.shape[-1] == res // 2 and torch.allclose(small, want, atol=1e-6)
    with pytest.raises(ValueError, match="differ in size"):
        StepRenderer(G, deterministic=True)(ws, [side[0]] + half)


def test_coarse_steps_render_fewer_rays_first_then_the_networks_own(monkeypatch):
    """``coarse_steps``: the first steps' pictured views are synthesis's images at the coarse
    resolution (super-resolved to full size), the remaining steps' at the network's own."""
    from inversion_tiny import rendered_target, tiny_generator
    from psohead.inversion.projector import ProjectorConfig, latent_stats, project

    torch.manual_seed(0)
    G = tiny_generator().requires_grad_(False)
    target, label, ws = rendered_target(G, seed=6)
    res = int(G.neural_rendering_resolution)
    views = [TargetView("front", target, label, 1.0)]
    images, _ = StepRenderer(G, deterministic=True)(ws, views, res // 2)
    want = G.synthesis(ws, label, neural_rendering_resolution=res // 2, noise_mode="const",
                       deterministic=True)["image"]
    full = G.synthesis(ws, label, noise_mode="const", deterministic=True)["image"]
    assert images.shape == full.shape and torch.allclose(images, want, atol=1e-5)
    assert not torch.allclose(images, full, atol=1e-3)

    seen = []
    synthesis = G.synthesis

    def spy(*args, **kwargs):
        seen.append(kwargs.get("neural_rendering_resolution"))
        return synthesis(*args, **kwargs)

    monkeypatch.setattr(G, "synthesis", spy)
    cfg = ProjectorConfig(num_steps=3, deterministic=True, coarse_steps=2, coarse_resolution=res // 2)
    project(G, views, MSSSIM(), latent_stats(G, 64), cfg, progress=False)
    assert seen == [res // 2, res // 2, None]
