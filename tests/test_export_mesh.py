"""Marching cubes on an analytic sphere density, vertex colours, crops, mesh files."""
import math

import numpy as np
import pytest
import torch
import trimesh

from export_standins import SphereG
from psohead.errors import InputError
from psohead.export.mesh import (DensityGrid, MeshError, activate, auto_level, crop_mask, extract_mesh,
                                 mesh_from_grid, sample_density, sample_head_density, write_mesh)

WS = torch.zeros(1, 14, 32)


@pytest.fixture(scope="module")
def sphere_mesh():
    G = SphereG()
    return G, extract_mesh(G, WS, resolution=64, level=G.peak / 2, progress=False, chunk_size=50_000)


def test_activate_matches_softplus():
    x = np.array([-20.0, 0.0, 1.0, 30.0])
    assert activate(x) == pytest.approx(np.log1p(np.exp(x - 1)), rel=1e-6)
    assert torch.allclose(activate(torch.tensor(x)), torch.log1p(torch.exp(torch.tensor(x) - 1)))


def test_grid_layout_matches_world_coordinates():
    G = SphereG()
    grid = sample_density(G, WS, resolution=9, chunk_size=100, progress=False)  # chunks split rows
    axis = grid.axis()
    assert axis[0] == pytest.approx(-0.5) and axis[-1] == pytest.approx(0.5)
    pts = torch.tensor(np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1), dtype=torch.float32)
    expect = G.density(pts)[..., 0].numpy()
    assert np.allclose(activate(grid.sigma), expect, rtol=1e-3, atol=1e-4)


def test_sphere_mesh_is_watertight_with_the_right_radius(sphere_mesh):
    G, mesh = sphere_mesh
    assert mesh.is_watertight and mesh.is_winding_consistent and len(mesh.faces) > 1000
    r = np.linalg.norm(mesh.vertices - G.center.numpy(), axis=1)
    voxel = 1.0 / 63
    assert abs(r.mean() - G.radius) < 0.1 * voxel and r.std() < 0.25 * voxel
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * G.radius ** 3, rel=0.02)   # outward normals
    assert mesh.metadata["iso_level"] == pytest.approx(G.peak / 2)


def test_vertex_colours_come_from_features_through_torgb(sphere_mesh):
    G, mesh = sphere_mesh
    rgba = mesh.visual.vertex_colors
    assert rgba.shape == (len(mesh.vertices), 4) and (rgba[:, 3] == 255).all()
    rel = np.clip((mesh.vertices - G.center.numpy()) / G.radius, -1, 1)
    expect = np.clip(rel * 127.5 + 128, 0, 255)
    assert np.abs(rgba[:, :3].astype(float) - expect).max() <= 1.0


@pytest.mark.parametrize("peak,width", [(200.0, 0.01), (50.0, 0.004), (5000.0, 0.004)])
def test_auto_level_puts_the_surface_where_renders_see_it(peak, width):
    # A ray through the centre reaches transmittance 1/2 at distance s outside the sphere with
    # peak*width*softplus(-s/width) = ln 2 (s < 0: inside). Oblique rays cross more skin and stop a
    # little farther out, so the auto surface lies at radius + s or slightly beyond, whatever the
    # density scale.
    G = SphereG(peak=peak, width=width)
    mesh = extract_mesh(G, WS, resolution=64, level="auto", colors=False, progress=False)
    s = -width * math.log(math.expm1(math.log(2) / (peak * width)))
    r = np.linalg.norm(mesh.vertices - G.center.numpy(), axis=1).mean()
    voxel = 1.0 / 63
    assert mesh.is_watertight
    assert G.radius + s - 0.3 * voxel < r < G.radius + s + 0.5 * voxel


