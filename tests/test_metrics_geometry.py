import numpy as np
import pytest
import trimesh

from psohead.errors import InputError
from psohead.metrics.geometry import chamfer_distance, depth_error


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
