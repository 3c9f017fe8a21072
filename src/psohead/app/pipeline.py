"""What one job runs: the reconstruction with the network loaded once at start-up.

:class:`Pipeline` has the call shape of the coming ``psohead.Reconstructor``
(``R(image, out, back=..., extra_views=..., progress=callable)``) around today's
``psohead.inversion.reconstruct.reconstruct``, whose progress is only on/off: until the
pipeline object lands it reports the start and the end of a run, so a cancel takes effect at
those two points. Switching means replacing this class with ``psohead.Reconstructor``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Progress:
    """A progress report, with the fields of the pipeline contract's ``psohead.Progress``."""

    stage: str  # preprocess | stage1 | pseudo_back | stage2 | views | video | mesh | save | report
    step: int
    total: int
    message: str = ""


class Pipeline:
    """The generator loaded once on ``device``; each call reconstructs one photo into ``out``."""

    def __init__(self, network: str = "default", device: str = "auto", **overrides):
        from ..api import load_generator
        from ..inversion.presets import get_preset, resolve_device

        self.device = resolve_device(device)
        self.network = str(network)
        self.overrides = {k: v for k, v in overrides.items() if v is not None}
        get_preset("auto", **self.overrides)  # bad overrides fail at start-up, not in the first job
        self.G = load_generator(network, device=self.device)

    def __call__(self, image, out: str | Path, *, preset: str = "auto", back="auto", extra_views=(),
                 progress=None):
        from ..inversion.presets import get_preset
        from ..inversion.reconstruct import reconstruct

        report = progress or (lambda p: None)
        report(Progress("preprocess", 0, 1, "finding and cropping the face"))
        rec = reconstruct(image, out, network=self.G, preset=get_preset(preset, **self.overrides), back=back,
                          extra_views=extra_views, device=self.device, progress=False)
        report(Progress("report", 1, 1, "outputs written"))
        return rec
