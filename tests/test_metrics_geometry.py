import numpy as np
import pytest
import trimesh

from psohead.errors import InputError
from psohead.metrics.geometry import chamfer_distance, cranial_ratio, depth_error, head_proportions, mirror_chamfer


def test_depth_error_analytic():
    t = np.full((4, 4), 2.0)
    p = t + 0.1
    p[0] = 5.0                                              # a wrong row, masked out below
    mask = np.ones((4, 4), np.uint8) * 255
    mask[0] = 0
    assert depth_error(p, t, mask) == pytest.approx(0.1)
    assert depth_error(p, t) == pytest.approx((4 * 3.0 + 12 * 0.1) / 16)
    assert depth_error(t * 1.5, t, scale_invariant=True) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(InputError, match="empty"):
        depth_error(p, t, np.zeros((4, 4)))
    with pytest.raises(InputError):
        depth_error(p, t[:3])


def test_chamfer_of_point_sets_and_concentric_spheres():
    a = np.array([[0.0, 0, 0], [1, 0, 0]])
    assert chamfer_distance(a, a) == 0.0
    assert chamfer_distance(a, a + [0, 0.5, 0]) == pytest.approx(0.5)
    # Concentric spheres of radius 1 and 1.1: every nearest distance is about 0.1.
    s1 = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    s2 = trimesh.creation.icosphere(subdivisions=4, radius=1.1)
    assert chamfer_distance(s1, s2, samples=20000) == pytest.approx(0.1, abs=0.005)
    with pytest.raises(InputError):
        chamfer_distance(np.zeros((0, 3)), a)


def _ellipsoid(a, b, c, centre=(0.0, 0.0, 0.0)):
    m = trimesh.creation.icosphere(subdivisions=5, radius=1.0)
    m.apply_scale((a, b, c))
    m.apply_translation(centre)
    return m


def test_cranial_ratio_of_ellipsoids_is_their_radius_ratio():
    # any horizontal slab of an ellipsoid is an ellipse with the same x/z axis ratio a/c
    for a, c, brow in ((0.075, 0.095, -0.02), (0.08, 0.08, 0.03), (0.06, 0.1, 0.0)):
        m = cranial_ratio(_ellipsoid(a, 0.1, c), brow_y=brow)
        assert m.ratio == pytest.approx(a / c, rel=0.01)
        widest = 2 * a * np.sqrt(1 - (max(brow, 0) / 0.1) ** 2)  # widest slab: the lowest one above 0
        assert m.breadth == pytest.approx(widest, rel=0.02)
        assert m.length == pytest.approx(widest * c / a, rel=0.02)


def test_cranial_ratio_ignores_what_lies_below_the_brows():
    head = _ellipsoid(0.075, 0.1, 0.095)
    nose = trimesh.creation.box(extents=(0.03, 0.05, 0.06))
    nose.apply_translation((0, -0.05, 0.11))  # a face part in front, all of it under brow height 0
    both = trimesh.util.concatenate([head, nose])
    assert cranial_ratio(both, brow_y=0.0).ratio == pytest.approx(0.075 / 0.095, rel=0.01)
    # the same part moved up across the brows: the widest slab now reaches its front face at z 0.14
    nose.apply_translation((0, 0.08, 0))
    high = trimesh.util.concatenate([head, nose])
    assert cranial_ratio(high, brow_y=0.0).ratio == pytest.approx(0.15 / (0.095 + 0.14), rel=0.01)
    with pytest.raises(InputError, match="above brow"):
        cranial_ratio(head, brow_y=0.2)


def test_mirror_chamfer_zero_when_symmetric_and_equal_to_the_offset_of_a_shifted_sphere():
    assert mirror_chamfer(_ellipsoid(0.075, 0.1, 0.095)) < 1e-3
    # a sphere of radius r moved d off the plane: its mirror is moved by 2d; nearest distance
    # 2d|cos(theta)| averages to d over the sphere (d << r)
    shifted = _ellipsoid(0.1, 0.1, 0.1, centre=(0.004, 0, 0))
    assert mirror_chamfer(shifted) == pytest.approx(0.004, rel=0.1)


def test_head_proportions_from_known_landmarks():
    head = _ellipsoid(0.075, 0.1, 0.095)
    lm = np.zeros((68, 3))
    lm[17:27, 1] = 0.0  # brows at the equator: breadth 0.15, length 0.19
    lm[36], lm[45] = (-0.045, -0.01, 0.09), (0.045, -0.01, 0.09)  # 0.09 apart
    lm[27], lm[8] = (0, -0.01, 0.1), (0, -0.13, 0.08)
    p = head_proportions(head, lm)
    assert p.breadth_per_biocular == pytest.approx(0.15 / 0.09, rel=0.02)
    assert p.length_per_face_height == pytest.approx(0.19 / np.hypot(0.12, 0.02), rel=0.02)
    with pytest.raises(InputError):
        head_proportions(head, lm[:5])
