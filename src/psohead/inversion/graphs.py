"""The render of one optimisation step - G's forward and backward for that step's views - as a
replayed CUDA graph.

At batch 1 the step is launch-bound: thousands of small kernels, each costing more to launch
than to run. A CUDA graph records them once and replays them with one launch. Inputs (the
latent, the cameras) are copied into the graph's static buffers; parameters are used in place,
so stage 2's optimiser updates are seen by the next replay. One graph per input shape. If
capture fails (an op the graph cannot hold, such as a host synchronisation - checked first), the
renderer warns once and runs eagerly; the result is the same either way up to float rounding.
"""
from __future__ import annotations

import traceback
import warnings
from pathlib import Path

import numpy as np
import torch

from ..io.images import to_uint8
from .targets import TargetView


def front_preview(images: torch.Tensor) -> np.ndarray:
    """A step's render of its first view (the photo's camera: every stage supervises it first) as
    [H,W,3] uint8, copied to the host now: a graphed step's output is a static buffer that the next
    replay overwrites. The copy waits for the device, so take it only at the steps that preview."""
    return to_uint8(images[:1])[0]


class _Render(torch.nn.Module):
    """(images of the views with an image, opacity of the views with bounds) of one step from one
    tri-grid per ``ws`` row: ``forward(ws, labels)`` with ``pictured`` / ``bounded`` the row
    indices of each kind (a module, so graph capture sees G's parameters). Pictured views run the
    whole generator (``synthesis``'s image, its rays ``neural`` a side; None: the network's own);
    bounded ones only its renderer, at ``resolution`` rays a side (their loss reads the opacity
    alone)."""

    def __init__(self, G, deterministic: bool, render_overrides: dict | None, pictured: tuple[int, ...],
                 bounded: tuple[int, ...], resolution: int | None, neural: int | None = None,
                 noise_mode: str = "const"):
        super().__init__()
        self.G = G
        self.deterministic = deterministic
        self.render_overrides = render_overrides
        self.noise_mode = noise_mode
        self.pictured, self.bounded, self.resolution, self.neural = pictured, bounded, resolution, neural
        # Row indices live on the device from the start: made from a list at each call, they would
        # be a host-to-device copy, which a CUDA graph cannot hold.
        device = next(G.parameters()).device
        self._index = {rows: torch.tensor(rows, dtype=torch.long, device=device) for rows in (pictured, bounded)}

    def _rows(self, x: torch.Tensor, rows: tuple[int, ...]) -> torch.Tensor:
        return x if x.shape[0] == 1 or len(rows) == x.shape[0] else x.index_select(0, self._index[rows])

    def forward(self, ws: torch.Tensor, labels: torch.Tensor):
        planes = self.G.planes(ws, noise_mode=self.noise_mode)
        images = opacity = None
        if self.pictured:
            images = self.G.synthesis(self._rows(ws, self.pictured), self._rows(labels, self.pictured),
                                      planes=self._rows(planes, self.pictured), noise_mode=self.noise_mode,
                                      neural_rendering_resolution=self.neural,
                                      deterministic=self.deterministic,
                                      render_overrides=self.render_overrides)["image"]
        if self.bounded:
            opacity = self.G.opacity(self._rows(planes, self.bounded), self._rows(labels, self.bounded),
                                     self.resolution, deterministic=self.deterministic,
                                     render_overrides=self.render_overrides)
        return images, opacity


