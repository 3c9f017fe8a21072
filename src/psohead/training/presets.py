"""Named training set-ups: network configs + training options that belong together.

* ``official``  the released PanoHead run (spec section 0): 512² output, 25000 kimg, batch 32.
* ``default``   the bundled default model: 64² neural rendering → 128² through the 2X head,
                tri-grid 128² × 3, narrow backbone and discriminator (channel_base 4096, max 96), 24 + 24 samples per ray.
                Small enough that inverting a photo on a 2-core CPU stays within minutes and
                that a full training snapshot stays well below 64 MB.
* ``default256`` the same with the 4X head (256² output); about 3x slower per step on CPU.
* ``tiny``      a few-second-per-step configuration for tests and smoke runs.

The official schedules (blur 200 kimg, density noise 200 kimg, GPC 1000 kimg) are meant for a
25000-kimg run; the small presets shorten them in proportion to their shorter runs.
"""
from __future__ import annotations

from ..errors import InputError
from ..networks.config import DiscriminatorConfig, GeneratorConfig, _official_rendering_kwargs
from .losses import LossConfig
from .options import TrainOptions


def _small_generator(output: int, triplane: int, render: int, samples: int, channel_base: int,
                     channel_max: int) -> GeneratorConfig:
    sr = {128: "SuperresolutionHybrid2X", 256: "SuperresolutionHybrid4X", 512: "SuperresolutionHybrid8X"}
    rendering = _official_rendering_kwargs()
    rendering.update(image_resolution=output, superresolution_module=f"training.superresolution.{sr[output]}",
                     triplane_size=triplane, depth_resolution=samples, depth_resolution_importance=samples)
    return GeneratorConfig(
        img_resolution=output, rendering_kwargs=rendering, sr_num_fp16_res=0,
        sr_kwargs={"channel_base": channel_base, "channel_max": channel_max,
                   "fused_modconv_default": "inference_only"},
        channel_base=channel_base, channel_max=channel_max, num_fp16_res=0,
        neural_rendering_resolution=render)


def _small_discriminator(output: int, channel_base: int, channel_max: int) -> DiscriminatorConfig:
    return DiscriminatorConfig(img_resolution=output, seg_resolution=min(128, output), channel_base=channel_base,
                               channel_max=channel_max, num_fp16_res=0, conv_clamp=256)


def _small_options(kimg: float) -> dict:
    # Fades shortened for a run of a few thousand kimg; other loss weights stay official.
    loss = LossConfig(gpc_reg_prob=0.7, gpc_reg_fade_kimg=kimg / 5, blur_fade_kimg=kimg / 20,
                      density_noise_fade_kimg=kimg / 20, neural_rendering_resolution_initial=64)
    return dict(batch=32, batch_gpu=32, kimg=kimg, tick_kimg=4.0, snap_ticks=25, image_ticks=25,
                ema_kimg=10.0, precision="bf16", loss=loss, compact_snapshot=True, snapshot_part_mb=15.0,
                workers=6, keep_network_snapshots=False)


def preset(name: str) -> tuple[GeneratorConfig, DiscriminatorConfig, TrainOptions]:
    """(G config, D config, training options) of a named preset."""
    if name == "official":
        return GeneratorConfig.official(), DiscriminatorConfig.official(), TrainOptions(precision="fp32")
    if name == "default":
        G = _small_generator(128, triplane=128, render=64, samples=24, channel_base=4096, channel_max=96)
        return G, _small_discriminator(128, 4096, 96), TrainOptions(**_small_options(2000))
    if name == "default256":
        G = _small_generator(256, triplane=128, render=64, samples=24, channel_base=4096, channel_max=96)
        return G, _small_discriminator(256, 4096, 96), TrainOptions(**_small_options(2000))
    if name == "tiny":
        G = _small_generator(128, triplane=32, render=16, samples=6, channel_base=256, channel_max=16)
        G.rendering_kwargs["depth_resolution_importance"] = 6
        opts = _small_options(4)
        opts["loss"] = LossConfig(gpc_reg_fade_kimg=1, blur_fade_kimg=1, density_noise_fade_kimg=1,
                                  neural_rendering_resolution_initial=16)
        opts.update(batch=4, batch_gpu=4, tick_kimg=0.008, snap_ticks=1, image_ticks=1, precision="fp32",
                    ema_kimg=0.01, xflip=True, compact_snapshot=False, snapshot_part_mb=None, workers=0)
        return G, _small_discriminator(128, 256, 16), TrainOptions(**opts)
    raise InputError(f"unknown training preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")


PRESET_NAMES = ("default", "default256", "official", "tiny")
