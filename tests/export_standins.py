"""Analytic stand-ins for the generator API the export code calls (not tests themselves).

``SphereG`` has the official entry points: ``sample_mixed`` gives a sphere of known radius and
centre (activated density ``peak * sigmoid((radius - d) / width)``) with features whose first three
channels are (x, y, z) / radius; ``torgb`` keeps those three channels; ``synthesis`` paints each
image a flat colour given by the camera position, so tests can tell which camera rendered it.
"""
from __future__ import annotations

import torch

from psohead.camera import RADIUS


def inverse_softplus(f: torch.Tensor) -> torch.Tensor:
    f = f.clamp_min(1e-6)
    return f + torch.log(-torch.expm1(-f))


class SphereG:
    def __init__(self, radius=0.3, center=(0.0, 0.05, 0.0), box=1.0, peak=200.0, width=0.01, res=16):
        self.radius, self.peak, self.width, self.res = radius, peak, width, res
        self.center = torch.tensor(center)
        self.rendering_kwargs = {"box_warp": box, "ray_start": 2.25, "ray_end": 3.3}
        self.num_ws, self.w_dim = 14, 32
        self.calls = []

    def density(self, coords):
        d = (coords - self.center).norm(dim=-1, keepdim=True)
        return self.peak * torch.sigmoid((self.radius - d) / self.width)

    def sample_mixed(self, coords, dirs, ws, noise_mode="const"):
        assert coords.ndim == 3 and coords.shape == dirs.shape and ws.ndim == 3
        feats = torch.zeros(*coords.shape[:2], 32)
        feats[..., :3] = ((coords - self.center) / self.radius).clamp(-1, 1)
        return {"sigma": 1 + inverse_softplus(self.density(coords)), "rgb": feats}

    def torgb(self, x, w, fused_modconv=False):
        assert x.ndim == 4 and x.shape[1] == 32 and w.ndim == 2
        return x[:, :3]

    def synthesis(self, ws, c, neural_rendering_resolution=None, noise_mode="const", deterministic=False):
        assert ws.shape[0] in (1, c.shape[0]) and c.shape[1] == 25
        self.calls.append(c.shape[0])
        n, r = c.shape[0], neural_rendering_resolution or self.res
        origin = c[:, [3, 7, 11]] / RADIUS                        # camera position, about unit length
        image = origin[:, :, None, None].expand(n, 3, 2 * r, 2 * r).clone()
        dist = c[:, [3, 7, 11]].norm(dim=1)[:, None, None, None]
        return {"image": image, "image_raw": image[:, :, ::2, ::2],
                "image_depth": dist.expand(n, 1, r, r).clone(),
                "image_mask": torch.ones(n, 1, r, r)}
