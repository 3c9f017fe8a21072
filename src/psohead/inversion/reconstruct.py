"""PSA-Inversion end to end: input -> stage 1 (latent) -> pseudo back -> stage 2 (tuning) -> outputs."""
from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..camera import LABEL_DIM, apply_offset
from ..errors import InputError
from .imageio import mask_tensor, to_tensor
from .inputs import PreparedInput, border_matte, mask_beside, prepare_extra_view, prepare_input
from .losses import build_perceptual
from .pivotal import PivotalConfig, tune
from .precision import check_precision
from .presets import Preset, get_preset, resolve_device
from .projector import ProjectorConfig, latent_stats, project
from .pseudo_back import (BackPlan, back_cameras, camera_labels, fk_view, member_renders, photo_view, plan_back,
                          prior_colour_shift, reference_back_mask, render_prior, shrink_views, spread_weights,
                          views_from_renders)
from .targets import TargetView

EXTRA_VIEW_WEIGHT = 1.0  # a real photo counts like the front one


@dataclass
class Reconstruction:
    """Result of :func:`reconstruct`. ``G`` is the tuned generator (eval mode), ``ws`` its pivot."""

    G: torch.nn.Module
    ws: torch.Tensor  # [1,num_ws,w_dim]
    label: torch.Tensor  # [1,25] front camera of the crop (no offset)
    delta: torch.Tensor  # [1,3] camera offset added to the front (and extra-view) cameras
    crop: Image.Image
    mask: Image.Image | None
    preset: Preset
    back: dict  # requested/used strategy (+ FK record)
    perceptual: str
    views: list[TargetView]  # stage-2 supervision (front, extras, pseudo back)
    pivot_back: torch.Tensor  # [1,3,H,W] back render of the pivot before tuning
    members: torch.Tensor | None = None  # [K,num_ws,w_dim] stage 1's members (``prior_ensemble``), row 0 = ws
    history: dict = field(default_factory=dict)  # stage -> loss curves
    timings: dict = field(default_factory=dict)  # seconds per phase
    settings: dict = field(default_factory=dict)
    out_dir: Path | None = None

    @property
    def render_label(self) -> torch.Tensor:
        return apply_offset(self.label, self.delta)

    @torch.no_grad()
    def render(self, labels: torch.Tensor) -> torch.Tensor:
        """Images [N,3,H,W] in [-1,1] of the tuned head at exactly these labels (``render_label`` is the
        input camera with the offset; the back camera and exports of the official use none/Δ resp.)."""
        device = self.ws.device
        labels = labels.reshape(-1, LABEL_DIM).to(device)
        out = self.G.synthesis(self.ws, labels, noise_mode="const", deterministic=True)
        return out["image"].float()

    def back_label(self) -> torch.Tensor:
        return back_cameras(self.label)[0][1]


def _load_network(network, device: torch.device):
    """(G copy on device, D or None loader) for a module or a path / 'default'."""
    if isinstance(network, torch.nn.Module):
        return copy.deepcopy(network).to(device).float(), None
    from ..api import load_generator

    return load_generator(str(network) if isinstance(network, os.PathLike) else network, device=device), network


def _load_discriminator(source, device):
    if source is None:
        raise InputError("perceptual backend 'dfeat' needs a network file that contains D")
    from ..api import load_discriminator

    return load_discriminator(source, device=device)


