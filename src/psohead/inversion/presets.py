"""Named settings for a whole reconstruction (step counts, losses, output sizes).

``official`` follows spec section 6 (500 + 500 steps, official loss weights, ray_start 2.35)
with the quirks fixed (per-sample w_std, stage 2 gets its own step count). ``fast``: fewer steps
with the same schedule shape, deterministic ray samples (less noise per step, so fewer steps are
needed; on CUDA it also lets every step replay as a CUDA graph), +-45 degree prior back views
in the photo's hair colour, averaged with their mirror images and blended 10 % towards the mean
latent's back (``prior_shrink``), smaller video and mesh.
``quality`` = ``fast`` with the prior averaged over four stage-1 members (``prior_ensemble``) and
blended towards the mean latent's back per pixel, most where the members disagree
(``prior_shrink_spread``): better front and back on the fidelity benchmark, for a stage 1 that
costs 1.7-2x on the GPU (official architecture) and 4.3x on the CPU.
``auto`` = ``fast`` on every device: the fidelity benchmark finds it as good on the front and
better on the back than ``official`` (BENCHMARKS.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from ..errors import InputError
from .targets import BACK_WEIGHT


@dataclass(frozen=True)
class Preset:
    name: str
    stage1_steps: int
    stage2_steps: int
    stage2_lr: float = 3e-4
    deterministic: bool = False  # fixed ray samples while optimising (official: random)
    official_w_std: bool = False  # True = reproduce the sqrt(2)-inflated exploration noise
    w_avg_samples: int = 10000
    ray_start: float | None = 2.35  # the official projector's override; None keeps the network's
    back_augment_degrees: float = 0.0  # extra prior back views at yaw pi +- this
    back_augment_alternate: bool = False  # the two take turns, one per stage-2 step (same mean weight)
    prior_weight: float = BACK_WEIGHT  # loss weight of the prior back views together (official back label's)
    prior_colour_match: bool = False  # shift the prior's head to the hair colour the photo shows
    prior_mirror_average: bool = False  # average the prior with its mirror image (symmetric part)
    prior_ensemble: int = 1  # stage-1 latents optimised together whose prior renders are averaged
    prior_shrink: float = 0.0  # blend of the prior towards the mean latent's back (same cameras and colour)
    prior_shrink_spread: float = 0.0  # > 0: that blend per pixel, scale of the members' spread (replaces prior_shrink)
    video_frames: int = 240
    video_fps: int = 60
    mesh_resolution: int = 256
    render_batch: int | None = None  # views per render call for the outputs; None: 8 on CUDA, 2 on CPU
    cuda_graphs: bool = True  # replay each optimisation step as a CUDA graph on CUDA devices

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "official": Preset("official", 500, 500),
    "fast": Preset("fast", 120, 80, deterministic=True, w_avg_samples=2000, back_augment_degrees=45.0,
                   back_augment_alternate=True, prior_colour_match=True, prior_mirror_average=True, prior_shrink=0.1,
                   video_frames=72, video_fps=24, mesh_resolution=128),
}
PRESETS["quality"] = replace(PRESETS["fast"], name="quality", prior_ensemble=4, prior_shrink=0.0,
                             prior_shrink_spread=4.0)
PRESET_NAMES = ("auto", *PRESETS)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available")
    return dev


def get_preset(name: str | Preset = "auto", **overrides) -> Preset:
    """A preset by name (``auto`` = ``fast``) with optional field overrides (None = keep)."""
    if isinstance(name, Preset):
        preset = name
    else:
        if name not in PRESET_NAMES:
            raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
        preset = PRESETS["fast" if name == "auto" else name]
    changes = {k: v for k, v in overrides.items() if v is not None}
    for key, low in (("stage1_steps", 0), ("stage2_steps", 0), ("video_frames", 1), ("mesh_resolution", 8),
                     ("prior_ensemble", 1)):
        if key in changes and int(changes[key]) < low:
            raise InputError(f"{key} must be >= {low}, got {changes[key]}")
    if "prior_shrink" in changes and not 0 <= float(changes["prior_shrink"]) < 1:
        raise InputError(f"prior_shrink must be in [0, 1), got {changes['prior_shrink']}")
    if "prior_shrink_spread" in changes and float(changes["prior_shrink_spread"]) < 0:
        raise InputError(f"prior_shrink_spread must be >= 0, got {changes['prior_shrink_spread']}")
    preset = replace(preset, **changes) if changes else preset
    if preset.prior_shrink_spread > 0 and preset.prior_shrink > 0:
        raise InputError("prior_shrink and prior_shrink_spread are two ways to blend the prior: set one to 0")
    if preset.prior_shrink_spread > 0 and preset.prior_ensemble < 2:
        raise InputError("prior_shrink_spread needs stage-1 members to measure their spread: prior_ensemble >= 2")
    return preset
