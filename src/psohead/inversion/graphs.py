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
    """images = G.synthesis(ws, labels)["image"], with ``opacity`` also (images, image_mask) (a
    module, so graph capture sees G's parameters)."""

    def __init__(self, G, deterministic: bool, render_overrides: dict | None = None, noise_mode: str = "const",
                 opacity: bool = False):
        super().__init__()
        self.G = G
        self.deterministic = deterministic
        self.render_overrides = render_overrides
        self.noise_mode = noise_mode
        self.opacity = opacity

    def forward(self, ws: torch.Tensor, labels: torch.Tensor):
        out = self.G.synthesis(ws, labels, noise_mode=self.noise_mode, deterministic=self.deterministic,
                               render_overrides=self.render_overrides)
        return (out["image"], out["image_mask"]) if self.opacity else out["image"]


class StepRenderer:
    """``renderer(ws, views) -> (images [V,3,H,W], opacity [V,1,h,w] or None)``: all views of a
    step from one tri-grid; the accumulated opacity (``image_mask``) only with ``opacity``.

    ``graphs``: capture on CUDA, with fixed ray samples (``deterministic``) and fp32/TF32 only
    (autocast's weight cache cannot live in a graph). ``render_overrides`` go to every render.
    ``used_graphs`` says afterwards whether graphs ran, ``fallback`` why not if capture failed.
    """

    def __init__(self, G, deterministic: bool = False, graphs: bool = False, precision: str = "fp32",
                 render_overrides: dict | None = None, opacity: bool = False):
        self.G = G
        self.deterministic = deterministic
        self.render_overrides = render_overrides
        self.opacity = opacity
        device = next(G.parameters()).device
        # Random ray samples stay eager: with the jitter drawn inside the graph, PyTorch's CUDA
        # generator failed its graph-safe offset check on the H200 (torch 2.11).
        self.graphs = bool(graphs) and device.type == "cuda" and precision != "bf16" and deterministic
        self.fallback: str | None = None
        self._eager = _Render(G, deterministic, render_overrides, opacity=opacity)
        self._graphed: dict[tuple, torch.nn.Module] = {}
        self._seen: set[tuple] = set()

    @property
    def used_graphs(self) -> bool:
        return bool(self._graphed) and self.fallback is None

    def __call__(self, ws: torch.Tensor, views: list[TargetView]) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self._render(ws, torch.cat([v.label for v in views]).to(ws.device))
        return out if self.opacity else (out, None)

    def _render(self, ws: torch.Tensor, labels: torch.Tensor):
        if not self.graphs:
            return self._eager(ws, labels)
        key = (tuple(ws.shape), ws.requires_grad, tuple(labels.shape),
               tuple(p.requires_grad for p in self.G.parameters()))
        graphed = self._graphed.get(key)
        if graphed is None:
            # The first call of a shape runs eagerly (it initialises cuBLAS/cuDNN lazily, which a
            # graph cannot record); the second captures.
            if key not in self._seen:
                self._seen.add(key)
                return self._eager(ws, labels)
            graphed = self._capture(ws, labels)
            if graphed is None:
                return self._eager(ws, labels)
            self._graphed[key] = graphed
        return graphed(ws, labels)

    def _capture(self, ws: torch.Tensor, labels: torch.Tensor):
        sample = (ws.detach().clone().requires_grad_(ws.requires_grad), labels.detach().clone())
        try:
            self._check_no_sync(sample)
            # make_graphed_callables replaces the module's forward, so each shape gets its own wrapper.
            return torch.cuda.make_graphed_callables(_Render(self.G, self.deterministic, self.render_overrides,
                                                             opacity=self.opacity), sample,
                                                     allow_unused_input=True)
        except Exception as err:  # any capture failure: fall back to eager, the result is the same
            torch.cuda.synchronize()
            self.graphs = False
            ours = [f for f in traceback.extract_tb(err.__traceback__) if "psohead" in f.filename]
            where = f" at {Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else ""
            self.fallback = f"{type(err).__name__}{where}: {str(err).splitlines()[0][:300]}"
            warnings.warn(f"CUDA graph capture failed, running eagerly ({self.fallback})", RuntimeWarning)
            return None

    def _check_no_sync(self, sample) -> None:
        """One eager forward + backward in which any host synchronisation raises. A graph cannot
        hold one, and a capture that fails half-way can leave the CUDA random generator unusable,
        so the step is checked before capturing."""
        wrt = [t for t in (sample[0], *self.G.parameters()) if t.requires_grad]
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")
        try:
            out = self._eager(*sample)
            total = sum(o.sum() for o in out) if self.opacity else out.sum()
            torch.autograd.grad(total, wrt, allow_unused=True)
        finally:
            torch.cuda.set_sync_debug_mode(previous)
