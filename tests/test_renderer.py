"""Rays, tri-grid sampling, decoder, marcher and importance sampling against analytic truths
and the official fixture intermediates that need no network."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import require_shared

from psohead.networks.config import GeneratorConfig
from psohead.networks.renderer import (ImportanceRenderer, MipRayMarcher2, RaySampler, crop_mask,
                                       sample_pdf)
from psohead.networks.trigrid import PLANE_AXES, OSGDecoder, sample_trigrid

OPTS = {"clamp_mode": "softplus"}


def _tol(ours, ref, atol, rtol):
    return (ours - ref).abs().max().item() <= atol + rtol * ref.abs().max().item()


@pytest.fixture(scope="module")
def io():
    from safetensors.torch import load_file
    return load_file(str(require_shared("fixtures", "panohead_small_io.safetensors")))


# ---------------------------------------------------------------- rays

def test_rays_match_pinhole_formula():
    f, r = 4.2647, 5
    c2w = torch.eye(4)
    c2w[:3, :3] = torch.diag(torch.tensor([1.0, -1.0, -1.0]))  # frontal camera, looks toward -z
    c2w[:3, 3] = torch.tensor([0.0, 0.0, 2.7])
    k = torch.tensor([[f, 0, 0.5], [0, f, 0.5], [0, 0, 1.0]])
    origins, dirs = RaySampler()(c2w[None], k[None], r)
    assert origins.shape == (1, r * r, 3) and dirs.shape == (1, r * r, 3)
    assert torch.allclose(origins[0], torch.tensor([0.0, 0.0, 2.7]).expand(r * r, 3))
    for i in range(r):
        for j in range(r):
            cam = np.array([((j + 0.5) / r - 0.5) / f, ((i + 0.5) / r - 0.5) / f, 1.0])
            world = np.diag([1.0, -1.0, -1.0]) @ cam
            world /= np.linalg.norm(world)
            assert np.allclose(dirs[0, i * r + j].numpy(), world, atol=1e-6)
    assert torch.allclose(dirs[0, (r * r) // 2], torch.tensor([0.0, 0.0, -1.0]))  # centre pixel


def test_rays_skew_term():
    f, sk = 2.0, 0.3
    k = torch.tensor([[f, sk, 0.5], [0, f, 0.5], [0, 0, 1.0]])
    _, dirs = RaySampler()(torch.eye(4)[None], k[None], 2)
    u = v = 0.25  # pixel (0, 0)
    x = (u - 0.5 + 0.5 * sk / f - sk * v / f) / f
    y = (v - 0.5) / f
    ref = torch.tensor([x, y, 1.0]) / math.sqrt(x * x + y * y + 1)
    assert torch.allclose(dirs[0, 0], ref, atol=1e-7)


def test_rays_match_fixture(io):
    c = io["caseA/c_render"]
    _, dirs = RaySampler()(c[:, :16].view(-1, 4, 4), c[:, 16:25].view(-1, 3, 3), 64)
    assert _tol(dirs, io["caseA/ray_directions"], 1e-6, 1e-6)


def test_coarse_depths_match_fixture(io):
    rk = GeneratorConfig.fixture_small().rendering_kwargs
    d = ImportanceRenderer.sample_stratified(torch.zeros(2, 3, 3), rk["ray_start"], rk["ray_end"],
                                             rk["depth_resolution"], False, deterministic=True)
    ref = io["caseA/depths_coarse_ray0"]
    assert d.shape == (2, 3, 12, 1)
    assert _tol(d[:, :1], ref, 1e-6, 1e-6)
    # README formula: t_k = start + (k + 0.5)(end - start)/(S - 1)
    k = torch.arange(12, dtype=torch.float64)
    assert torch.allclose(ref[0, 0, :, 0].double(), 2.25 + (k + 0.5) * 1.05 / 11, atol=1e-6)


def test_stratified_jitter_random_stays_in_strata():
    d = ImportanceRenderer.sample_stratified(torch.zeros(1, 1000, 3), 2.0, 3.0, 11, False)
    base = torch.linspace(2.0, 3.0, 11).view(1, 1, 11, 1)
    off = (d - base) / 0.1
    assert off.min() >= 0 and off.max() < 1 and off.std() > 0.2


def test_disparity_sampling_endpoints():
    d = ImportanceRenderer.sample_stratified(torch.zeros(1, 1, 3), 2.0, 4.0, 3, True, deterministic=True)
    s = torch.tensor([0.25, 0.75, 1.25])  # linspace(0,1,3) + 0.5 * 0.5
    assert torch.allclose(d.flatten(), 1 / (0.5 * (1 - s) + 0.25 * s))


# ---------------------------------------------------------------- tri-grid

def _planes_from_backbone_layout(values: torch.Tensor) -> torch.Tensor:
    """values [N, plane, c, d, H, W] → backbone image [N, 3*C*D, H, W] with channel p*C*D + c*D + d."""
    n, p, c, d, h, w = values.shape
    return values.reshape(n, p * c * d, h, w)


def test_plane_axes_are_the_spec_permutations():
    q = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    got = [tuple((q @ torch.linalg.inv(torch.tensor(a, dtype=torch.float64))).tolist()) for a in PLANE_AXES]
    assert np.allclose(got, [(0.1, 0.2, 0.3), (0.1, 0.3, 0.2), (0.2, 0.3, 0.1)])


@pytest.mark.parametrize("plane, axes", [(0, (0, 1, 2)), (1, (0, 2, 1)), (2, (1, 2, 0))])
def test_trigrid_sampling_reproduces_linear_fields(plane, axes):
    # Feature 0 = W-coordinate, 1 = H-coordinate, 2 = D-coordinate of each texel centre (align_corners=False).
    h = w = 8
    depth = 4
    cen = lambda n: (torch.arange(n, dtype=torch.float32) + 0.5) / n * 2 - 1  # noqa: E731
    vol = torch.zeros(1, 3, 3, depth, h, w)
    vol[0, plane, 0] = cen(w).view(1, 1, w).expand(depth, h, w)
    vol[0, plane, 1] = cen(h).view(1, h, 1).expand(depth, h, w)
    vol[0, plane, 2] = cen(depth).view(depth, 1, 1).expand(depth, h, w)
    planes = _planes_from_backbone_layout(vol).view(1, 3, 3 * depth, h, w)
    box_warp = 1.6
    pts = (torch.rand(1, 50, 3) - 0.5) * 0.6 * box_warp  # well inside the texel-centre hull
    out = sample_trigrid(planes, pts, box_warp, depth)
    assert out.shape == (1, 3, 50, 3)
    q = pts * 2 / box_warp
    assert torch.allclose(out[0, plane], q[0][:, list(axes)], atol=1e-5)
    others = [p for p in range(3) if p != plane]
    assert out[0, others].abs().max() == 0


def test_trigrid_middle_slice_tent_and_zero_outside():
    # README density_shaping: a constant middle slice (D=3) samples as max(0, 1 - 3|u|) along depth.
    vol = torch.zeros(1, 3, 1, 3, 4, 4)
    vol[0, 0, 0, 1] = 1.0
    planes = _planes_from_backbone_layout(vol).view(1, 3, 3, 4, 4)
    z = torch.linspace(-0.45, 0.45, 19)
    pts = torch.stack([torch.zeros_like(z), torch.zeros_like(z), z], -1)[None]
    out = sample_trigrid(planes, pts, 1.0, 3)[0, 0, :, 0]
    assert torch.allclose(out, (1 - 3 * z.abs()).clamp_min(0), atol=1e-6)
    far = sample_trigrid(torch.ones(1, 3, 3, 4, 4), torch.tensor([[[0.0, 0.0, 0.9], [0.8, 0, 0]]]), 1.0, 3)
    assert far.abs().max() == 0


# ---------------------------------------------------------------- decoder

def test_decoder_names_and_math():
    dec = OSGDecoder(4, output_dim=3, hidden_dim=5, activation="none")
    assert [n for n, _ in dec.named_parameters()] == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]
    assert isinstance(dec.net[1], torch.nn.Softplus)
    feats = torch.randn(2, 3, 7, 4)
    out = dec(feats, None)
    x = feats.mean(1)
    h = torch.nn.functional.softplus(x @ (dec.net[0].weight / 2).T + dec.net[0].bias)
    y = h @ (dec.net[2].weight / math.sqrt(5)).T + dec.net[2].bias
    assert torch.allclose(out["sigma"], y[..., :1], atol=1e-6)
    assert torch.allclose(out["rgb"], y[..., 1:], atol=1e-6)
    dec.activation = "sigmoid"
    assert torch.allclose(dec(feats)["rgb"], torch.sigmoid(y[..., 1:]) * 1.002 - 0.001, atol=1e-6)
    dec.activation = "lrelu"
    ref = torch.where(y[..., 1:] > 0, y[..., 1:], 0.2 * y[..., 1:]) * math.sqrt(2)
    assert torch.allclose(dec(feats)["rgb"], ref, atol=1e-6)
    with pytest.raises(ValueError, match="decoder_activation"):
        OSGDecoder(activation="relu")


# ---------------------------------------------------------------- marcher

def test_marcher_uniform_density_matches_beer_lambert():
    s = 200
    t = torch.linspace(2.0, 3.0, s).view(1, 1, s, 1)
    sigma = torch.full((1, 1, s, 1), 0.7)
    colors = torch.ones(1, 1, s, 2)
    rgb, depth, w = MipRayMarcher2()(colors, sigma, t, OPTS)
    d = math.log1p(math.exp(0.7 - 1))  # softplus(σ - 1)
    a = 1 - math.exp(-d * 1.0)
    assert w.sum().item() == pytest.approx(a, abs=1e-5)
    assert rgb[0, 0].tolist() == pytest.approx([a, a], abs=1e-5)
    # mean depth of an exponential truncated to [2, 3]
    mean = 2 + 1 / d - math.exp(-d) / (1 - math.exp(-d))
    assert depth.item() == pytest.approx(mean, abs=1e-3)


def test_marcher_opaque_interval_and_global_depth_clamp():
    t = torch.tensor([2.0, 2.2, 2.4, 2.6]).view(1, 1, 4, 1).repeat(1, 2, 1, 1)
    sigma = torch.full((1, 2, 4, 1), -3000.0)
    sigma[0, 0, 2] = 5000.0  # midpoint averages: ray 0 intervals get -3000, 1000, 1000 → 2nd is opaque
    t[0, 1] += 1.0  # ray 1 is empty and lies further away
    colors = torch.arange(8, dtype=torch.float32).view(1, 2, 4, 1)
    rgb, depth, w = MipRayMarcher2()(colors, sigma, t, OPTS)
    assert w[0, 0, :, 0].tolist() == pytest.approx([0, 1, 0], abs=1e-6)
    assert rgb[0, 0, 0].item() == pytest.approx(1.5)
    assert depth[0, 0, 0].item() == pytest.approx(2.3, abs=1e-6)
    assert w[0, 1].sum().item() == 0
    assert depth[0, 1, 0].item() == pytest.approx(3.6)  # NaN → +inf → global max depth


def test_crop_mask():
    pts = torch.tensor([[[0.39, 5.0, -0.39], [0.41, 0, 0], [0, 0, -0.41], [0, -0.45, 0]]])
    assert crop_mask(pts, 1.0, 0.1)[0, :, 0].tolist() == [False, True, True, False]


# ---------------------------------------------------------------- importance sampling

def test_sample_pdf_uniform_weights_is_linear():
    bins = torch.linspace(1.0, 2.0, 11).repeat(3, 1)
    out = sample_pdf(bins, torch.ones(3, 10), 6, deterministic=True)
    assert torch.allclose(out, torch.linspace(1.0, 2.0, 6).repeat(3, 1), atol=1e-5)


def test_sample_pdf_concentrates_on_heavy_bin():
    bins = torch.linspace(0.0, 1.0, 5)[None]  # bins [0,.25], [.25,.5], [.5,.75], [.75,1]
    w = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    out = sample_pdf(bins, w, 9, deterministic=True)[0]
    inner = out[1:-1]
    assert inner.min() >= 0.5 - 1e-4 and inner.max() <= 0.75 + 1e-4
    rnd = sample_pdf(bins.repeat(2000, 1), w.repeat(2000, 1), 4, deterministic=False)
    assert ((rnd > 0.5) & (rnd < 0.75)).float().mean() > 0.99


def test_importance_smoothing_uses_inner_weights():
    # One ray, 6 coarse samples → 5 weights → smoothed 5 → pdf over the inner 3 with 4 midpoint edges.
    z = torch.linspace(0.0, 5.0, 6).view(1, 1, 6, 1)
    w = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0]).view(1, 1, 5, 1)
    fine = ImportanceRenderer.sample_importance(z, w, 5, deterministic=True)[0, 0, :, 0]
    # max_pool(k2,s1,p1) → [0,0,0,0,1,1]; avg(k2,s1) → [0,0,0,.5,1]; +0.01 → inner [0.01,.01,.51]
    p = np.array([0.01, 0.01, 0.51]) + 1e-5
    cdf = np.concatenate([[0], np.cumsum(p / p.sum())])
    edges = np.array([0.5, 1.5, 2.5, 3.5])
    ref = np.interp(np.linspace(0, 1, 5), cdf, edges)
    assert np.allclose(fine.numpy(), ref, atol=1e-5)


def test_renderer_deterministic_is_bit_stable_and_random_is_not():
    torch.manual_seed(1)
    planes = torch.randn(1, 3, 6, 8, 8)
    dec = OSGDecoder(2, output_dim=2, hidden_dim=4)
    opts = dict(GeneratorConfig.fixture_small().rendering_kwargs, depth_resolution=6,
                depth_resolution_importance=5, triplane_depth=3, density_noise=0.5)
    c2w = torch.eye(4)[None]
    c2w[0, 2, 3] = -2.7
    k = torch.tensor([[[2.0, 0, 0.5], [0, 2.0, 0.5], [0, 0, 1]]])
    o, d = RaySampler()(c2w, k, 4)
    r = ImportanceRenderer()
    a = r(planes, dec, o, d, opts, deterministic=True, return_intermediates=True)
    b = r(planes, dec, o, d, opts, deterministic=True, return_intermediates=True)
    for x, y in zip(a[:3], b[:3]):
        assert torch.equal(x, y)
    assert a[0].shape == (1, 16, 2) and a[1].shape == (1, 16, 1) and a[2].shape == (1, 16, 1)
    assert a[3]["depths_fine"].shape == (1, 16, 5, 1)
    c = r(planes, dec, o, d, opts)
    assert not torch.equal(a[0], c[0])


def test_fixture_render_opts_are_official(io):
    meta = json.loads(require_shared("fixtures", "panohead_small_meta.json").read_text())
    assert GeneratorConfig.fixture_small().rendering_kwargs == meta["rendering_kwargs"]


def test_marcher_matches_midpoint_formula_with_unsorted_colours():
    # Reference: the official midpoint compositing sum_i w_i (c_i + c_i+1)/2 on depth-sorted samples.
    torch.manual_seed(2)
    depths = torch.sort(torch.rand(2, 5, 9, 1) + 2, dim=-2).values
    sigma = torch.randn(2, 5, 9, 1) * 3
    colors = torch.randn(2, 5, 9, 4, requires_grad=True)
    w = MipRayMarcher2.interval_weights(sigma, depths, OPTS)
    ref = (w * (colors[:, :, :-1] + colors[:, :, 1:]) / 2).sum(-2)
    rgb, _, _ = MipRayMarcher2()(colors, sigma, depths, OPTS)
    assert torch.allclose(rgb, ref, atol=1e-6)
    perm = torch.stack([torch.randperm(9) for _ in range(10)]).view(2, 5, 9, 1)  # shuffled colour storage
    shuffled = torch.empty_like(colors).scatter(-2, perm.expand(-1, -1, -1, 4), colors)
    rgb_u, _, _ = MipRayMarcher2()(shuffled, sigma, depths, OPTS, colors_order=perm)
    assert torch.allclose(rgb_u, ref, atol=1e-6)
    g = torch.randn_like(ref)
    assert torch.allclose(torch.autograd.grad(rgb_u, colors, g)[0], torch.autograd.grad(ref, colors, g)[0],
                          atol=1e-6)


def test_positive_cumprod_matches_torch_values_and_gradients():
    from psohead.networks.renderer import positive_cumprod

    x = (torch.rand(3, 5, 17, 1, dtype=torch.float64) + 1e-3).requires_grad_(True)
    g = torch.randn(3, 5, 17, 1, dtype=torch.float64)
    ours = positive_cumprod(x, -2)
    ref = torch.cumprod(x, -2)
    assert torch.equal(ours, ref)
    assert torch.allclose(torch.autograd.grad(ours, x, g)[0], torch.autograd.grad(ref, x, g)[0], rtol=1e-10)
    assert torch.autograd.gradcheck(lambda t: positive_cumprod(t, 1), (x[:1, :2, :6, 0].detach().requires_grad_(),))


def test_cpu_renderer_skips_samples_outside_the_crop_without_changing_the_render():
    # One tri-grid on the CPU decodes only the samples inside the crop box; planes of batch 2
    # (the same grid twice) take the path that decodes every sample and masks afterwards.
    torch.manual_seed(3)
    planes = torch.randn(1, 3, 6, 8, 8, dtype=torch.float64) * 3
    dec = OSGDecoder(2, output_dim=2, hidden_dim=4).double()
    opts = dict(GeneratorConfig.fixture_small().rendering_kwargs, depth_resolution=8,
                depth_resolution_importance=6, triplane_depth=3)
    c2w = torch.eye(4, dtype=torch.float64)[None].repeat(2, 1, 1)
    c2w[:, 2, 3] = 2.7  # the box's far half along z lies beyond the crop for the ray ends
    c2w[1, 0, 3] = 0.3
    k = torch.tensor([[[1.2, 0, 0.5], [0, 1.2, 0.5], [0, 0, 1]]], dtype=torch.float64).expand(2, -1, -1)
    o, d = RaySampler()(c2w, k, 5)
    d = -d  # towards the box
    coarse = ImportanceRenderer.sample_stratified(o, opts["ray_start"], opts["ray_end"], 8, deterministic=True)
    outside = crop_mask(o.unsqueeze(-2) + coarse * d.unsqueeze(-2), opts["box_warp"], 0.1)
    assert 0.1 < outside.double().mean() < 0.9

    def render(batch):
        p = planes.clone().requires_grad_(True)
        dec.zero_grad()
        rgb, depth, opacity = ImportanceRenderer()(p.expand(batch, -1, -1, -1, -1), dec, o, d, opts,
                                                   deterministic=True)
        (rgb.square().sum() + opacity.sum()).backward()
        return [rgb, depth, opacity, p.grad] + [q.grad.clone() for q in dec.parameters()]

    skipped, full = render(1), render(2)
    for a, b in zip(skipped[:3], full[:3]):
        assert torch.equal(a, b)
    for a, b in zip(skipped[3:], full[3:]):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_cpu_renderer_gives_empty_rays_their_coarse_samples_alone():
    # The bundled model at a photo's camera: about half the rays miss the head. With
    # skip_empty_below they get no importance samples and composite as a coarse-only render
    # (depth_resolution_importance 0) does, gradients included; every other ray is rendered from
    # the very samples it had before.
    from psohead.api import load_generator
    from psohead.camera import label_from_yaw_pitch

    G = load_generator("default")
    c = label_from_yaw_pitch(0.3, 0.1)
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(4)), c)
    seen, decoded, original = {}, [], ImportanceRenderer._empty_rays

    def spy(weights, opts, planes, origins):
        seen["empty"] = original(weights, opts, planes, origins)
        return seen["empty"]

    decode = G.decoder.decode

    def counting(features):
        decoded.append(features.shape[1])
        return decode(features)

    def render(**options):
        decoded.clear()
        planes = G.planes(ws, noise_mode="const").detach().requires_grad_(True)
        out = G.synthesis(ws, c, noise_mode="const", deterministic=True, planes=planes,
                          render_overrides={"ray_start": 2.35, **options})
        return out, planes, sum(decoded)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ImportanceRenderer, "_empty_rays", staticmethod(spy))
        mp.setattr(G.decoder, "decode", counting)
        full, _, n_full = render(skip_empty_below=0.0)
        assert seen["empty"] is None
        coarse, coarse_planes, _ = render(depth_resolution_importance=0)
        fast, fast_planes, n_fast = render(skip_empty_below=1e-4)
    empty = seen["empty"][0].reshape(G.neural_rendering_resolution, -1)
    assert 0.3 < empty.double().mean() < 0.8
    assert n_fast < 0.8 * n_full  # the importance samples of the empty rays were not decoded
    mask = {k: o["image_mask"][0, 0].detach() for k, o in (("full", full), ("coarse", coarse), ("fast", fast))}
    assert torch.allclose(mask["fast"][~empty], mask["full"][~empty], atol=1e-6)
    assert torch.allclose(mask["fast"][empty], mask["coarse"][empty], atol=1e-6)
    assert float(mask["coarse"][empty].max()) < 1e-4 + 2e-3  # (image_mask stretches by 0.1 %)
    # what the importance samples of an empty ray would have found: thin edges on a few rays
    assert float((mask["full"][empty] > 1e-2).double().mean()) < 0.01
    assert torch.allclose(full["image_raw"][..., ~empty], fast["image_raw"][..., ~empty], atol=1e-4)
    # gradients reach the empty rays' samples as in the coarse-only render
    g_fast = torch.autograd.grad(fast["image_mask"][0, 0][empty].sum(), fast_planes)[0]
    g_coarse = torch.autograd.grad(coarse["image_mask"][0, 0][empty].sum(), coarse_planes)[0]
    assert g_coarse.abs().sum() > 0
    assert torch.allclose(g_fast, g_coarse, rtol=1e-4, atol=1e-9)


def test_skipping_empty_rays_is_a_cpu_preset_setting():
    from psohead.errors import InputError
    from psohead.inversion.presets import Rays, resolve_preset

    assert Rays().render_overrides() == {"ray_start": 2.35}
    assert Rays(ray_start=None, skip_empty_below=1e-4).render_overrides() == {"skip_empty_below": 1e-4}
    with pytest.raises(InputError, match="rays.skip_empty_below"):
        resolve_preset("fast", {"rays.skip_empty_below": "0.5"})
