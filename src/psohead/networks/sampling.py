"""Random heads of a generator: seed -> z -> (w, camera offset), as the official sampler does."""
from __future__ import annotations

import numpy as np
import torch

from ..camera import label_from_yaw_pitch


def seed_z(seed: int, z_dim: int, device=None) -> torch.Tensor:
    """The latent z [1, z_dim] of a seed (numpy's RandomState, like the official scripts), so a
    seed names the same head in ``psohead generate``, ``render --seed`` and the official code."""
    return torch.from_numpy(np.random.RandomState(seed).randn(1, z_dim)).float().to(device)


@torch.no_grad()
def map_latents(G, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(ws [N,num_ws,w_dim], camera offset delta [N,3]) of latents z [N, z_dim], both from the
    frontal conditioning label: add delta to any camera to render the head where it belongs."""
    frontal = label_from_yaw_pitch(0.0).to(z.device).expand(len(z), -1)
    trunc = dict(truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
    ws = G.mapping(z, frontal, **trunc)
    _, delta = G.apply_delta_c(z, frontal, **trunc)
    return ws, delta
