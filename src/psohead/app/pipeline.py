"""What one job runs: ``psohead.Reconstructor`` with the network loaded once at start-up.

The page lets each job pick its preset; a Reconstructor holds one preset, so there is one per
preset asked for, all sharing the generator loaded by the first (a Reconstructor never changes it)
and the encoder, if the network has one (for the ``preview`` preset and a job's first look).
"""
from __future__ import annotations

import threading
from pathlib import Path

from ..errors import PsoheadError
from ..progress import Progress

__all__ = ["Pipeline", "Progress"]


class Pipeline:
    """``pipeline(image, out, preset=..., back=..., extra_views=..., progress=callable)``."""

    def __init__(self, network: str = "default", device: str = "auto", preset: str = "fast", encoder=None,
                 **overrides):
        from ..inversion.pipeline import Reconstructor

        self.overrides = {k: v for k, v in overrides.items() if v is not None}
        first = Reconstructor(network, device=device, preset=preset, encoder=encoder, overrides=self.overrides)
        self.G, self.device = first.G, first.device
        # the later Reconstructors get G itself, not its name: the bundled model's encoder by name
        self._encoder = "default" if encoder is None and first.network == "default" else encoder
        self._by_preset = {preset: first}
        self._lock = threading.Lock()
        self._has_encoder: bool | None = None  # found out on first asking

    def reconstructor(self, preset: str):
        from ..inversion.pipeline import Reconstructor

        with self._lock:
            if preset not in self._by_preset:
                self._by_preset[preset] = Reconstructor(self.G, device=self.device, preset=preset,
                                                        encoder=self._encoder, overrides=self.overrides)
            return self._by_preset[preset]

    @property
    def has_encoder(self) -> bool:
        """Whether the network has an encoder (the ``preview`` preset and first looks need one);
        found out once, not for every job."""
        if self._has_encoder is None:
            try:
                self.reconstructor("preview")
                self._has_encoder = True
            except PsoheadError:  # none for this network, or a damaged encoder file: no first look
                self._has_encoder = False
        return self._has_encoder

    def __call__(self, image, out: str | Path, *, preset: str = "fast", back="auto", extra_views=(),
                 progress=None):
        return self.reconstructor(preset)(image, out, back=back, extra_views=tuple(extra_views),
                                          progress=progress or False)