def test_keep_largest_drops_floaters_and_crop_removes_border():
    G = SphereG(radius=0.2, center=(0.0, 0.0, 0.0))
    grid = sample_density(G, WS, resolution=48, progress=False)
    ax = grid.axis()
    blob = (np.abs(ax[:, None, None] - 0.3) < 0.05) & (np.abs(ax[None, :, None] - 0.3) < 0.05) & (
        np.abs(ax[None, None, :] - 0.3) < 0.05)
    grid = DensityGrid(np.where(blob, 100.0, grid.sigma).astype(np.float32), grid.box)
    both = extract_mesh(G, WS, grid=grid, level=50, keep_largest=False, colors=False)
    one = extract_mesh(G, WS, grid=grid, level=50, keep_largest=True, colors=False)
    assert len(both.split(only_watertight=False)) == 2 and len(one.split(only_watertight=False)) == 1
    assert np.linalg.norm(one.vertices, axis=1).max() < 0.25
    # A blob outside the renderer's crop (|x| > box/2 - 0.1) is removed before meshing.
    edge = np.abs(ax - 0.45) < 0.04
    outside = DensityGrid(np.broadcast_to(np.where(edge[:, None, None], 100.0, -20.0), (48,) * 3).astype(np.float32), 1.0)
    assert not crop_mask(outside, "render")[edge].any()
    with pytest.raises(MeshError):
        extract_mesh(G, WS, grid=outside, level=50, colors=False)
    assert crop_mask(grid, "official").sum() < crop_mask(grid, "render").sum() < grid.sigma.size
    with pytest.raises(InputError, match="unknown crop"):
        crop_mask(grid, "wrong")


def test_empty_field_has_no_auto_level():
    with pytest.raises(MeshError, match="no opaque"):
        auto_level(np.zeros((8, 8, 8), np.float32), 0.1)


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_mesh_files_load_back(sphere_mesh, tmp_path, suffix):
    _, mesh = sphere_mesh
    path = write_mesh(mesh, tmp_path / f"head{suffix}")
    back = trimesh.load(path, force="mesh", process=False)
    assert len(back.faces) == len(mesh.faces)
    assert np.allclose(np.sort(back.vertices, axis=0), np.sort(mesh.vertices, axis=0), atol=1e-5)
    if suffix == ".glb":   # a GLB with a material: trimesh keeps COLOR_0 as a vertex attribute
        (geom,) = trimesh.load(path, process=False).geometry.values()
        colours = geom.visual.vertex_attributes["color"]
    else:
        colours = back.visual.vertex_colors
    assert colours.shape[0] == len(back.vertices) and colours[:, 0].std() > 10   # colours survived
    order = np.lexsort(back.vertices.T)
    expect = mesh.visual.vertex_colors[np.lexsort(mesh.vertices.T)]
    if suffix != ".obj":   # OBJ stores colours as 4-decimal fractions
        assert np.array_equal(colours[order][:, :3], expect[:, :3])
    if suffix != ".obj":          # OBJ merges vertices differently; PLY/GLB keep them as written
        assert len(back.vertices) == len(mesh.vertices)
    assert [p.name for p in tmp_path.iterdir()] == [f"head{suffix}"]
    with pytest.raises(InputError, match="must end in"):
        write_mesh(mesh, tmp_path / "head.stl")


def test_head_density_gives_the_full_grids_surface_at_a_fraction_of_the_points():
    G = SphereG(radius=0.25, center=(0.02, 0.05, -0.03))
    full = sample_density(G, WS, resolution=129, progress=False)
    calls, points = [], []
    query = G.sample_mixed
    G.sample_mixed = lambda coords, *a, **k: points.append(coords.shape[1]) or query(coords, *a, **k)
    fast = sample_head_density(G, WS, resolution=129, progress=calls.append)
    a, b = mesh_from_grid(full), mesh_from_grid(fast)
    assert a.metadata["iso_level"] == pytest.approx(b.metadata["iso_level"], rel=1e-3)
    assert len(a.faces) == len(b.faces)
    assert np.abs(np.sort(a.vertices, 0) - np.sort(b.vertices, 0)).max() < 1e-4
    assert sum(points) < 0.3 * 129 ** 3              # only a shell round the surface at full resolution
    assert calls and calls[-1].stage == "mesh" and calls[-1].step == calls[-1].total
