"""Typed constructor configs for the generator and discriminator.

Field names equal the official constructor kwargs (`TriPlaneGenerator._init_kwargs`,
`MaskDualDiscriminatorV2` kwargs), so a config read from an official snapshot round-trips
without a renaming table. Presets: the official PanoHead run and the small parity-fixture model.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ..errors import InputError


class ConfigError(InputError):
    """A network config is missing a field or holds a value of the wrong kind."""


# Keys the generator reads from rendering_kwargs; everything else there is carried along untouched.
REQUIRED_RENDERING_KEYS = (
    "superresolution_module", "sr_antialias", "superresolution_noise_mode", "triplane_depth",
    "decoder_activation", "box_warp", "ray_start", "ray_end", "depth_resolution",
    "depth_resolution_importance", "clamp_mode", "disparity_space_sampling", "c_gen_conditioning_zero",
)
# Keys an official `_init_kwargs` / `G_kwargs` dict may hold besides the constructor kwargs.
_IGNORED_KEYS = frozenset({"class_name"})


def _official_rendering_kwargs() -> dict:
    # train.py --cfg=ffhq values plus the PanoHead options of the released run (spec section 0).
    return {
        "image_resolution": 512,
        "disparity_space_sampling": False,
        "clamp_mode": "softplus",
        "superresolution_module": "training.superresolution.SuperresolutionHybrid8XDC",
        "c_gen_conditioning_zero": False,
        "gpc_reg_prob": 0.7,
        "c_scale": 1,
        "superresolution_noise_mode": "none",
        "density_reg": 0.0,
        "density_reg_p_dist": 0.004,
        "reg_type": "l1",
        "decoder_lr_mul": 1,
        "decoder_activation": "none",
        "use_torgb_raw": True,
        "triplane_size": 256,
        "triplane_depth": 3,
        "trans_reg": 10.0,
        "use_background": True,
        "sr_antialias": True,
        "depth_resolution": 48,
        "depth_resolution_importance": 48,
        "ray_start": 2.25,
        "ray_end": 3.3,
        "box_warp": 1,
        "avg_camera_radius": 2.7,
        "avg_camera_pivot": [0, 0, 0.2],
    }


def _plain(value: Any) -> Any:
    """Deep copy into JSON types: EasyDict → dict, tuple → list, numpy scalar → Python scalar."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, str)):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # numpy / torch scalars
        return _plain(value.item())
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"config value {value} is not finite")
        return value
    raise ConfigError(f"config value of type {type(value).__name__} is not JSON-serialisable")


def _check_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"config field {name} must be an integer >= {minimum}, got {value!r}")


def _check_dict(name: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"config field {name} must be a dict, got {type(value).__name__}")


class _ConfigBase:
    """to_dict / from_dict shared by both configs."""

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict):
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__} expects a dict, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - _IGNORED_KEYS)
        if unknown:
            warnings.warn(f"{cls.__name__}: ignoring unknown config keys {unknown}", stacklevel=2)
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [n for n in required if n not in data]
        if missing:
            raise ConfigError(f"{cls.__name__}: missing config keys {missing}")
        return cls(**{k: _plain(v) for k, v in data.items() if k in names})

    def replace(self, **changes):
        return dataclasses.replace(copy.deepcopy(self), **changes)


