"""Export functions on the tiny official-format network (slow on CPU)."""
import numpy as np
import pytest
import torch

from conftest import require_shared
from psohead.camera import label_from_yaw_pitch
from psohead.export.mesh import vertex_colors


@pytest.mark.slow
def test_vertex_colours_agree_with_the_raw_render_where_the_surface_is_seen():
    from psohead.api import load_generator

    G = load_generator(require_shared("fixtures/panohead_small_official_format.pkl"))
    torch.manual_seed(0)
    c = label_from_yaw_pitch(0.0)
    res = 24
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim), c, truncation_psi=0.7)
        out = G.synthesis(ws, c, neural_rendering_resolution=res, noise_mode="const", deterministic=True)
        origins, dirs = G.ray_sampler(c[:, :16].reshape(-1, 4, 4), c[:, 16:25].reshape(-1, 3, 3), res)
    # Surface point of each pixel: the expected ray depth along its ray.
    pts = (origins[0] + out["image_depth"].reshape(-1, 1) * dirs[0]).numpy().astype(np.float32)
    seen = out["image_mask"].reshape(-1).numpy() > 0.9
    assert seen.sum() > 50
    raw = (out["image_raw"][0].reshape(3, -1).T * 127.5 + 128).clamp(0, 255).numpy()[seen]
    vc = vertex_colors(G, ws, pts[seen])[:, :3].astype(float)
    diff = np.abs(raw - vc).mean()
    shuffled = np.abs(raw - vc[np.random.default_rng(0).permutation(len(vc))]).mean()
    assert diff < 1.0 and diff < shuffled / 3
    varying = [ch for ch in range(3) if raw[:, ch].std() > 1]
    assert varying and all(np.corrcoef(raw[:, ch], vc[:, ch])[0, 1] > 0.9 for ch in varying)


@pytest.mark.slow
def test_density_grid_matches_sample_mixed():
    from psohead.api import load_generator
    from psohead.export.mesh import sample_density

    G = load_generator(require_shared("fixtures/panohead_small_official_format.pkl"))
    torch.manual_seed(1)
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim), label_from_yaw_pitch(0.0), truncation_psi=0.7)
        grid = sample_density(G, ws, resolution=9, chunk_size=200, progress=False)   # 4 chunks
        ax = torch.linspace(-0.5, 0.5, 9)
        pts = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(1, -1, 3)
        dirs = torch.zeros_like(pts)
        dirs[..., 2] = -1
        ref = G.sample_mixed(pts, dirs, ws, noise_mode="const")["sigma"].reshape(9, 9, 9).numpy()
    assert np.allclose(grid.sigma, ref, atol=1e-4, rtol=1e-4)