class StepRenderer:
    """``renderer(ws, views) -> (images [P,3,H,W] of the P views with an image (None if none),
    opacity [B,1,r,r] of the B views with opacity bounds (None if none))``, both in the views'
    order, all from one tri-grid per ``ws`` row ([1] or one row per view). Bounded views are
    rendered at their bounds' resolution ``r`` (opacity only: no background or super-resolution);
    the others with ``neural`` rays a side if given (the super-resolution brings the image to its
    usual size), else the network's own.

    ``graphs``: capture on CUDA, with fixed ray samples (``deterministic``) and fp32/TF32 only
    (autocast's weight cache cannot live in a graph). ``render_overrides`` go to every render.
    ``used_graphs`` says afterwards whether graphs ran, ``fallback`` why not if capture failed.
    """

    def __init__(self, G, deterministic: bool = False, graphs: bool = False, precision: str = "fp32",
                 render_overrides: dict | None = None):
        self.G = G
        self.deterministic = deterministic
        self.render_overrides = render_overrides
        device = next(G.parameters()).device
        # Random ray samples stay eager: with the jitter drawn inside the graph, PyTorch's CUDA
        # generator failed its graph-safe offset check on the H200 (torch 2.11).
        self.graphs = bool(graphs) and device.type == "cuda" and precision != "bf16" and deterministic
        self.fallback: str | None = None
        self._eager: dict[tuple, _Render] = {}
        self._graphed: dict[tuple, torch.nn.Module] = {}
        self._seen: set[tuple] = set()

    @property
    def used_graphs(self) -> bool:
        return bool(self._graphed) and self.fallback is None

    def __call__(self, ws: torch.Tensor, views: list[TargetView],
                 neural: int | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        pictured = tuple(i for i, v in enumerate(views) if v.opacity is None)
        bounded = tuple(i for i, v in enumerate(views) if v.opacity is not None)
        sizes = {v.opacity.shape[-1] for v in views if v.opacity is not None}
        if len(sizes) > 1:
            raise ValueError(f"the opacity bounds of one step differ in size: {sorted(sizes)}")
        layout = (pictured, bounded, sizes.pop() if sizes else None, neural)
        return self._render(ws, torch.cat([v.label for v in views]).to(ws.device), layout)

    def _module(self, layout: tuple) -> _Render:
        if layout not in self._eager:
            self._eager[layout] = _Render(self.G, self.deterministic, self.render_overrides, *layout)
        return self._eager[layout]

    def _render(self, ws: torch.Tensor, labels: torch.Tensor, layout: tuple):
        if not self.graphs:
            return self._module(layout)(ws, labels)
        key = (tuple(ws.shape), ws.requires_grad, tuple(labels.shape), layout,
               tuple(p.requires_grad for p in self.G.parameters()))
        graphed = self._graphed.get(key)
        if graphed is None:
            # The first call of a shape runs eagerly (it initialises cuBLAS/cuDNN lazily, which a
            # graph cannot record); the second captures.
            if key not in self._seen:
                self._seen.add(key)
                return self._module(layout)(ws, labels)
            graphed = self._capture(ws, labels, layout)
            if graphed is None:
                return self._module(layout)(ws, labels)
            self._graphed[key] = graphed
        return self._unpack(graphed(ws, labels), layout)

    @staticmethod
    def _unpack(outputs, layout: tuple):
        """A graphed module's outputs (its Nones dropped) as (images, opacity)."""
        outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
        images = outputs.pop(0) if layout[0] else None
        return images, (outputs.pop(0) if layout[1] else None)

    def _capture(self, ws: torch.Tensor, labels: torch.Tensor, layout: tuple):
        sample = (ws.detach().clone().requires_grad_(ws.requires_grad), labels.detach().clone())
        try:
            self._check_no_sync(sample, layout)
            # make_graphed_callables replaces the module's forward, so each shape gets its own
            # wrapper; it takes tensors only, so the Nones are left out of the outputs.
            return torch.cuda.make_graphed_callables(_Tensors(_Render(self.G, self.deterministic,
                                                                      self.render_overrides, *layout)),
                                                     sample, allow_unused_input=True)
        except Exception as err:  # any capture failure: fall back to eager, the result is the same
            torch.cuda.synchronize()
            self.graphs = False
            ours = [f for f in traceback.extract_tb(err.__traceback__) if "psohead" in f.filename]
            where = f" at {Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else ""
            self.fallback = f"{type(err).__name__}{where}: {str(err).splitlines()[0][:300]}"
            warnings.warn(f"CUDA graph capture failed, running eagerly ({self.fallback})", RuntimeWarning)
            return None

    def _check_no_sync(self, sample, layout: tuple) -> None:
        """One eager forward + backward in which any host synchronisation raises. A graph cannot
        hold one, and a capture that fails half-way can leave the CUDA random generator unusable,
        so the step is checked before capturing."""
        wrt = [t for t in (sample[0], *self.G.parameters()) if t.requires_grad]
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")
        try:
            total = sum(o.sum() for o in self._module(layout)(*sample) if o is not None)
            torch.autograd.grad(total, wrt, allow_unused=True)
        finally:
            torch.cuda.set_sync_debug_mode(previous)


class _Tensors(torch.nn.Module):
    """A render module's outputs without its Nones (a graph's outputs must be tensors)."""

    def __init__(self, render: _Render):
        super().__init__()
        self.render = render

    def forward(self, ws: torch.Tensor, labels: torch.Tensor):
        return tuple(o for o in self.render(ws, labels) if o is not None)
