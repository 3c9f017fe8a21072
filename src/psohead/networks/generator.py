"""The PanoHead tri-grid generator (spec 1.1-1.11).

``TriGridGenerator`` takes the official ``TriPlaneGenerator`` constructor kwargs and registers its
children under the official names and order, so an official ``state_dict()`` loads with
``strict=True``. Randomness: ``noise_mode`` (backbone/background noise, default 'random' as in the
official code) and ``deterministic`` (renderer jitter, importance draws and density noise; see
``renderer.py``). Parity with the official outputs needs ``noise_mode='const', deterministic=True``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError
from .config import GeneratorConfig
from .renderer import ImportanceRenderer, RaySampler, no_autocast
from .stylegan2 import MappingNetwork, StyleGAN2Backbone, SynthesisNetwork, ToRGBLayer
from .superres import superres_class
from .trigrid import OSGDecoder

FEATURE_CHANNELS = 32  # tri-grid feature width and decoder output width (hard-coded officially)
# Entries of the flattened cam2world matrix that hold its translation column.
TRANSLATION_ENTRIES = (3, 7, 11)


class TriGridGenerator(torch.nn.Module):
    """(z, camera label c) → image, raw image, depth and mask, through a tri-grid volume."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 sr_num_fp16_res: int = 0, mapping_kwargs: dict | None = None,
                 rendering_kwargs: dict | None = None, sr_kwargs: dict | None = None, **synthesis_kwargs):
        super().__init__()
        neural_res = synthesis_kwargs.pop("neural_rendering_resolution", 64)
        cfg = GeneratorConfig(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
            sr_num_fp16_res=sr_num_fp16_res, neural_rendering_resolution=neural_res,
            **({} if mapping_kwargs is None else {"mapping_kwargs": dict(mapping_kwargs)}),
            **({} if rendering_kwargs is None else {"rendering_kwargs": dict(rendering_kwargs)}),
            **({} if sr_kwargs is None else {"sr_kwargs": dict(sr_kwargs)}),
            **synthesis_kwargs)
        self.config = cfg
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        rk = self.rendering_kwargs = dict(cfg.rendering_kwargs)
        syn_kwargs = cfg.synthesis_kwargs()
        bcg_kwargs = dict(syn_kwargs, channel_base=syn_kwargs["channel_base"] // 2)
        self.triplane_depth = rk["triplane_depth"]

        # Children in the official registration order (renderer/ray sampler hold no tensors).
        self.renderer = ImportanceRenderer()
        self.ray_sampler = RaySampler()
        self.backbone = StyleGAN2Backbone(
            z_dim, c_dim, w_dim, img_resolution=rk.get("triplane_size", 256),
            img_channels=FEATURE_CHANNELS * 3 * self.triplane_depth, mapping_kwargs=cfg.mapping_kwargs,
            **syn_kwargs)
        self.superresolution = superres_class(rk["superresolution_module"])(
            channels=FEATURE_CHANNELS, img_resolution=img_resolution, sr_num_fp16_res=sr_num_fp16_res,
            sr_antialias=rk["sr_antialias"], **cfg.sr_kwargs)
        self.decoder = OSGDecoder(FEATURE_CHANNELS, output_dim=FEATURE_CHANNELS,
                                  lr_multiplier=rk.get("decoder_lr_mul", 1), activation=rk["decoder_activation"])
        self.torgb = ToRGBLayer(FEATURE_CHANNELS, 3, w_dim) if rk.get("use_torgb_raw", False) else None
        self.bcg_synthesis = (SynthesisNetwork(w_dim, img_resolution=self.superresolution.input_resolution,
                                               img_channels=FEATURE_CHANNELS, **bcg_kwargs)
                              if rk.get("use_background", False) else None)
        self.t_mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=3, num_ws=1, last_activation="linear",
                                        lr_multiplier=1.0, **cfg.mapping_kwargs)
        # Registered on G by the official training loop; unused here but part of every checkpoint.
        self.register_buffer("dataset_label_std", torch.zeros([c_dim]))
        self.neural_rendering_resolution = neural_res
        self._last_planes = None

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def from_config(cls, cfg: GeneratorConfig) -> "TriGridGenerator":
        return cls(**cfg.init_kwargs(), neural_rendering_resolution=cfg.neural_rendering_resolution)

    @property
    def num_ws(self) -> int:
        return self.backbone.num_ws

    # ------------------------------------------------------------------ latent side

    def _check_zc(self, z: torch.Tensor | None, c: torch.Tensor) -> None:
        n = c.shape[0] if c.ndim == 2 else None
        if c.ndim != 2 or c.shape[1] != self.c_dim:
            raise InputError(f"camera label c must be [N, {self.c_dim}], got {tuple(c.shape)}")
        if z is not None and (z.ndim != 2 or z.shape[1] != self.z_dim or z.shape[0] != n):
            raise InputError(f"latent z must be [{n}, {self.z_dim}], got {tuple(z.shape)}")

    def _conditioning(self, c: torch.Tensor) -> torch.Tensor:
        if self.rendering_kwargs["c_gen_conditioning_zero"]:
            c = torch.zeros_like(c)
        return c

    def mapping(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False) -> torch.Tensor:
        """ws [N, num_ws, w_dim] from z and the (unshifted) camera label."""
        self._check_zc(z, c)
        c = self._conditioning(c)
        # Official default c_scale is 0 when the key is absent; every official config sets it to 1.
        return self.backbone.mapping(z, c * self.rendering_kwargs.get("c_scale", 0), truncation_psi=truncation_psi,
                                     truncation_cutoff=truncation_cutoff, update_emas=update_emas)

    def apply_delta_c(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        """(c_render, delta): the label with the predicted camera translation offset added, and the offset [N,3]."""
        self._check_zc(z, c)
        c = self._conditioning(c)  # official quirk: the zeroed label is also the one that gets shifted
        delta = self.t_mapping(z, c * self.rendering_kwargs.get("c_scale", 0), truncation_psi=truncation_psi,
                               truncation_cutoff=truncation_cutoff, update_emas=update_emas).squeeze(1)
        c_new = c.clone()
        c_new[:, list(TRANSLATION_ENTRIES)] += delta.to(c_new.dtype)
        return c_new, delta

    # ------------------------------------------------------------------ tri-grid and rendering

    def planes(self, ws, update_emas=False, **synthesis_kwargs) -> torch.Tensor:
        """Backbone tri-grid [N, 3, 32*D, H, W] (raw backbone output viewed per plane)."""
        raw = self.backbone.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)
        return self._as_planes(raw)

    def _as_planes(self, raw: torch.Tensor) -> torch.Tensor:
        return raw.view(raw.shape[0], 3, FEATURE_CHANNELS * self.triplane_depth, raw.shape[-2], raw.shape[-1])

    def synthesis(self, ws, c, neural_rendering_resolution=None, update_emas=False, cache_backbone=False,
                  use_cached_backbone=False, noise_mode="random", deterministic=False, ws_bcg=None,
                  return_intermediates=False, render_overrides: dict | None = None, planes: torch.Tensor | None = None,
                  **synthesis_kwargs) -> dict:
        """Render W+ codes ws [N, num_ws, w_dim] from camera c [N, 25] exactly as given (no Δ added here).

        ws may also be [1, num_ws, w_dim] for N cameras: one head seen from N views, its tri-grid and
        background made once (the same images as ws repeated N times, at a fraction of the cost).
        ``neural_rendering_resolution`` and ``render_overrides`` (entries of ``rendering_kwargs``,
        e.g. ``{"ray_start": 2.35}``) apply to this call only: the network itself is never changed
        by rendering (the official code keeps the last resolution asked for). ``planes``: the tri-grid
        of ``ws`` from :meth:`planes`, when it is already made (the backbone then does not run).
        """
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise InputError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        if c.ndim != 2 or c.shape[1] < 25 or (c.shape[0] != ws.shape[0] and ws.shape[0] != 1):
            raise InputError(f"camera label c must be [{ws.shape[0]}, 25], got {tuple(c.shape)}")
        res = neural_rendering_resolution or self.neural_rendering_resolution
        options = self.rendering_kwargs if not render_overrides else {**self.rendering_kwargs, **render_overrides}
        synthesis_kwargs["noise_mode"] = noise_mode
        n = c.shape[0]

        with no_autocast(c.device):
            c32 = c.float()
            ray_origins, ray_directions = self.ray_sampler(c32[:, :16].reshape(-1, 4, 4),
                                                           c32[:, 16:25].reshape(-1, 3, 3), res)

        if planes is not None:
            raw_planes = planes.flatten(1, 2)
        elif use_cached_backbone and self._last_planes is not None:
            raw_planes = self._last_planes
        else:
            raw_planes = self.backbone.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)
        if cache_backbone:
            self._last_planes = raw_planes
        planes = self._as_planes(raw_planes)

        rendered = self.renderer(planes, self.decoder, ray_origins, ray_directions, options,
                                 deterministic=deterministic, return_intermediates=return_intermediates)
        feature_samples, depth_samples, weights_samples = rendered[:3]
        feature_image = feature_samples.permute(0, 2, 1).reshape(n, feature_samples.shape[-1], res, res).contiguous()
        depth_image = depth_samples.permute(0, 2, 1).reshape(n, 1, res, res)
        weights_image = weights_samples.permute(0, 2, 1).reshape(n, 1, res, res)
        render_feature_image = feature_image

        if self.decoder.activation == "sigmoid":
            feature_image = feature_image * 2 - 1  # [0,1] colours → [-1,1], as the official SR input

        bcg_image = None
        if self.bcg_synthesis is not None:
            k = self.bcg_synthesis.num_ws
            ws_b = (ws if ws_bcg is None else ws_bcg)[:, :k]
            if ws_b.shape[1] < k:  # too few rows: repeat the last one
                ws_b = torch.cat([ws_b, ws_b[:, -1:].repeat(1, k - ws_b.shape[1], 1)], 1)
            bcg_image = self.bcg_synthesis(ws_b, update_emas=update_emas, **synthesis_kwargs)
            bcg_resized = F.interpolate(bcg_image, size=feature_image.shape[2:], mode="bilinear",
                                        align_corners=False, antialias=options["sr_antialias"])
            feature_image = feature_image + (1 - weights_image) * bcg_resized

        ws = ws.expand(n, -1, -1)  # per view from here on (torgb and super-resolution see images)
        if self.torgb is not None:
            rgb_image = self.torgb(feature_image, ws[:, -1], fused_modconv=False)
            rgb_image = rgb_image.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        else:
            rgb_image = feature_image[:, :3]
        sr_kwargs = dict(synthesis_kwargs, noise_mode=options["superresolution_noise_mode"])
        sr_image = self.superresolution(rgb_image, feature_image, ws, **sr_kwargs)
        mask_image = _as_mask_image(weights_image)

        out = {"image": sr_image, "image_raw": rgb_image, "image_depth": depth_image, "image_mask": mask_image}
        if return_intermediates:
            extras = rendered[3]
            out.update(planes=raw_planes, ray_origins=ray_origins, ray_directions=ray_directions,
                       depths_coarse=extras["depths_coarse"], depths_fine=extras.get("depths_fine"),
                       render_feature_image=render_feature_image, render_depth=depth_image,
                       render_weights_sum=weights_image, bcg_image=bcg_image, sr_input_feature=feature_image)
        return out

    def opacity(self, planes, c, resolution: int, deterministic=False, render_overrides: dict | None = None
                ) -> torch.Tensor:
        """The accumulated opacity (``image_mask`` of :meth:`synthesis`) [N,1,res,res] of the tri-grid
        ``planes`` (from :meth:`planes`; batch N or 1) seen by cameras ``c`` [N,25] at ``resolution``
        rays a side: the renderer alone, without background, to-RGB or super-resolution, for losses
        that read the outline only."""
        options = self.rendering_kwargs if not render_overrides else {**self.rendering_kwargs, **render_overrides}
        with no_autocast(c.device):
            c32 = c.float()
            origins, directions = self.ray_sampler(c32[:, :16].reshape(-1, 4, 4), c32[:, 16:25].reshape(-1, 3, 3),
                                                   resolution)
        weights = self.renderer(planes, self.decoder, origins, directions, options, deterministic=deterministic)[2]
        return _as_mask_image(weights.permute(0, 2, 1).reshape(c.shape[0], 1, resolution, resolution))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, neural_rendering_resolution=None,
                update_emas=False, cache_backbone=False, use_cached_backbone=False, **synthesis_kwargs) -> dict:
        """Map z with the unshifted label, render from the label shifted by the learned camera offset."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        c_render, _ = self.apply_delta_c(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                                         update_emas=update_emas)
        return self.synthesis(ws, c_render, neural_rendering_resolution=neural_rendering_resolution,
                              update_emas=update_emas, cache_backbone=cache_backbone,
                              use_cached_backbone=use_cached_backbone, **synthesis_kwargs)

    # ------------------------------------------------------------------ point queries

    def sample(self, coordinates, directions, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False,
               noise_mode="random", deterministic=False, **synthesis_kwargs) -> dict:
        """Raw decoder outputs {'sigma' [N,M,1], 'rgb' [N,M,32]} at world points [N,M,3] (no crop, no activation)."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.sample_mixed(coordinates, directions, ws, update_emas=update_emas, noise_mode=noise_mode,
                                 deterministic=deterministic, **synthesis_kwargs)

    def sample_mixed(self, coordinates, directions, ws, truncation_psi=1, truncation_cutoff=None,
                     update_emas=False, noise_mode="random", deterministic=False, **synthesis_kwargs) -> dict:
        """Like ``sample`` but from ready W+ codes (truncation arguments are accepted and ignored, as officially)."""
        del truncation_psi, truncation_cutoff
        if coordinates.ndim != 3 or coordinates.shape[-1] != 3 or coordinates.shape[0] != ws.shape[0]:
            raise InputError(f"coordinates must be [{ws.shape[0]}, M, 3], got {tuple(coordinates.shape)}")
        planes = self.planes(ws, update_emas=update_emas, noise_mode=noise_mode, **synthesis_kwargs)
        return self.renderer.run_model(planes, self.decoder, coordinates, directions, self.rendering_kwargs,
                                       deterministic=deterministic)

    def extra_repr(self) -> str:
        return (f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, img_resolution={self.img_resolution}, "
                f"neural_rendering_resolution={self.neural_rendering_resolution}")


def _as_mask_image(weights_image: torch.Tensor) -> torch.Tensor:
    """The official ``image_mask``: the summed compositing weights stretched by 0.1 % either way."""
    return weights_image * (1 + 2 * 0.001) - 0.001