@dataclass
class GeneratorConfig(_ConfigBase):
    """`TriPlaneGenerator` kwargs (+ the neural rendering resolution). Defaults = official PanoHead."""

    z_dim: int = 512
    w_dim: int = 512
    c_dim: int = 25
    img_resolution: int = 512
    img_channels: int = 3
    mapping_kwargs: dict = field(default_factory=lambda: {"num_layers": 2})
    rendering_kwargs: dict = field(default_factory=_official_rendering_kwargs)
    sr_num_fp16_res: int = 4
    sr_kwargs: dict = field(default_factory=lambda: {
        "channel_base": 32768, "channel_max": 512, "fused_modconv_default": "inference_only"})
    architecture: str = "skip"
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 0
    conv_clamp: Optional[int] = None
    fused_modconv_default: Union[str, bool] = "inference_only"
    neural_rendering_resolution: int = 64

    def __post_init__(self):
        for name in ("z_dim", "w_dim", "img_resolution", "img_channels", "channel_base", "channel_max",
                     "neural_rendering_resolution"):
            _check_int(name, getattr(self, name))
        _check_int("c_dim", self.c_dim, minimum=0)
        _check_int("num_fp16_res", self.num_fp16_res, minimum=0)
        _check_int("sr_num_fp16_res", self.sr_num_fp16_res, minimum=0)
        for name in ("mapping_kwargs", "rendering_kwargs", "sr_kwargs"):
            _check_dict(name, getattr(self, name))
        missing = [k for k in REQUIRED_RENDERING_KEYS if k not in self.rendering_kwargs]
        if missing:
            raise ConfigError(f"GeneratorConfig.rendering_kwargs lacks {missing}")

    def synthesis_kwargs(self) -> dict:
        """The `**synthesis_kwargs` TriPlaneGenerator forwards to its StyleGAN2 networks."""
        return {k: copy.deepcopy(getattr(self, k)) for k in
                ("architecture", "channel_base", "channel_max", "num_fp16_res", "conv_clamp",
                 "fused_modconv_default")}

    def init_kwargs(self) -> dict:
        """Constructor kwargs exactly as the official `_init_kwargs` stores them."""
        d = self.to_dict()
        d.pop("neural_rendering_resolution")
        return d

    @classmethod
    def official(cls) -> "GeneratorConfig":
        """The released PanoHead generator (53,741,548 parameters)."""
        return cls()

    @classmethod
    def fixture_small(cls) -> "GeneratorConfig":
        """The shrunk parity-fixture generator (`G_kwargs` of panohead_small_meta.json)."""
        rendering = _official_rendering_kwargs()
        rendering.update(depth_resolution=12, depth_resolution_importance=12)
        return cls(
            z_dim=64, channel_base=512, channel_max=16, sr_num_fp16_res=0, rendering_kwargs=rendering,
            sr_kwargs={"channel_base": 512, "channel_max": 16, "fused_modconv_default": "inference_only"},
        )


@dataclass
class DiscriminatorConfig(_ConfigBase):
    """`MaskDualDiscriminatorV2` kwargs (D_kwargs + common kwargs). Defaults = official PanoHead."""

    c_dim: int = 25
    img_resolution: int = 512
    img_channels: int = 3
    seg_resolution: int = 128
    seg_channels: int = 1
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 4
    conv_clamp: Optional[int] = 256
    disc_c_noise: float = 0
    block_kwargs: dict = field(default_factory=lambda: {"freeze_layers": 0})
    mapping_kwargs: dict = field(default_factory=dict)
    epilogue_kwargs: dict = field(default_factory=lambda: {"mbstd_group_size": 4})

    def __post_init__(self):
        for name in ("img_resolution", "img_channels", "seg_resolution", "seg_channels", "channel_base",
                     "channel_max"):
            _check_int(name, getattr(self, name))
        _check_int("c_dim", self.c_dim, minimum=0)
        _check_int("num_fp16_res", self.num_fp16_res, minimum=0)
        for name in ("block_kwargs", "mapping_kwargs", "epilogue_kwargs"):
            _check_dict(name, getattr(self, name))

    @classmethod
    def official(cls) -> "DiscriminatorConfig":
        """The released PanoHead discriminator (31,359,808 parameters)."""
        return cls()

    @classmethod
    def fixture_small(cls) -> "DiscriminatorConfig":
        """The shrunk parity-fixture discriminator (`D_kwargs` of panohead_small_meta.json)."""
        return cls(channel_base=512, channel_max=16, num_fp16_res=0)


@dataclass
class EncoderConfig(_ConfigBase):
    """`LatentEncoder` kwargs: an aligned crop + camera label -> W+ code of one generator."""

    num_ws: int  # W+ rows of the generator the encoder belongs to
    w_dim: int  # width of one W row
    c_dim: int = 25  # camera label entries fed next to the image features
    img_resolution: int = 128  # the crop is resized to this before the convolutions
    img_channels: int = 3
    channel_base: int = 2048  # channels at a resolution: min(channel_base // res, channel_max)
    channel_max: int = 256
    feature_dim: int = 512  # width of the fully connected layers between the convolutions and the code
    bottom_resolution: int = 4  # the convolutions stop at this size; every position feeds the head

    def __post_init__(self):
        for name in ("num_ws", "w_dim", "img_resolution", "img_channels", "channel_base", "channel_max",
                     "feature_dim", "bottom_resolution"):
            _check_int(name, getattr(self, name))
        _check_int("c_dim", self.c_dim, minimum=0)
        for name in ("img_resolution", "bottom_resolution"):
            value = getattr(self, name)
            if value & (value - 1):
                raise ConfigError(f"config field {name} must be a power of two, got {value}")
        if self.bottom_resolution >= self.img_resolution:
            raise ConfigError(f"config field bottom_resolution ({self.bottom_resolution}) must be below "
                              f"img_resolution ({self.img_resolution})")


PRESETS = {
    "official": (GeneratorConfig.official, DiscriminatorConfig.official),
    "fixture_small": (GeneratorConfig.fixture_small, DiscriminatorConfig.fixture_small),
}