def _camera_offset(G, z_mean: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Official delta: t_mapping of the mean z (psi 1) for the given camera; zero without t_mapping."""
    if not hasattr(G, "apply_delta_c"):
        return torch.zeros(1, 3)
    with torch.no_grad():
        _, delta = G.apply_delta_c(z_mean, label.to(z_mean.device))
    if delta is None:
        return torch.zeros(1, 3)
    return delta.detach().float().cpu().reshape(-1, 3)[:1]


def _back_views(plan: BackPlan, G, stats, prepared: PreparedInput, front: TargetView, res: int):
    """Back targets known before stage 1 (photo / FK); prior views are made after it."""
    if plan.kind not in ("photo", "fk"):
        return [], {}
    front_mask = None if prepared.mask is None else mask_tensor(prepared.mask, res)
    ref = reference_back_mask(G, stats.w_avg, prepared.label.to(stats.w_avg.device), front_mask, res)
    back_lab = back_cameras(prepared.label)[0][1]
    if plan.kind == "photo":
        beside = mask_beside(plan.photo)

        def mask_fn(pil):
            if beside is None:
                return border_matte(pil)
            m = np.asarray(beside.resize(pil.size, Image.BILINEAR), dtype=np.float32) / 255
            return torch.from_numpy(m)[None, None]

        return [photo_view(plan.photo, ref, back_lab, mask_fn)], {"photo": str(plan.photo)}
    view, record = fk_view(plan.fk_bank, front.image, front_mask, ref)
    view.label = back_lab  # the front camera turned by pi (the bank item's own yaw only picked it)
    return [view], record


def _prior_targets(G, cfg: Preset, members: torch.Tensor, w_avg: torch.Tensor, label: torch.Tensor,
                   front: TargetView, front_mask: torch.Tensor | None, pivot_back: tuple, record: dict
                   ) -> list[TargetView]:
    """The prior back views of stage 1's members: in the photo's hair colour when ``front_mask`` is
    given (shift measured on the pivot's back render ``pivot_back`` = (image, mask)), blended
    towards the mean latent's views (``cfg.prior_shrink``, or per pixel by the members' spread with
    ``cfg.prior_shrink_spread``); what was used goes into ``record``."""
    cams = back_cameras(label, cfg.back_augment_degrees, cfg.prior_weight)

    def views_of(ws, back, back_mask):
        shift = None if front_mask is None else prior_colour_shift(front, front_mask, back, back_mask)
        images, masks = member_renders(G, ws, camera_labels(cams), cfg.prior_mirror_average)
        return shift, images, views_from_renders(cams, images.mean(0), masks.mean(0), cfg.back_augment_alternate,
                                                 shift)

    shift, member_images, prior = views_of(members, *pivot_back)
    if shift is not None:
        record["prior_colour_shift"] = [round(float(v), 4) for v in shift]
    record["prior_members"] = len(members)
    if cfg.prior_shrink > 0 or cfg.prior_shrink_spread > 0:
        mean_head = w_avg.repeat(1, int(G.backbone.num_ws), 1)
        head = views_of(mean_head, *render_prior(G, mean_head, back_cameras(label)[0][1]))[2]
        if cfg.prior_shrink_spread > 0:
            dev = member_images.device  # on the GPU: 512² windows of 15 pixels are slow on the CPU
            amount = spread_weights(member_images, torch.cat([v.image for v in prior]).to(dev),
                                    torch.cat([v.image for v in head]).to(dev), cfg.prior_shrink_spread).cpu()
            record["prior_shrink_spread"] = cfg.prior_shrink_spread
            record["prior_shrink_mean_weight"] = round(float(amount.mean()), 4)
        else:
            amount = cfg.prior_shrink
            record["prior_shrink"] = cfg.prior_shrink
        prior = shrink_views(prior, head, amount)
    return prior


def reconstruct(image, out: str | os.PathLike | None = None, *, label=None, mask=None, network="default",
                preset: str | Preset = "auto", back: str | os.PathLike = "auto", fk_bank=None,
                extra_views=(), perceptual: str = "auto", vgg16=None, lpips_linear=None,
                device="auto", seed: int = 666, stage1_steps: int | None = None,
                stage2_steps: int | None = None, precision: str = "fp32", density: bool = False,
                progress: bool = True) -> Reconstruction:
    """Reconstruct a 360-degree head from one photo (plus optional extra photos).

    ``image``: raw photo (aligned by ``psohead.preprocess``) or an aligned crop with ``label``
    (25 numbers or a JSON file) or a dataset.json beside it. ``back``: auto | prior | fk | none |
    path of a photo of the back of the head. ``extra_views``: ``"PATH[:yaw_degrees]"`` strings.
    With ``out`` every output file is written there (atomically, see docs/reconstruct.md).
    """
    t0 = time.perf_counter()
    dev = resolve_device(device)
    check_precision(precision, dev)
    cfg = get_preset(preset, stage1_steps=stage1_steps, stage2_steps=stage2_steps)
    plan = plan_back(back, fk_bank)
    prepared = prepare_input(image, label=label, mask=mask)
    extras = [prepare_extra_view(str(s)) for s in extra_views]
    timings = {"preprocess": time.perf_counter() - t0}

    t = time.perf_counter()
    G, source = _load_network(network, dev)
    if cfg.ray_start is not None:
        G.rendering_kwargs = {**G.rendering_kwargs, "ray_start": cfg.ray_start}
    D = _load_discriminator(source, dev) if perceptual == "dfeat" else None
    loss_fn = build_perceptual(perceptual, vgg16=vgg16, lpips_linear=lpips_linear, discriminator=D).to(dev)
    timings["load"] = time.perf_counter() - t

    torch.manual_seed(seed)
    t = time.perf_counter()
    stats = latent_stats(G, cfg.w_avg_samples, official_w_std=cfg.official_w_std)
    res = int(G.img_resolution)
    delta = _camera_offset(G, stats.z_mean, prepared.label)
    front = TargetView("front", to_tensor(prepared.image, res), apply_offset(prepared.label, delta), 1.0, None, "input")
    views = [front]
    for i, ex in enumerate(extras):
        d = _camera_offset(G, stats.z_mean, ex.label)
        views.append(TargetView(f"extra{i + 1}", to_tensor(ex.image, res), apply_offset(ex.label, d),
                                EXTRA_VIEW_WEIGHT, None, "extra"))
    known_back, back_record = _back_views(plan, G, stats, prepared, front, res)
    views += known_back
    timings["setup"] = time.perf_counter() - t

    s1 = project(G, views, loss_fn, stats, ProjectorConfig(num_steps=cfg.stage1_steps, deterministic=cfg.deterministic,
                                                           official_w_std=cfg.official_w_std,
                                                           w_avg_samples=cfg.w_avg_samples,
                                                           cuda_graphs=cfg.cuda_graphs),
                 seed=seed, progress=progress, precision=precision,
                 members=cfg.prior_ensemble if plan.kind in ("prior", "fk") else 1)
    timings["stage1"] = s1.seconds

    t = time.perf_counter()
    pivot_back, pivot_mask = render_prior(G, s1.ws, back_cameras(prepared.label)[0][1])
    if plan.kind in ("prior", "fk"):  # with fk too: +0.3 dB on backs, better silhouette (BENCHMARKS.md)
        front_mask = mask_tensor(prepared.mask, res) if cfg.prior_colour_match and prepared.mask is not None else None
        members = s1.ws if s1.members is None else s1.members
        views += _prior_targets(G, cfg, members, stats.w_avg, prepared.label, front, front_mask,
                                (pivot_back, pivot_mask), back_record)
    timings["pseudo_back"] = time.perf_counter() - t

    G_t, s2 = tune(G, s1.ws, views, loss_fn, PivotalConfig(num_steps=cfg.stage2_steps, learning_rate=cfg.stage2_lr,
                                                           deterministic=cfg.deterministic,
                                                           cuda_graphs=cfg.cuda_graphs),
                   progress=progress, precision=precision)
    timings["stage2"] = s2.seconds
    timings["inversion_total"] = time.perf_counter() - t0

    rec = Reconstruction(
        G=G_t, ws=s1.ws, label=prepared.label, delta=delta, crop=prepared.image, mask=prepared.mask, preset=cfg,
        back={"requested": plan.requested, "used": plan.kind, **back_record}, perceptual=loss_fn.name,
        views=[v.to("cpu") for v in views], pivot_back=pivot_back.cpu(), members=s1.members,
        history={"stage1": s1.history, "stage2": s2.history}, timings=timings,
        settings={"network": str(network) if not isinstance(network, torch.nn.Module) else "<module>",
                  "input": str(image) if isinstance(image, (str, os.PathLike)) else f"<{type(image).__name__}>",
                  "input_kind": prepared.source, "label_source": prepared.label_source,
                  "extra_views": [str(s) for s in extra_views], "device": str(dev), "precision": precision,
                  "seed": seed, "preset": cfg.to_dict(),
                  "cuda_graphs_used": {"stage1": s1.cuda_graphs, "stage2": s2.cuda_graphs},
                  "perceptual": loss_fn.name,
                  "ray_start": float(G.rendering_kwargs.get("ray_start", float("nan"))), "w_std": stats.w_std},
    )
    if out is not None:
        from .outputs import write_outputs

        write_outputs(rec, out, density=density, progress=progress)
    return rec
