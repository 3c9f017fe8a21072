"""psohead: one photo to a view-consistent 360-degree 3D head (PSO-HEAD on the PanoHead tri-grid GAN).

The public API is imported on first use, so ``import psohead`` stays fast::

    import psohead
    rec = psohead.reconstruct("photo.jpg", "out/me")          # one photo, every output
    R = psohead.Reconstructor(network="default")                # load once ...
    rec = R("photo.jpg", "out/me")                              # ... reconstruct many
    G = psohead.load_generator("default")
    label = psohead.camera.label_from_yaw_pitch(0.5)
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "load_generator": "psohead.api", "load_discriminator": "psohead.api", "save_network": "psohead.api",
    "reconstruct": "psohead.inversion.pipeline", "Reconstructor": "psohead.inversion.pipeline",
    "Reconstruction": "psohead.inversion.pipeline", "Preset": "psohead.inversion.presets",
    "resolve_preset": "psohead.inversion.presets", "Progress": "psohead.progress",
    "read_image": "psohead.io.images", "PsoheadError": "psohead.errors",
}
_MODULES = ("camera", "preprocess", "errors", "io", "export", "metrics", "networks")

__all__ = sorted([*_EXPORTS, *_MODULES, "__version__"])


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(f"psohead.{name}")
    else:
        raise AttributeError(f"module 'psohead' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return __all__
