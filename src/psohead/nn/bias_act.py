"""Bias + activation + gain + clamp in plain PyTorch (the official fused CUDA op's meaning).

Everything is built from differentiable torch ops, so second-order gradients (R1) just work.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class _Activation:
    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float


_SQRT2 = math.sqrt(2.0)

ACTIVATIONS: dict[str, _Activation] = {
    "linear": _Activation(lambda x, a: x, 0.0, 1.0),
    "relu": _Activation(lambda x, a: F.relu(x), 0.0, _SQRT2),
    "lrelu": _Activation(lambda x, a: F.leaky_relu(x, a), 0.2, _SQRT2),
    "tanh": _Activation(lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": _Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": _Activation(lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": _Activation(lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": _Activation(lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": _Activation(lambda x, a: torch.sigmoid(x) * x, 0.0, _SQRT2),
}


def activation_gain(act: str) -> float:
    """Default gain of an activation (sqrt(2) for relu-like ones, 1 otherwise)."""
    return _spec(act).def_gain


def _spec(act: str) -> _Activation:
    try:
        return ACTIVATIONS[act]
    except KeyError:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}") from None


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, dim: int = 1, act: str = "linear",
             alpha: float | None = None, gain: float | None = None,
             clamp: float | None = None) -> torch.Tensor:
    """y = clamp(gain * act(x + b), -clamp, clamp), with b broadcast along ``dim``.

    ``alpha`` / ``gain`` default to the activation's own values; ``clamp`` None or < 0 disables
    clamping (gradients are zero where the output was clamped).
    """
    spec = _spec(act)
    alpha = spec.def_alpha if alpha is None else float(alpha)
    gain = spec.def_gain if gain is None else float(gain)
    if b is not None:
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f"bias of shape {tuple(b.shape)} does not match dim {dim} of x {tuple(x.shape)}")
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.reshape(shape)
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
