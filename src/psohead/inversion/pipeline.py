"""PSA-Inversion as a pipeline object: load once, reconstruct many photos.

``Reconstructor`` loads the generator (and, when asked for, the discriminator and the perceptual
network) once; each call runs one photo: input -> stage 1 (latent) -> pseudo back -> stage 2
(tuning) -> outputs, and returns a :class:`Reconstruction`. The loaded generator is never changed:
stage 2 tunes a copy, and per-render options are passed to every render.
"""
from __future__ import annotations

import copy
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from ..atomic import check_output_dir
from ..camera import LABEL_DIM, apply_offset, back_label
from ..devices import configure, resolve_device
from ..errors import CheckpointError, InputError
from ..io.images import mask_tensor, to_tensor
from ..progress import ProgressLike, announce
from .back import known_back_views, plan_back, prior_targets, render_prior
from .inputs import prepare_extra_view, prepare_input
from .losses import build_perceptual
from .outputs import OUTPUT_VERB
from .pivotal import PivotalConfig, tune
from .precision import check_precision
from .presets import Preset, resolve_preset
from .projector import LatentStats, ProjectorConfig, latent_stats, project
from .shape import crop_landmarks, fit_head, hair_room_cm, shape_views
from .targets import TargetView

EXTRA_VIEW_WEIGHT = 1.0  # a real photo counts like the front one


@dataclass
class Reconstruction:
    """Result of one photo. ``G`` is the tuned generator (eval mode; it renders with the options it
    was tuned with), ``ws`` its pivot latent."""

    G: torch.nn.Module
    ws: torch.Tensor  # [1,num_ws,w_dim]
    label: torch.Tensor  # [1,25] front camera of the crop (no offset)
    delta: torch.Tensor  # [1,3] camera offset added to the front (and extra-view) cameras
    crop: Image.Image  # the aligned input
    mask: Image.Image | None  # its foreground (L, 255 = head), when known
    preset: Preset
    back: dict  # requested/used strategy and what the pseudo back was made of
    perceptual: str
    views: list[TargetView]  # stage-2 supervision (front, extras, pseudo back)
    pivot_back: torch.Tensor  # [1,3,H,W] back render of the pivot before tuning
    members: torch.Tensor | None = None  # [K,num_ws,w_dim] stage 1's members (stage1.members > 1), row 0 = ws
    render_overrides: dict = field(default_factory=dict)  # rendering options of the inversion (in G already)
    history: dict = field(default_factory=dict)  # stage -> loss curves
    timings: dict = field(default_factory=dict)  # seconds per phase
    settings: dict = field(default_factory=dict)
    out_dir: Path | None = None

    @property
    def render_label(self) -> torch.Tensor:
        """The input camera with the camera offset: where the tuned head matches the photo."""
        return apply_offset(self.label, self.delta)

    @torch.no_grad()
    def render(self, labels: torch.Tensor) -> torch.Tensor:
        """Images [N,3,H,W] in [-1,1] of the tuned head at exactly these labels [N,25]."""
        labels = torch.as_tensor(labels).reshape(-1, LABEL_DIM).to(self.ws.device)
        out = self.G.synthesis(self.ws, labels, noise_mode="const", deterministic=True)
        return out["image"].float()

    def back_label(self) -> torch.Tensor:
        """The camera behind the head (the input camera turned by pi)."""
        return back_label(self.label)


