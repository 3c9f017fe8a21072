"""Stage 1: W+ projection of the target views into a frozen generator (spec 6.2).

Official schedule: w_opt starts at the mean latent (all num_ws rows; or at a given code, such as
an encoder's guess, with the same schedule, noise and pull to the mean), Adam(0.9, 0.999) with
lr = 0.1 * cosine ramp-down over the last 25 % * linear ramp-up over the first 5 %, exploration
noise w_std * 0.05 * max(0, 1 - t/0.75)^2 on the rendered code, and 1.0 * mean((w_opt - w_avg)^2).

``members`` > 1 runs that many projections together (one batch on CUDA), each with its own
exploration noise: they agree where the photo constrains the head and differ where it does not
(the unseen back), which the pseudo back uses (``prior_views``). Adam is element-wise and the
losses add, so every member takes the steps it would take alone (up to float rounding).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from ..camera import build_label, lookat_pose
from ..progress import ProgressLike, track
from .losses import PerceptualLoss
from .precision import autocast
from .graphs import StepRenderer, front_preview
from .targets import TERMS, TargetCache, TargetView, full_terms, row_of, step_views, terms_dict, views_loss

W_STATS_SEED = 123  # the official RandomState seed for the mean-latent statistics


@dataclass
class ProjectorConfig:
    num_steps: int = 500
    initial_learning_rate: float = 0.1
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    initial_noise_factor: float = 0.05
    noise_ramp_length: float = 0.75
    regularize_w_weight: float = 1.0
    deterministic: bool = False  # fixed ray samples while optimising (official: random)
    cuda_graphs: bool = True  # on CUDA: replay each step's render as a CUDA graph (see graphs.py)
    render_overrides: dict | None = None  # rendering options of every render (e.g. the ray start)
    coarse_steps: int = 0  # the first steps render coarse_resolution rays a side (super-resolved as usual)
    coarse_resolution: int = 32
    log_every: int = 10
    preview_seconds: float | None = None  # live previews for a progress callable (progress.Tracker; None: none)


@dataclass
class StageResult:
    ws: torch.Tensor  # [1,num_ws,w_dim]: the pivot (member 0)
    members: torch.Tensor | None = None  # [K,num_ws,w_dim] every member's code, row 0 = ws
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    cuda_graphs: bool = False  # whether the steps ran as CUDA graphs


@dataclass
class LatentStats:
    w_avg: torch.Tensor  # [1,1,w_dim]
    w_std: float
    z_mean: torch.Tensor  # [1,z_dim]: the official camera-offset latent


def stats_labels(device=None) -> torch.Tensor:
    """The two labels the official w statistics use: frontal and back, radius 2.7, look-at origin."""
    poses = lookat_pose(torch.tensor([math.pi / 2, math.pi / 2 + math.pi]), math.pi / 2,
                        lookat=(0.0, 0.0, 0.0), radius=2.7)
    return build_label(poses).to(device)


@torch.no_grad()
def latent_stats(G, num_samples: int = 10000, official_w_std: bool = False, seed: int = W_STATS_SEED,
                 chunk: int = 2000) -> LatentStats:
    """Mean latent and spread from num_samples z, each mapped with the frontal and the back label.

    The official code divides by the sample count although it sums twice as many rows, which
    inflates w_std (the exploration-noise scale) by sqrt(2); ``official_w_std`` reproduces that."""
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(num_samples, G.z_dim, generator=gen).to(device)
    labels = stats_labels(device)
    ws = []
    for i in range(0, num_samples, chunk):
        zc = z[i:i + chunk]
        for lab in labels:
            ws.append(G.mapping(zc, lab.expand(len(zc), -1), truncation_psi=1)[:, :1].float())
    w = torch.cat(ws)  # [2*num_samples,1,w_dim]
    w_avg = w.mean(0, keepdim=True)
    divisor = num_samples if official_w_std else w.shape[0]
    w_std = float(((w - w_avg).square().sum() / divisor).sqrt())
    return LatentStats(w_avg=w_avg, w_std=w_std, z_mean=z.mean(0, keepdim=True))


def learning_rate(step: int, cfg: ProjectorConfig) -> float:
    t = step / cfg.num_steps
    ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown_length)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp *= min(1.0, t / cfg.lr_rampup_length)
    return cfg.initial_learning_rate * ramp


class LatentAdam:
    """Adam for the one latent tensor, written out with the same operations as torch.optim.Adam's
    single-tensor update (the latent lives on the CPU or is one tensor: the same numbers). The
    first torch optimiser made in a process imports torch._dynamo, about a second on a small CPU:
    a tenth of a preview."""

    def __init__(self, param: torch.Tensor, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.param, self.betas, self.eps, self.steps = param, betas, eps, 0
        self.exp_avg = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.exp_avg_sq = torch.zeros_like(param, memory_format=torch.preserve_format)

    @torch.no_grad()
    def step(self, lr: float) -> None:
        (beta1, beta2), grad = self.betas, self.param.grad
        self.steps += 1
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (self.exp_avg_sq.sqrt() / (1 - beta2 ** self.steps) ** 0.5).add_(self.eps)
        self.param.addcdiv_(self.exp_avg, denom, value=-lr / (1 - beta1 ** self.steps))


def project(G, views: list[TargetView], perceptual: PerceptualLoss, stats: LatentStats,
            cfg: ProjectorConfig = ProjectorConfig(), seed: int = 666, progress: ProgressLike = True,
            precision: str = "fp32", members: int = 1, members_per_call: int | None = None,
            init_ws: torch.Tensor | None = None) -> StageResult:
    """Optimise a W+ code (``members`` of them, see the module note) so that G renders every view
    like its target; G stays frozen. ``members_per_call``: members rendered together (None: all
    on CUDA, where a batch costs little more than one; one at a time on CPU, where the renderer is
    memory-bound and a batch of four took 7x as long as one). The result does not depend on it.
    ``init_ws`` ([1,num_ws,w_dim]): where every member starts instead of the mean latent."""
    start = time.perf_counter()
    G.eval().requires_grad_(False)
    device = stats.w_avg.device
    per_call = members_per_call or (members if device.type == "cuda" else 1)
    views = [v.to(device) for v in views]
    num_ws = int(G.backbone.num_ws)
    w_avg = stats.w_avg.detach()
    w_init = w_avg.repeat(1, num_ws, 1) if init_ws is None else init_ws.detach().to(device, torch.float32)
    w_opt = w_init.repeat(members, 1, 1).clone().requires_grad_(True)
    opt = LatentAdam(w_opt)
    gen = torch.Generator(device=device).manual_seed(seed)
    history: dict[str, list] = {"loss": [], "lr": [], "terms": []}
    cache = TargetCache()
    render = StepRenderer(G, cfg.deterministic, graphs=cfg.cuda_graphs, precision=precision,
                          render_overrides=cfg.render_overrides)
    bar = track(range(cfg.num_steps), "stage1", progress, desc="stage 1 (latent)",
                preview_seconds=cfg.preview_seconds)
    if init_ws is not None and bar.wants_preview():
        # The start itself (an encoder's guess) with the stage's first event: the steps' renders
        # carry the exploration noise, at its strongest early on. One render, no gradients.
        with torch.no_grad(), autocast(device, precision):
            bar.show(front_preview(render(w_init, views[:1])[0]))
    for step in bar:
        t = step / cfg.num_steps
        noise_scale = stats.w_std * cfg.initial_noise_factor * max(0.0, 1.0 - t / cfg.noise_ramp_length) ** 2
        lr = learning_rate(step, cfg)
        noise = torch.randn(w_opt.shape, generator=gen, device=device) * noise_scale
        active, step_targets = step_views(views, step)
        neural = cfg.coarse_resolution if step < cfg.coarse_steps else None
        w_opt.grad = None
        reg = cfg.regularize_w_weight * (w_opt - w_avg).square().mean((1, 2)).sum()
        reg.backward()
        total = reg.detach()
        for lo in range(0, members, per_call):  # gradients of the member groups add up in w_opt.grad
            k = min(per_call, members - lo)
            ws = w_opt[lo:lo + k] + noise[lo:lo + k]
            if k > 1:  # member-major: every member sees every view (one tri-grid per image)
                ws = ws.repeat_interleave(len(step_targets), 0)
            with autocast(device, precision):
                images, opacity = render(ws, step_targets * k, neural)
                if lo == 0 and bar.wants_preview():  # the pivot's front (member-major)
                    bar.show(front_preview(images))
                loss, terms = views_loss(images, step_targets * k, perceptual, cache=cache, opacity=opacity)
            loss.backward()
            total = total + loss.detach()
            if lo == 0:
                pivot_terms = terms[:, :len(step_targets)]  # the history follows the pivot
            del images, opacity, loss  # this step's autograd graph must not outlive it (see pivotal.py)
        opt.step(lr)
        history["loss"].append(total / members)  # per member
        history["lr"].append(lr)
        history["terms"].append(full_terms(pivot_terms, active, len(views)))
        if progress and (step % cfg.log_every == 0 or step == cfg.num_steps - 1):
            bar.note(loss=f"{float(total) / members:.4f}", **{k: f"{v:.4f}" for k, v in
                                                                   terms_dict(pivot_terms, step_targets).items()
                                                                   if k.endswith("front")})
    w = w_opt.detach().clone()
    return StageResult(ws=w[:1], members=w if members > 1 else None, history=finish_history(history, views),
                       seconds=time.perf_counter() - start, cuda_graphs=render.used_graphs)


def finish_history(history: dict[str, list], views: list[TargetView]) -> dict[str, list[float | None]]:
    """Device tensors collected per step -> plain float lists (one synchronisation); None marks a
    step at which a view was not supervised (see ``TargetView.cycle``)."""
    out = {"loss": torch.stack(history["loss"]).cpu().tolist() if history["loss"] else [],
           "lr": list(history["lr"])}
    if history["terms"]:
        terms = torch.stack(history["terms"]).cpu()  # [steps,3,V]
        for i, v in enumerate(views):
            for row, key in enumerate(TERMS):
                if row_of(v, row):
                    out[f"{key}_{v.name}"] = [None if math.isnan(x) else x for x in terms[:, row, i].tolist()]
    return out
