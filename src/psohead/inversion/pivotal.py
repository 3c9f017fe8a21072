"""Stage 2: pivotal tuning of the generator weights around the stage-1 latent (spec 6.3).

A copy of G is trained (train mode, like the official) with Adam(0.9, 0.999) at a constant
lr 3e-4 on the same views and loss, without the w regulariser. Unlike the official code no
CPU copy of G is taken every 10 steps (only the final weights are used). The tuned copy keeps
the rendering options it was tuned with (``render_overrides``), so it renders as it was fitted.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

from ..progress import ProgressLike, track
from .losses import PerceptualLoss
from .precision import autocast
from .projector import StageResult, finish_history
from .graphs import StepRenderer, front_preview
from .targets import TargetCache, TargetView, full_terms, step_views, terms_dict, views_loss


@dataclass
class PivotalConfig:
    num_steps: int = 500
    learning_rate: float = 3e-4
    deterministic: bool = False
    cuda_graphs: bool = True  # on CUDA: replay each step's render as a CUDA graph (see graphs.py)
    render_overrides: dict | None = None  # rendering options of every render (e.g. the ray start)
    log_every: int = 10
    preview_seconds: float | None = None  # live previews for a progress callable (progress.Tracker; None: none)


def tuned_parameters(G) -> list[torch.nn.Parameter]:
    """Everything except the mapping networks (the pivot w and the camera offset are fixed)."""
    frozen = {id(p) for m in (G.backbone.mapping, getattr(G, "t_mapping", None)) if m is not None
              for p in m.parameters()}
    return [p for p in G.parameters() if id(p) not in frozen]


def tune(G, ws: torch.Tensor, views: list[TargetView], perceptual: PerceptualLoss,
         cfg: PivotalConfig = PivotalConfig(), progress: ProgressLike = True,
         precision: str = "fp32") -> tuple[torch.nn.Module, StageResult]:
    """Returns (tuned copy of G in eval mode, result). G itself is not modified."""
    start = time.perf_counter()
    G_t = copy.deepcopy(G).train().requires_grad_(False)
    params = tuned_parameters(G_t)
    for p in params:
        p.requires_grad_(True)
    device = ws.device
    ws = ws.detach()
    views = [v.to(device) for v in views]
    # fused: one kernel for all parameters on CUDA instead of a few per parameter group (none
    # without steps: a process's first torch optimiser costs about a second of imports)
    opt = (torch.optim.Adam(params, lr=cfg.learning_rate, betas=(0.9, 0.999), fused=device.type == "cuda")
           if cfg.num_steps > 0 else None)
    render = StepRenderer(G_t, cfg.deterministic, graphs=cfg.cuda_graphs, precision=precision,
                          render_overrides=cfg.render_overrides)
    history: dict[str, list] = {"loss": [], "lr": [], "terms": []}
    cache = TargetCache()
    bar = track(range(cfg.num_steps), "stage2", progress, desc="stage 2 (tuning)",
                preview_seconds=cfg.preview_seconds)
    for step in bar:
        active, step_targets = step_views(views, step)
        with autocast(device, precision):
            images, opacity = render(ws, step_targets)
            if bar.wants_preview():
                bar.show(front_preview(images))
            loss, terms = views_loss(images, step_targets, perceptual, cache=cache, opacity=opacity)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history["loss"].append(loss.detach())
        history["lr"].append(cfg.learning_rate)
        history["terms"].append(full_terms(terms, active, len(views)))
        if progress and (step % cfg.log_every == 0 or step == cfg.num_steps - 1):
            bar.note(loss=f"{float(loss.detach()):.4f}", **{k: f"{v:.4f}" for k, v in
                                                        terms_dict(terms, step_targets).items()
                                                        if k.endswith("front")})
        # Drop this step's autograd graph now: alive during the next step's capture, its gradient
        # accumulators (on the default stream) would break the CUDA graph.
        del images, opacity, loss
    G_t.eval().requires_grad_(False)
    if cfg.render_overrides:
        G_t.rendering_kwargs = {**G_t.rendering_kwargs, **cfg.render_overrides}
    return G_t, StageResult(ws=ws, history=finish_history(history, views), seconds=time.perf_counter() - start,
                            cuda_graphs=render.used_graphs)
