"""The fast synthetic-head tracer: SDF primitives vs analytic distances, exactness of the shortcuts
(skipped parts, compaction schedule, cone pass) and agreement with the plain full march."""
import math

import numpy as np
import pytest
import torch

from psohead.camera import label_from_yaw_pitch, split_label
from psohead.synth import head as H
from psohead.synth import render as R
from psohead.synth.face import face_geometry
from psohead.synth.params import COL, SCENE_KEYS, sample_head, sample_scene, stack
from psohead.synth.sdf import capsule, ellipsoid, length3, smin, sphere

# one head of every hair style (bald, buzz, short, bob, long, bun, ponytail, curly)
STYLE_SEEDS = (52, 0, 3, 8, 15, 1, 2, 4)


def _scene(n):
    return stack([sample_scene(0, i) for i in range(n)], SCENE_KEYS)


def _labels(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return label_from_yaw_pitch(torch.rand(n, generator=g) * 2 * math.pi - math.pi, torch.rand(n, generator=g) * 0.6 - 0.3)


def test_style_seeds_cover_every_style():
    assert sorted(sample_head(s)["style"] for s in STYLE_SEEDS) == sorted(
        ("bald", "buzz", "short", "bob", "long", "bun", "ponytail", "curly"))


def test_primitives_match_analytic_distances():
    p = torch.rand(4000, 3) * 2 - 1
    x, y, z = p.t().contiguous().unbind(0)
    centre = torch.tensor([0.1, -0.2, 0.3])
    assert torch.allclose(sphere(x, y, z, tuple(centre.tolist()), 0.25), (p - centre).norm(dim=-1) - 0.25, atol=1e-6)
    assert torch.allclose(ellipsoid(x, y, z, 1 / 0.4, 1 / 0.4, 1 / 0.4), p.norm(dim=-1) - 0.4, atol=1e-6)
    on_axis = torch.tensor([0.7, 1.3, 2.0])  # exact on an axis: |p| - radius
    assert torch.allclose(ellipsoid(on_axis, 0 * on_axis, 0 * on_axis, 1 / 0.5, 1 / 0.2, 1 / 0.3), on_axis - 0.5)
    a, b = (0.0, -0.1, 0.2), (0.3, 0.4, -0.2)
    seg = torch.tensor(a) + torch.linspace(0, 1, 20001)[:, None] * (torch.tensor(b) - torch.tensor(a))
    brute = torch.cdist(p, seg).amin(-1) - 0.05
    assert torch.allclose(capsule(x, y, z, a, b, 0.05), brute, atol=1e-4)
    assert torch.allclose(length3(x, y, z), p.norm(dim=-1), atol=1e-6)


def test_smooth_min_is_the_polynomial_blend_and_exactly_min_when_apart():
    a, b = torch.rand(5000) * 0.2, torch.rand(5000) * 0.2
    k = 0.05
    h = (0.5 + 0.5 * (b - a) / k).clamp(0, 1)
    assert torch.allclose(smin(a, b, k), b + (a - b) * h - k * h * (1 - h), atol=1e-7)
    far = (a - b).abs() >= k
    assert far.any() and torch.equal(smin(a, b, k)[far], torch.minimum(a, b)[far])


def test_canonical_eyes_are_mirror_images():
    g = face_geometry()  # the SDF draws both eyeballs as one sphere at |x|
    assert np.array_equal(g.eye_left * np.array([-1, 1, 1], np.float32), g.eye_right)


def test_per_head_constants_do_not_shadow_parameters():
    names = H.per_head(lambda k: torch.ones(2))
    assert not set(names) & set(COL)
    with pytest.raises(ValueError, match="one head"):
        H.PointParams(torch.zeros(2, len(COL)))


def test_parts_absent_from_a_batch_are_skipped_without_changing_a_distance():
    heads = [sample_head(s) for s in STYLE_SEEDS]
    p = torch.rand(20000, 3) * torch.tensor([0.8, 1.0, 0.8]) - torch.tensor([0.4, 0.6, 0.4])
    for i, h in enumerate(heads):
        alone = H.PointParams(stack([h]), torch.zeros(len(p), dtype=torch.long))
        mixed = H.PointParams(stack([h] + heads), torch.zeros(len(p), dtype=torch.long))  # every part present
        assert torch.equal(H.sdf(p, alone), H.sdf(p, mixed)), h["style"]


def test_image_does_not_depend_on_its_batch():
    heads = [sample_head(s) for s in STYLE_SEEDS]
    labels, scenes, cfg = _labels(8), _scene(8), R.RenderConfig(resolution=32)
    together = R.render(labels, stack(heads), scenes, cfg)
    for i in (0, 4):  # bald (no hair part at all) and long (curtain only) alone
        alone = R.render(labels[i:i + 1], stack(heads[i:i + 1]), scenes[i:i + 1], cfg)
        assert torch.equal(alone.hit[0], together.hit[i])
        for key in ("rgb", "mask", "depth"):  # (vectorised and scalar pow/sin differ in the last bit)
            assert torch.allclose(getattr(alone, key)[0], getattr(together, key)[i], atol=1e-6, rtol=0), key


def test_compaction_schedule_changes_nothing():
    heads = stack([sample_head(s) for s in STYLE_SEEDS[:4]])
    labels, scenes = _labels(4, 1), _scene(4)
    outs = [R.render(labels, heads, scenes, R.RenderConfig(resolution=32, compact_every=k)) for k in (1, 5)]
    assert torch.equal(outs[0].rgb, outs[1].rgb) and torch.equal(outs[0].depth, outs[1].depth)


def test_cone_pass_skips_only_empty_space():
    """Densely sample every segment the cone pass lets rays skip: no surface within 0.5 px."""
    res, heads = 32, [sample_head(s) for s in STYLE_SEEDS]
    labels, table, b = _labels(8, 2), stack(heads), len(heads)
    o, d = R.camera_rays(labels, res)
    d = d.reshape(-1, 3)
    pix = 1.0 / (split_label(labels)[1][:, 0, 0] * res)
    head = torch.arange(b).repeat_interleave(res * res)
    t0, t1, inside = R._bound(o[head], d)
    start, empty = R._cone_pass(o, d, t0, t1, inside, pix, table, b, res, 4, R.RenderConfig(resolution=res))
    end = torch.where(empty, t1, torch.minimum(start, t1))
    sel = (inside & (end > t0)).nonzero().squeeze(1)
    assert sel.numel() > 0.9 * inside.sum() and empty.sum() > 0
    params = H.PointParams(table, head[sel])
    worst = torch.full((sel.numel(),), math.inf)
    for u in torch.linspace(0, 1, 65):
        t = t0[sel] + (end[sel] - t0[sel]) * u
        r = H.sdf(o[head[sel]] + t[:, None] * d[sel], params) / (t * pix[head[sel]])
        worst = torch.minimum(worst, r)
    assert worst.min() > 0.5


def test_fast_tracer_matches_the_full_march():
    """Cone pass + compaction vs every ray marching from the bound entry, compacted every step."""
    heads = stack([sample_head(s) for s in STYLE_SEEDS])
    labels, scenes = _labels(8, 3), _scene(8)
    fast = R.render(labels, heads, scenes, R.RenderConfig(resolution=64))
    full = R.render(labels, heads, scenes, R.RenderConfig(resolution=64, tile=1, compact_every=1))
    fg_fast, fg_full = fast.mask > 0.5, full.mask > 0.5
    assert (fg_fast & fg_full).sum() / (fg_fast | fg_full).sum() > 0.995
    assert (fast.hit == full.hit).float().mean() > 0.998
    assert (fast.rgb - full.rgb).abs().mean() < 1 / 255
    both = fast.hit & full.hit  # hits land anywhere within 0.3 px footprints (0.003) of the surface
    assert ((fast.depth - full.depth).abs()[both] < 0.01).float().mean() > 0.99
