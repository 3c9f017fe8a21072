"""The rasteriser against independent truth: point-in-triangle coverage, nearest-surface depth
test, perspective-correct interpolation against the generator's own rays, textured rendering."""
import numpy as np
import pytest
import torch
import trimesh

from psohead.camera import label_from_yaw_pitch, split_label
from psohead.export.raster import (FRONT_FACING, Camera, _planes, interpolate, perspective_bary, rasterize,
                                   rasterize_view, render_mesh)
from psohead.networks.renderer import RaySampler


def cross2(a, b):
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def test_coverage_is_the_pixel_centres_inside_each_triangle():
    rng = np.random.default_rng(0)
    xy = torch.tensor(rng.uniform(-3, 23, (30, 2)), dtype=torch.float32)
    faces = torch.tensor(rng.integers(0, 30, (12, 3)))
    frags = rasterize(xy, faces, (17, 20))
    # independent truth: a centre is inside a triangle if it is on the same side of all three edges
    ys, xs = np.mgrid[0:17, 0:20] + 0.5
    p = np.stack([xs, ys], -1).reshape(-1, 2)
    expect = np.full(len(p), -1)
    for k in range(len(faces) - 1, -1, -1):  # the lowest index wins, so fill in reverse
        a, b, c = xy.numpy()[faces[k].numpy()].astype(np.float64)
        area = cross2(b - a, c - a)
        if abs(area) < 1e-9:
            continue
        e = [cross2(v1 - v0, p - v0) * np.sign(area) for v0, v1 in ((a, b), (b, c), (c, a))]
        inside = (e[0] > 1e-6) & (e[1] > 1e-6) & (e[2] > 1e-6)
        expect[inside] = k
    got = frags.face.reshape(-1).numpy()
    sure = expect >= 0
    assert np.array_equal(got[sure], expect[sure])     # strictly inside: the same triangle
    assert (got[~sure] == -1).mean() > 0.97            # outside everything (edge ties aside)
    # barycentrics reproduce the pixel centre
    m = frags.covered.reshape(-1)
    tri = xy[faces[frags.face.reshape(-1)[m]]]
    back = (frags.bary.reshape(-1, 3)[m].unsqueeze(-1) * tri).sum(1)
    assert torch.allclose(back, torch.tensor(p[m.numpy()], dtype=torch.float32), atol=1e-3)


def test_nearest_triangle_wins():
    xy = torch.tensor([[0, 0], [16, 0], [0, 16], [0, 0], [16, 0], [16, 16]], dtype=torch.float32)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    near_second = torch.tensor([2.0, 2.0, 2.0, 1.0, 1.0, 1.0])
    frags = rasterize(xy, faces, (16, 16), depth=near_second)
    both = (frags.face >= 0)
    ys, xs = np.mgrid[0:16, 0:16] + 0.5
    in_first = torch.tensor(xs + ys <= 16)
    in_second = torch.tensor(xs >= ys)  # its edges included
    assert (frags.face[in_second] == 1).all()
    assert (frags.face[in_first & ~in_second] == 0).all()
    assert both.sum() == (in_first | in_second).sum()


def test_perspective_interpolation_matches_the_generators_rays():
    """Points of a tilted plane interpolated at each pixel lie where the pixel's ray meets it."""
    label = label_from_yaw_pitch(0.4, 0.2)
    res = 48
    cam = Camera.from_label(label[0], res)
    # a quad in the plane through the origin with normal n, big enough to fill the view
    n = torch.tensor([0.3, 0.2, 1.0])
    n = n / n.norm()
    u = torch.linalg.cross(n, torch.tensor([0.0, 1.0, 0.0]))
    u = u / u.norm()
    w = torch.linalg.cross(n, u)
    corners = torch.stack([-u - w, u - w, u + w, -u + w]) * 0.6
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    frags, bary = rasterize_view(corners, faces, cam)
    points = interpolate(corners, faces, frags, bary)
    c2w, k = split_label(label)
    origins, dirs = RaySampler()(c2w, k, res)
    t = -(origins[0] @ n) / (dirs[0] @ n)
    expect = (origins[0] + t[:, None] * dirs[0]).reshape(res, res, 3)
    m = frags.covered
    assert m.float().mean() > 0.5
    assert (points[m] - expect[m]).norm(dim=-1).max() < 1e-4
    # screen-space barycentrics would be wrong by far more on this oblique plane
    flat = interpolate(corners, faces, frags)
    assert (flat[m] - expect[m]).norm(dim=-1).max() > 1e-3


def test_front_faces_have_the_documented_sign():
    sphere = trimesh.creation.icosphere(3, radius=0.3)
    v = torch.tensor(sphere.vertices, dtype=torch.float32)
    f = torch.tensor(sphere.faces)
    cam = Camera.from_label(label_from_yaw_pitch(1.0, 0.3)[0], 64)
    xy, z = cam.project(v)
    frags = rasterize(xy, f, (64, 64), depth=z)
    tri = xy[f[frags.face[frags.covered]]]
    _, area = _planes(tri, tri.min(1).values, None)
    assert (torch.sign(area) == FRONT_FACING).all()
    culled, _ = rasterize_view(v, f, cam, closed=True)
    assert torch.equal(culled.face, frags.face)
    # the perspective-correct barycentrics of a covered pixel sum to 1
    b = perspective_bary(frags, f, z)[frags.covered]
    assert torch.allclose(b.sum(-1), torch.ones(len(b)), atol=1e-5)


def test_textured_quad_shows_its_texture():
    """A square filling a frontal view exactly shows a 4x4 checker texture pixel for pixel."""
    label = label_from_yaw_pitch(0.0, 0.0, lookat=(0, 0, 0))
    res = 32
    cam = Camera.from_label(label[0], res)
    half = 2.7 / 4.2647 / 2  # the half-width the view sees at the origin's depth
    # camera at +z looking at -z: image right is world +x (the subject's left), image down is world -y
    corners = torch.tensor([[-half, half, 0], [half, half, 0], [half, -half, 0], [-half, -half, 0]])
    uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    checker = torch.tensor(np.kron((np.indices((4, 4)).sum(0) % 2), np.ones((8, 8))), dtype=torch.float32)
    tex = checker[None].expand(3, -1, -1)
    img, cov = render_mesh(corners, faces, cam, uv=uv, texture=tex, background=0.5, supersample=1)
    assert cov.min() == 1
    assert torch.allclose(img[0], checker, atol=1e-4)
    # coloured by vertex instead: the interpolated colour, over the background outside
    img2, cov2 = render_mesh(corners * 0.5, faces, cam, colors=torch.ones(4, 3), background=0.25)
    assert torch.allclose(img2, cov2 + (1 - cov2) * 0.25, atol=1e-6)
    assert 0.2 < cov2.mean() < 0.3
    with pytest.raises(ValueError):
        render_mesh(corners, faces, cam, texture=tex)
