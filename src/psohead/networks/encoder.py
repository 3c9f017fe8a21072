"""A feed-forward first guess of the latent: aligned crop + camera label -> W+ code.

The encoder belongs to one generator: it predicts an offset from that generator's mean latent
``w_avg`` (a buffer, so a file holds everything it needs) in units of the latents' spread
``w_scale``. The last layers start at zero, so an untrained encoder returns the mean latent,
where the projector starts without one. The convolutions are our own small residual stack,
trained from scratch on the generator's samples (``psohead train-encoder``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..nn import filtered_resize
from .config import EncoderConfig

_SLOPE = 0.2  # leaky ReLU slope, as in the StyleGAN networks


def _groups(channels: int) -> int:
    return math.gcd(8, channels)


class EncoderBlock(torch.nn.Module):
    """Pre-activation residual block that halves the resolution (average pooling on both paths)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm0 = torch.nn.GroupNorm(_groups(in_channels), in_channels)
        self.conv0 = torch.nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.norm1 = torch.nn.GroupNorm(_groups(in_channels), in_channels)
        self.conv1 = torch.nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.skip = torch.nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv0(F.leaky_relu(self.norm0(x), _SLOPE))
        y = self.conv1(F.leaky_relu(self.norm1(y), _SLOPE))
        # 1/sqrt(2) keeps the sum of the two paths at the scale of one
        return (F.avg_pool2d(self.skip(x), 2) + F.avg_pool2d(y, 2)) * math.sqrt(0.5)


class LatentEncoder(torch.nn.Module):
    """``E(image [N,3,H,W] in [-1,1], label [N,25]) -> ws [N,num_ws,w_dim]``; any H = W (the
    crop is resized to ``img_resolution``). Constructor kwargs = :class:`EncoderConfig`."""

    def __init__(self, num_ws: int, w_dim: int, c_dim: int = 25, img_resolution: int = 128, img_channels: int = 3,
                 channel_base: int = 2048, channel_max: int = 256, feature_dim: int = 512,
                 bottom_resolution: int = 4):
        super().__init__()
        self.config = EncoderConfig(num_ws=num_ws, w_dim=w_dim, c_dim=c_dim, img_resolution=img_resolution,
                                    img_channels=img_channels, channel_base=channel_base, channel_max=channel_max,
                                    feature_dim=feature_dim, bottom_resolution=bottom_resolution)
        self.num_ws, self.w_dim, self.c_dim = num_ws, w_dim, c_dim
        self.img_resolution = img_resolution

        def channels(res: int) -> int:
            return min(channel_base // res, channel_max)

        self.fromrgb = torch.nn.Conv2d(img_channels, channels(img_resolution), 1)
        blocks, res = [], img_resolution
        while res > bottom_resolution:
            blocks.append(EncoderBlock(channels(res), channels(res // 2)))
            res //= 2
        self.blocks = torch.nn.Sequential(*blocks)
        self.bottom_norm = torch.nn.GroupNorm(_groups(channels(res)), channels(res))
        flat = channels(res) * res * res
        self.fc = torch.nn.Sequential(torch.nn.Linear(flat + c_dim, feature_dim), torch.nn.LeakyReLU(_SLOPE),
                                      torch.nn.Linear(feature_dim, feature_dim), torch.nn.LeakyReLU(_SLOPE))
        # One offset shared by every row (the generator's samples have equal rows) plus one per row.
        self.to_w = torch.nn.Linear(feature_dim, w_dim)
        self.to_ws = torch.nn.Linear(feature_dim, num_ws * w_dim)
        for layer in (self.to_w, self.to_ws):
            torch.nn.init.zeros_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.register_buffer("w_scale", torch.ones([]))

    @classmethod
    def from_config(cls, cfg: EncoderConfig) -> "LatentEncoder":
        return cls(**cfg.to_dict())

    def forward(self, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.fromrgb(filtered_resize(img.float(), self.img_resolution))
        x = F.leaky_relu(self.bottom_norm(self.blocks(x)), _SLOPE)
        h = self.fc(torch.cat([x.flatten(1), c.float().reshape(len(x), -1)[:, :self.c_dim]], 1))
        offset = self.to_w(h)[:, None] + self.to_ws(h).view(-1, self.num_ws, self.w_dim)
        return self.w_avg + self.w_scale * offset

    def extra_repr(self) -> str:
        return f"num_ws={self.num_ws}, w_dim={self.w_dim}, img_resolution={self.img_resolution}"
