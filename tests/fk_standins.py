"""Stand-in networks with known outputs for FK-Enhance tests (not tests themselves).

``ShapeG`` renders, by ``kind(z)``: ``disc`` a head-sized disc, ``empty`` nothing, ``full`` the
whole frame, ``janus`` a disc whose back view is exactly its front view (a face copied onto the
back). Its colour brightness is ``brightness(z)``; its texture is seeded by the latent and the
side of the head (front / back) the camera sees. ``BrightD`` scores an image by its mean value.
"""
from __future__ import annotations

import numpy as np
import torch

from psohead.camera import yaw_pitch_from_label

KINDS = ("disc", "empty", "full", "janus")


def kind(z) -> str:
    return KINDS[int(abs(float(z[0])) * 1000) % len(KINDS)]


def brightness(z) -> float:
    return float(np.tanh(float(z[1]))) * 0.5


class ShapeG(torch.nn.Module):
    z_dim = 8
    img_resolution = 64
    neural_rendering_resolution = 32

    def __init__(self, fail_after_calls: int | None = None):
        super().__init__()
        self.calls = 0
        self.fail_after_calls = fail_after_calls

    def mapping(self, z, c, truncation_psi=1, truncation_cutoff=None):
        return z[:, None, :].repeat(1, 2, 1)

    def apply_delta_c(self, z, c, truncation_psi=1, truncation_cutoff=None):
        return c, torch.zeros(len(z), 3)

    def synthesis(self, ws, c, noise_mode="const", deterministic=False):
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise KeyboardInterrupt  # a killed run
        self.calls += 1
        r, big = self.neural_rendering_resolution, self.img_resolution
        yy, xx = np.mgrid[:r, :r]
        disc = ((yy - r * 0.55) ** 2 + (xx - r / 2) ** 2 < (r * 0.3) ** 2).astype(np.float32)
        back = yaw_pitch_from_label(c)[0].abs() > np.pi / 2
        images, masks = [], []
        for i in range(len(ws)):
            z = ws[i, 0].numpy()
            k = kind(z)
            m = {"disc": disc, "janus": disc, "empty": np.zeros_like(disc), "full": np.ones_like(disc)}[k]
            side = 0 if k == "janus" else int(back[i])
            seed = int(abs(float(z[2])) * 1e6) * 2 + side
            tex = torch.rand(3, big, big, generator=torch.Generator().manual_seed(seed)) * 0.6
            tex -= tex.mean()  # the image mean is exactly the brightness
            images.append(tex + brightness(z))
            masks.append(torch.from_numpy(m)[None] * 1.002 - 0.001)
        image = torch.stack(images)
        return {"image": image, "image_raw": image[:, :, ::2, ::2], "image_mask": torch.stack(masks)}


class BrightD(torch.nn.Module):
    def forward(self, img, c):
        assert len(img["image"]) <= 4  # scored in minibatch-std groups
        return img["image"].mean([1, 2, 3])[:, None]
