"""What one job runs: ``psohead.Reconstructor`` with the network loaded once at start-up.

The page lets each job pick its preset; a Reconstructor holds one preset, so there is one per
preset asked for, all sharing the generator loaded by the first (a Reconstructor never changes it).
"""
from __future__ import annotations

import threading
from pathlib import Path

from ..progress import Progress

__all__ = ["Pipeline", "Progress"]


class Pipeline:
    """``pipeline(image, out, preset=..., back=..., extra_views=..., progress=callable)``."""

    def __init__(self, network: str = "default", device: str = "auto", preset: str = "fast", **overrides):
        from ..inversion.pipeline import Reconstructor

        self.overrides = {k: v for k, v in overrides.items() if v is not None}
        first = Reconstructor(network, device=device, preset=preset, overrides=self.overrides)
        self.G, self.device = first.G, first.device
        self._by_preset = {preset: first}
        self._lock = threading.Lock()

    def reconstructor(self, preset: str):
        from ..inversion.pipeline import Reconstructor

        with self._lock:
            if preset not in self._by_preset:
                self._by_preset[preset] = Reconstructor(self.G, device=self.device, preset=preset,
                                                        overrides=self.overrides)
            return self._by_preset[preset]

    def __call__(self, image, out: str | Path, *, preset: str = "fast", back="auto", extra_views=(),
                 progress=None):
        return self.reconstructor(preset)(image, out, back=back, extra_views=tuple(extra_views),
                                          progress=progress or False)