def _camera_offset(G, z_mean: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Official delta: t_mapping of the mean z (psi 1) for the given camera; zero without t_mapping."""
    if not hasattr(G, "apply_delta_c"):
        return torch.zeros(1, 3)
    with torch.no_grad():
        _, delta = G.apply_delta_c(z_mean, label.to(z_mean.device))
    if delta is None:
        return torch.zeros(1, 3)
    return delta.detach().float().cpu().reshape(-1, 3)[:1]


def _network_name(network) -> str:
    return "<module>" if isinstance(network, torch.nn.Module) else str(network)


class Reconstructor:
    """``R = Reconstructor(network, device=..., preset=..., **overrides)``; ``rec = R(photo, out)``.

    ``network``: ``"default"`` (the bundled model), a psohead ``.safetensors`` file, an official
    ``.pkl`` snapshot, or a generator module (used as it is when it is on ``device`` in float32;
    it is never changed). ``preset``: a name (``auto``, ``fast``, ``quality``, ``official``) or a
    :class:`Preset`; ``overrides``/keywords change its fields (``{"stage1.steps": 60}`` or
    ``stage1_steps=60``, see :mod:`.presets`). ``perceptual``: auto | lpips | dfeat | msssim |
    none (lpips needs ``vgg16``, the torchvision VGG16 weights; dfeat the network file's
    discriminator). ``fk_bank``: an FK-Enhance dataset for ``back="fk"``. ``encoder``: the latent
    encoder that ``stage1.init = "encoder"`` starts from: None (the bundled one when ``network``
    is the bundled model, else none), ``"default"`` or a file (``psohead train-encoder``); it must
    belong to the network.
    """

    def __init__(self, network="default", *, device="auto", preset: str | Preset = "auto", perceptual: str = "auto",
                 vgg16=None, lpips_linear=None, fk_bank=None, encoder=None, overrides: dict | None = None,
                 **keywords):
        self.device = resolve_device(device)
        configure(self.device)
        self.preset = resolve_preset(preset, overrides, **keywords)  # checked before anything loads
        check_precision(self.preset.runtime.precision, self.device)
        self.network = _network_name(network)
        if fk_bank is not None and not Path(fk_bank).exists():
            raise InputError(f"FK-Enhance bank not found: {fk_bank}")
        self.fk_bank_path = None if fk_bank is None else Path(fk_bank)
        self._bank = None
        self.G = self._load_generator(network)
        self.encoder, self.encoder_file = None, None
        if encoder is not None:  # a given file is checked against the network at once
            path = os.fspath(encoder)
            self.encoder, self.encoder_file = self._load_encoder(path), path
        # the bundled model's own encoder is read only when a run starts from it
        self._bundled_encoder_unread = encoder is None and self.network == "default"
        self._check_init(self.preset)
        D = self._load_discriminator(network) if perceptual == "dfeat" else None
        self.perceptual = build_perceptual(perceptual, vgg16=vgg16, lpips_linear=lpips_linear,
                                           discriminator=D).to(self.device)
        self._stats: dict[tuple, LatentStats] = {}

    def _load_generator(self, network) -> torch.nn.Module:
        if isinstance(network, torch.nn.Module):
            p = next(network.parameters())
            if p.device == self.device and p.dtype == torch.float32:
                return network
            return copy.deepcopy(network).to(self.device).float()
        from ..api import load_generator

        return load_generator(os.fspath(network) if isinstance(network, os.PathLike) else network,
                              device=self.device)

    def _load_encoder(self, path_or_name) -> torch.nn.Module:
        from ..api import load_encoder

        return load_encoder(path_or_name, generator=self.G, device=self.device)

    def _check_init(self, preset: Preset) -> None:
        """Refuse a preset that starts from the encoder when the network has none (reading the
        bundled one the first time a run needs it)."""
        if preset.stage1.init != "encoder":
            return
        if self.encoder is None and self._bundled_encoder_unread:
            from ..api import DEFAULT_ENCODER

            self._bundled_encoder_unread = False
            if DEFAULT_ENCODER.is_file():
                try:
                    self.encoder, self.encoder_file = self._load_encoder(DEFAULT_ENCODER), "default"
                except CheckpointError as err:  # a damaged install: as without one
                    warnings.warn(f"the bundled encoder is not used: {err}")
        if self.encoder is None:
            raise InputError(f"preset {preset.name}: stage 1 starts from the encoder's latent, but there is no encoder "
                             f"for this network; pass --encoder PATH (made by `psohead train-encoder`) or "
                             f"--init mean")

    def _load_discriminator(self, network):
        if isinstance(network, torch.nn.Module):
            raise InputError("perceptual backend 'dfeat' needs a network file that contains D")
        from ..api import load_discriminator

        return load_discriminator(network, device=self.device)

    def latent_stats(self, preset: Preset) -> LatentStats:
        """Mean latent, its spread and the offset latent of the loaded generator (made once)."""
        key = (preset.stage1.w_avg_samples, preset.stage1.official_w_std)
        if key not in self._stats:
            self._stats[key] = latent_stats(self.G, *key)
        return self._stats[key]

    def _fk_bank(self):
        if self._bank is None and self.fk_bank_path is not None:
            from .back.fk import back_bank

            self._bank = back_bank(self.fk_bank_path)
        return self._bank

    def __call__(self, image, out: str | os.PathLike | None = None, *, label=None, mask=None, landmarks=None,
                 back: str | os.PathLike = "auto", extra_views=(), seed: int = 666, progress: ProgressLike = True,
                 overwrite: bool = False, overrides: dict | None = None, **keywords) -> Reconstruction:
        """Reconstruct one photo. ``image``: a raw photo (path, PIL image, array; aligned by
        :func:`psohead.preprocess.align`) or an aligned crop with its ``label`` (25 numbers or a
        JSON file; or a dataset.json beside the file), optional ``mask`` and its 68 face ``landmarks``
        ([68,2] pixels, for the geometric pseudo-label; detected on the crop when not given). ``back``: auto | prior
        | fk | none | a photo of the back of the head. ``extra_views``: ``"PATH[:yaw_degrees]"``
        strings of other photos of the same head. ``overrides``/keywords change preset fields for
        this photo. ``progress``: bars, silence, or a callable receiving
        :class:`psohead.progress.Progress` events (raising from it stops the run). With ``out``
        every output file is written there, atomically (docs/reconstruct.md); ``out`` must be new,
        empty or an earlier reconstruction, unless ``overwrite`` (then only files of psohead's names
        in it are replaced)."""
        t0 = time.perf_counter()
        cfg = self.preset.override(overrides, **keywords)
        check_precision(cfg.runtime.precision, self.device)
        self._check_init(cfg)
        plan = plan_back(back, has_bank=self.fk_bank_path is not None)
        if out is not None:
            check_output_dir(out, OUTPUT_VERB, overwrite=overwrite, replace=True)
        announce(progress, "preprocess")
        prepared = prepare_input(image, label=label, mask=mask, landmarks=landmarks)
        extras = [prepare_extra_view(str(s)) for s in extra_views]
        timings = {"preprocess": time.perf_counter() - t0}
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)  # the renderer's ray jitter when rays are random
            rec = self._invert(prepared, extras, plan, cfg, seed, progress, timings)
        timings["inversion_total"] = time.perf_counter() - t0
        rec.settings.update({
            "network": self.network, "input_kind": prepared.source, "label_source": prepared.label_source,
            "input": os.fspath(image) if isinstance(image, (str, os.PathLike)) else f"<{type(image).__name__}>",
            "extra_views": [str(s) for s in extra_views]})
        if out is not None:
            from .outputs import write_outputs

            write_outputs(rec, out, progress=progress, overwrite=overwrite)
        return rec

    def _invert(self, prepared, extras, plan, cfg: Preset, seed: int, progress, timings: dict) -> Reconstruction:
        G, dev, precision = self.G, self.device, cfg.runtime.precision
        ro = cfg.rays.render_overrides()
        t = time.perf_counter()
        stats = self.latent_stats(cfg)
        res = int(G.img_resolution)
        delta = _camera_offset(G, stats.z_mean, prepared.label)
        front = TargetView("front", to_tensor(prepared.image, res), apply_offset(prepared.label, delta), 1.0,
                           None, "input").to(dev)
        views = [front]
        for i, ex in enumerate(extras):
            d = _camera_offset(G, stats.z_mean, ex.label)
            views.append(TargetView(f"extra{i + 1}", to_tensor(ex.image, res), apply_offset(ex.label, d),
                                    EXTRA_VIEW_WEIGHT, None, "extra").to(dev))
        known, back_record = known_back_views(plan, G, stats.w_avg, prepared.label, prepared.mask, front, res,
                                              self._fk_bank() if plan.kind == "fk" else None, ro or None)
        views += [v.to(dev) for v in known]
        shape, shape_record = self._shape_views(prepared, front, cfg, plan.kind)
        if cfg.shape.stage1:
            views += shape
        timings["setup"] = time.perf_counter() - t

        init_ws = None
        if cfg.stage1.init == "encoder":
            t = time.perf_counter()
            with torch.no_grad():
                init_ws = self.encoder(front.image, prepared.label.to(dev))
            timings["encoder"] = time.perf_counter() - t
        members = cfg.stage1.members if plan.kind in ("prior", "fk") else 1
        s1 = project(G, views, self.perceptual, stats,
                     ProjectorConfig(num_steps=cfg.stage1.steps, initial_learning_rate=cfg.stage1.learning_rate,
                                     deterministic=cfg.rays.deterministic, cuda_graphs=cfg.runtime.cuda_graphs,
                                     render_overrides=ro or None, preview_seconds=cfg.runtime.preview_seconds,
                                     coarse_steps=cfg.stage1.coarse_steps,
                                     coarse_resolution=cfg.stage1.coarse_resolution),
                     seed=seed, progress=progress, precision=precision, members=members, init_ws=init_ws)
        timings["stage1"] = s1.seconds

        t = time.perf_counter()
        announce(progress, "pseudo_back")
        pivot_back, pivot_mask = render_prior(G, s1.ws, back_label(prepared.label), ro or None)
        if plan.kind in ("prior", "fk"):  # with fk too: the bank image sets outline and colour, the prior detail
            front_mask = (mask_tensor(prepared.mask, res) if cfg.back.colour_match and prepared.mask is not None
                          else None)
            views += prior_targets(G, cfg.back, s1.ws if s1.members is None else s1.members, stats.w_avg,
                                   prepared.label, front, front_mask, (pivot_back, pivot_mask), back_record,
                                   ro or None)
        if not cfg.shape.stage1:
            views += shape
        timings["pseudo_back"] = time.perf_counter() - t

        G_t, s2 = tune(G, s1.ws, views, self.perceptual,
                       PivotalConfig(num_steps=cfg.stage2.steps, learning_rate=cfg.stage2.learning_rate,
                                     deterministic=cfg.rays.deterministic, cuda_graphs=cfg.runtime.cuda_graphs,
                                     render_overrides=ro or None, preview_seconds=cfg.runtime.preview_seconds),
                       progress=progress, precision=precision)
        timings["stage2"] = s2.seconds
        return Reconstruction(
            G=G_t, ws=s1.ws, label=prepared.label, delta=delta, crop=prepared.image, mask=prepared.mask, preset=cfg,
            back={"requested": plan.requested, "used": plan.kind, **back_record}, perceptual=self.perceptual.name,
            views=views, pivot_back=pivot_back, members=s1.members, render_overrides=ro,
            history={"stage1": s1.history, "stage2": s2.history}, timings=timings,
            settings={"device": str(dev), "seed": seed, "preset": cfg.to_dict(), "perceptual": self.perceptual.name,
                      "encoder": self.encoder_file if cfg.stage1.init == "encoder" else None,
                      "cuda_graphs_used": {"stage1": s1.cuda_graphs, "stage2": s2.cuda_graphs},
                      "ray_start": float(G_t.rendering_kwargs.get("ray_start", float("nan"))),
                      "w_std": stats.w_std, "shape": shape_record})

    def _shape_views(self, prepared, front: TargetView, cfg: Preset, back: str) -> tuple[list[TargetView], dict]:
        """The geometric pseudo-label's views and what was fitted; none with ``shape.weight`` 0 or
        the back strategy ``none`` (the photo alone: no pseudo-label of any kind, plain PTI)."""
        if cfg.shape.weight <= 0 or back == "none":
            return [], {"used": False}
        landmarks = prepared.landmarks if prepared.landmarks is not None else crop_landmarks(prepared.image)
        fitted = fit_head(landmarks, prepared.image.size[0], front.label)
        margin = (cfg.shape.margin_cm, cfg.shape.margin_cm)  # above, beside
        if cfg.shape.hair_from_photo and prepared.mask is not None:
            margin = hair_room_cm(fitted, front.label, prepared.mask, cfg.shape.margin_cm)
        res = cfg.shape.resolution or int(self.G.neural_rendering_resolution)
        views = shape_views(fitted, prepared.label, res, cfg.shape.weight, margin, cfg.shape.inner_cm)
        return [v.to(self.device) for v in views], {
            "used": True, "landmarks_fitted": fitted.rms_px is not None, "scale": fitted.record["scale"],
            "offset": fitted.offset.tolist(), "rms_px": fitted.rms_px,
            "margin_cm": list(margin)}


def reconstruct(image, out: str | os.PathLike | None = None, *, network="default", device="auto",
                preset: str | Preset = "auto", perceptual: str = "auto", vgg16=None, lpips_linear=None,
                fk_bank=None, encoder=None, label=None, mask=None, landmarks=None,
                back: str | os.PathLike = "auto", extra_views=(), seed: int = 666, progress: ProgressLike = True,
                overwrite: bool = False,
                overrides: dict | None = None, **keywords) -> Reconstruction:
    """One photo in one call: ``Reconstructor(network, ...)(image, out, ...)`` (the arguments of
    both; keywords override preset fields, e.g. ``stage2_steps=40``)."""
    if out is not None:
        check_output_dir(out, OUTPUT_VERB, overwrite=overwrite, replace=True)  # before the network loads
    pipeline = Reconstructor(network, device=device, preset=preset, perceptual=perceptual, vgg16=vgg16,
                             lpips_linear=lpips_linear, fk_bank=fk_bank, encoder=encoder, overrides=overrides,
                             **keywords)
    return pipeline(image, out, label=label, mask=mask, landmarks=landmarks, back=back, extra_views=extra_views,
                    seed=seed, progress=progress, overwrite=overwrite)
