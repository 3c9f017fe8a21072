"""A tiny random TriGridGenerator for inversion tests (SR 2X: 32 -> 128 px renders)."""
import torch

from psohead.camera import label_from_yaw_pitch
from psohead.networks.config import GeneratorConfig
from psohead.networks.generator import TriGridGenerator


def tiny_generator(seed: int = 0, triplane_size: int = 32, depth: int = 8, neural: int = 32) -> TriGridGenerator:
    """``triplane_size``, ``depth`` (samples per ray, coarse and fine) and ``neural`` (rendering
    resolution) smaller for tests that render many samples."""
    cfg = GeneratorConfig.fixture_small()
    rk = dict(cfg.rendering_kwargs, triplane_size=triplane_size, depth_resolution=depth,
              depth_resolution_importance=depth, superresolution_module="SuperresolutionHybrid2X")
    cfg = cfg.replace(img_resolution=128, neural_rendering_resolution=neural, rendering_kwargs=rk, z_dim=32,
                      channel_base=256, channel_max=8,
                      sr_kwargs={"channel_base": 256, "channel_max": 8, "fused_modconv_default": "inference_only"})
    torch.manual_seed(seed)
    return TriGridGenerator.from_config(cfg).eval()


@torch.no_grad()
def rendered_target(G, seed: int = 1, yaw: float = 0.0):
    """(image [1,3,H,W], label [1,25], ws) of a random head seen at ``yaw``."""
    c = label_from_yaw_pitch(yaw)
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed))
    ws = G.mapping(z, c)
    return G.synthesis(ws, c, noise_mode="const", deterministic=True)["image"], c, ws
