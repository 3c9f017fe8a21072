"""Analytic stand-ins for the generator API the export code calls (not tests themselves).

``SphereG`` has the official entry points: ``sample_mixed`` gives a sphere of known radius and
centre (activated density ``peak * sigmoid((radius - d) / width)``) with features whose first three
channels are (x, y, z) / radius; ``torgb`` keeps those three channels; ``synthesis`` paints each
image a flat colour given by the camera position, so tests can tell which camera rendered it.
``PaintedSphereG`` instead ray-traces its sphere with a painted pattern of known colour
(:func:`painted`), as a generator's renders would show a textured head.
"""
from __future__ import annotations

import torch

from psohead.camera import RADIUS, split_label
from psohead.networks.renderer import RaySampler


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
        self.planes_made = 0

    def planes(self, ws, noise_mode="const"):
        self.planes_made += 1
        return ws  # stands for the tri-grid: synthesis paints from the cameras alone

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

    def synthesis(self, ws, c, neural_rendering_resolution=None, noise_mode="const", deterministic=False,
                  render_overrides=None, planes=None):
        assert ws.shape[0] in (1, c.shape[0]) and c.shape[1] == 25
        self.calls.append(c.shape[0])
        self.overrides = render_overrides
        n, r = c.shape[0], neural_rendering_resolution or self.res
        origin = c[:, [3, 7, 11]] / RADIUS                        # camera position, about unit length
        image = origin[:, :, None, None].expand(n, 3, 2 * r, 2 * r).clone()
        dist = c[:, [3, 7, 11]].norm(dim=1)[:, None, None, None]
        return {"image": image, "image_raw": image[:, :, ::2, ::2],
                "image_depth": dist.expand(n, 1, r, r).clone(),
                "image_mask": torch.ones(n, 1, r, r)}


def painted(points: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """The painted colour [N,3] in [0,1] at sphere points [N,3]: smooth bands along the three axes,
    different on every side (front +z yellowish, back -z bluish), so a texel baked from the wrong view
    or the wrong place gets the wrong colour."""
    d = torch.nn.functional.normalize(points - center, dim=-1)
    return torch.stack((0.5 + 0.4 * torch.sin(2 * d[:, 1] + 0.7 * d[:, 2]),
                        0.5 + 0.4 * torch.cos(2.2 * d[:, 0]),
                        0.5 - 0.4 * d[:, 2]), -1).clamp(0, 1)


class PaintedSphereG(SphereG):
    """SphereG whose renders ray-trace the sphere (its iso-surface) painted with :func:`painted` (or
    ``paint``) over a black background: ``image`` at twice the resolution of the exact ray distance
    ``image_depth`` and the coverage ``image_mask``. Its features (vertex colours) are a flat grey,
    so colours that match the painting can only come from the renders."""

    def __init__(self, paint=painted, **kwargs):
        kwargs.setdefault("width", 0.002)  # a sharp edge, so the mesh lies on the painted sphere
        kwargs.setdefault("radius", 0.25)  # all of it inside the views
        kwargs.setdefault("center", (0.0, 0.02, 0.0))
        super().__init__(**kwargs)
        self.paint = paint
        self.cameras = []  # every label rendered

    def sample_mixed(self, coords, dirs, ws, noise_mode="const"):
        out = super().sample_mixed(coords, dirs, ws, noise_mode)
        out["rgb"][..., :3] = 0.0
        return out

    def trace(self, c: torch.Tensor, res: int):
        """(colour [N,3,res,res] in [0,1], ray distance [N,1,res,res], hit [N,1,res,res])."""
        cam2world, k = split_label(c.float())
        origins, dirs = RaySampler()(cam2world, k, res)
        oc = origins - self.center
        b = (oc * dirs).sum(-1)
        disc = b ** 2 - ((oc ** 2).sum(-1) - self.radius ** 2)
        hit = disc > 0
        t = torch.where(hit, -b - disc.clamp_min(0).sqrt(), torch.full_like(b, 3.3))
        colour = self.paint((origins + t[..., None] * dirs).reshape(-1, 3), self.center).reshape(*t.shape, 3)
        colour = colour * hit[..., None]
        n = c.shape[0]
        return (colour.permute(0, 2, 1).reshape(n, 3, res, res), t.reshape(n, 1, res, res),
                hit.float().reshape(n, 1, res, res))

    def synthesis(self, ws, c, neural_rendering_resolution=None, noise_mode="const", deterministic=False,
                  render_overrides=None, planes=None):
        assert ws.shape[0] in (1, c.shape[0]) and c.shape[1] == 25
        self.calls.append(c.shape[0])
        self.cameras.append(c.detach().cpu())
        self.overrides = render_overrides
        r = neural_rendering_resolution or self.res
        image = self.trace(c, 2 * r)[0] * 2 - 1
        _, depth, mask = self.trace(c, r)
        return {"image": image, "image_raw": image[:, :, ::2, ::2], "image_depth": depth, "image_mask": mask}
