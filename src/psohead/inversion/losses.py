"""Image losses for inversion: pixel MSE, opacity bounds and interchangeable perceptual backends.

Every perceptual backend maps two image batches in [-1, 1] ([N,3,H,W]) to a distance per sample
([N]), differentiable in both arguments. Inversion compares renders with fixed targets, so a
backend may also return ``target_features(y)`` once and take them as ``forward(x, y, features)``
(LPIPS and dfeat then run their network on the renders only). Backends:

* ``lpips``  - LPIPS-VGG16 (the official projector's term): our VGG16 definition loaded from a
  user-supplied torchvision-layout state_dict (.pth read with ``weights_only=True``, or
  .safetensors) plus the LPIPS linear layers (the small ``vgg.pth`` that the pip packages
  ``lpips`` / ``torchmetrics`` ship; found automatically when one is installed).
* ``dfeat``  - discriminator features of the loaded network (offline, no extra weights).
* ``msssim`` - 1 - MS-SSIM (offline, no weights).
* ``none``   - zero.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..nn.ssim import MS_SSIM_WEIGHTS, gaussian_window, ms_ssim, ssim

# LPIPS taps after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of torchvision's vgg16.features.
_VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_LPIPS_TAPS = (3, 8, 15, 22, 29)
_LPIPS_CHANNELS = (64, 128, 256, 512, 512)
# LPIPS input scaling (maps [-1,1] images to the statistics VGG was trained with).
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)
# The official projector compares at 256x256 (area downsampling of the 512 images).
PERCEPTUAL_RESOLUTION = 256


def masked_mse(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error per sample [N]; with a mask [N,1,H',W'] only weighted pixels count."""
    err = (x - y).square()
    if mask is None:
        return err.flatten(1).mean(1)
    if mask.shape[-2:] != x.shape[-2:]:
        mask = F.interpolate(mask, size=x.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
    mask = mask.clamp(0, 1).expand_as(err)
    return (err * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1.0)


def opacity_loss(opacity: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
    """Per view [N]: mean over pixels of the squared amount by which ``opacity`` [N,1,h,w] leaves
    ``bounds`` [N,2,h',w'] (channel 0 the most allowed, 1 the least; resized to the opacity's size)."""
    if bounds.shape[-2:] != opacity.shape[-2:]:
        bounds = F.interpolate(bounds, size=opacity.shape[-2:], mode="bilinear", align_corners=False)
    over = (opacity - bounds[:, :1]).clamp_min(0)
    under = (bounds[:, 1:] - opacity).clamp_min(0)
    return (over.square() + under.square()).flatten(1).mean(1)


def area_downsample(x: torch.Tensor, size: int = PERCEPTUAL_RESOLUTION) -> torch.Tensor:
    if x.shape[-1] > size:
        x = F.adaptive_avg_pool2d(x, (size, size))
    return x


class PerceptualLoss(torch.nn.Module):
    """Base class: ``forward(x, y, target_features=None) -> [N]``; ``name`` is recorded in
    reconstruction.json. ``target_features(y)`` is None where nothing about y can be kept."""

    name = "none"

    def target_features(self, y: torch.Tensor):
        return None

    def forward(self, x: torch.Tensor, y: torch.Tensor, target_features=None) -> torch.Tensor:
        return x.new_zeros(x.shape[0])


def _feature_distance(fx: list[torch.Tensor], fy: list[torch.Tensor], channel_weights=None) -> torch.Tensor:
    """LPIPS-style sum over taps of the spatial mean of weighted squared unit-feature differences."""
    total = fx[0].new_zeros(fx[0].shape[0])
    for i, (a, b) in enumerate(zip(fx, fy)):
        d = (_unit_channels(a) - b).square()
        total = total + (d if channel_weights is None else d * channel_weights[i]).sum(1).mean((1, 2))
    return total


class VGG16Features(torch.nn.Module):
    """VGG16 convolution stack with torchvision's ``features.<i>`` parameter names."""

    def __init__(self):
        super().__init__()
        layers, ch = [], 3
        for item in _VGG16_LAYOUT:
            if item == "M":
                layers.append(torch.nn.MaxPool2d(2, 2))
            else:
                layers += [torch.nn.Conv2d(ch, item, 3, padding=1), torch.nn.ReLU()]
                ch = item
        self.features = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _LPIPS_TAPS:
                taps.append(x)
        return taps


def _read_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InputError(f"{what}: file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any parse failure is a bad user file
        raise InputError(f"{what}: cannot read {path} ({type(err).__name__}: {err})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{what}: {path} does not hold a state_dict of tensors")
    return state


def load_vgg16(path: str | Path) -> VGG16Features:
    """VGG16 features from a torchvision-layout state_dict (classifier weights are ignored)."""
    state = _read_state_dict(Path(path), "VGG16 weights")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    feats = {k: v for k, v in state.items() if k.startswith("features.")}
    net = VGG16Features()
    expected = net.state_dict()
    missing = [k for k in expected if k not in feats]
    bad = [k for k in expected if k in feats and feats[k].shape != expected[k].shape]
    if missing or bad:
        names = (missing + bad)[:4]
        raise InputError(f"VGG16 weights: {path} is not a torchvision vgg16 state_dict "
                         f"(missing or mis-shaped: {', '.join(names)})")
    net.load_state_dict(feats, strict=True)
    return net.eval().requires_grad_(False)


def find_lpips_linear_weights() -> Path | None:
    """The LPIPS v0.1 VGG linear layers shipped by an installed ``lpips`` or ``torchmetrics``."""
    candidates = (("lpips", ("weights", "v0.1", "vgg.pth")),
                  ("torchmetrics", ("functional", "image", "lpips_models", "vgg.pth")))
    for package, parts in candidates:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
        if path.is_file():
            return path
    return None


def load_lpips_linear(path: str | Path) -> list[torch.Tensor]:
    """Five non-negative channel weights [C] from an LPIPS ``vgg.pth`` (keys ``lin<k>...weight``)."""
    state = _read_state_dict(Path(path), "LPIPS linear weights")
    found = {}
    for key, value in state.items():
        m = re.match(r"^(?:.*\.)?lin(\d)\..*weight$", key)
        if m:
            found[int(m.group(1))] = value.reshape(-1).float()
    weights = [found.get(i) for i in range(5)]
    if any(w is None or w.numel() != c for w, c in zip(weights, _LPIPS_CHANNELS)):
        raise InputError(f"LPIPS linear weights: {path} lacks lin0..lin4 with 64/128/256/512/512 channels")
    return weights


def _unit_channels(x: torch.Tensor) -> torch.Tensor:
    return x / (x.square().sum(1, keepdim=True).sqrt() + 1e-10)


class LPIPSVGG16(PerceptualLoss):
    """LPIPS distance: per tap, unit-normalise channels, weight squared differences, average space.

    Without linear weights every channel gets weight 1 (the LPIPS "baseline" variant).
    """

    name = "lpips-vgg16"

    def __init__(self, vgg: VGG16Features, linear: list[torch.Tensor] | None = None):
        super().__init__()
        self.vgg = vgg.eval().requires_grad_(False)
        if linear is None:
            self.name = "lpips-vgg16-baseline"
            linear = [torch.ones(c) for c in _LPIPS_CHANNELS]
        for i, w in enumerate(linear):
            self.register_buffer(f"lin{i}", w.reshape(1, -1, 1, 1).clone())
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).reshape(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).reshape(1, 3, 1, 1))

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.vgg((area_downsample(x) - self.shift) / self.scale)

    @torch.no_grad()
    def target_features(self, y: torch.Tensor) -> list[torch.Tensor]:
        return [_unit_channels(f) for f in self._taps(y)]

    def forward(self, x: torch.Tensor, y: torch.Tensor, target_features=None) -> torch.Tensor:
        if target_features is None:  # one VGG pass over both batches
            taps = self._taps(torch.cat([x, y]))
            fx, target_features = [f[:len(x)] for f in taps], [_unit_channels(f[len(x):]) for f in taps]
        else:
            fx = self._taps(x)
        return _feature_distance(fx, target_features, [getattr(self, f"lin{i}") for i in range(len(fx))])


class _StopForward(Exception):
    pass


class DiscriminatorFeatures(PerceptualLoss):
    """Distance between intermediate discriminator activations (LPIPS-style, unit weights).

    The discriminator sees [image, raw image, mask]; both images get the same constant
    all-foreground mask so that only their pixels differ. The forward pass stops after the
    last block used.
    """

    name = "dfeat"

    def __init__(self, D: torch.nn.Module, num_blocks: int = 4, raw_resolution: int = 64):
        super().__init__()
        self.D = D.eval().requires_grad_(False)
        resolutions = list(getattr(D, "block_resolutions", []))
        if not resolutions:
            raise InputError("discriminator features: the discriminator has no block_resolutions")
        self.blocks = [f"b{r}" for r in resolutions[:num_blocks]]
        self.raw_resolution = raw_resolution
        self.img_resolution = int(getattr(D, "img_resolution", resolutions[0]))

    def _features(self, img: torch.Tensor) -> list[torch.Tensor]:
        feats: list[torch.Tensor] = []
        last = self.blocks[-1]

        def hook(name):
            def fn(_module, _inputs, output):
                feats.append((output[0] if isinstance(output, tuple) else output).float())
                if name == last:
                    raise _StopForward
            return fn

        handles = [getattr(self.D, name).register_forward_hook(hook(name)) for name in self.blocks]
        if img.shape[-1] != self.img_resolution:
            img = F.interpolate(img, size=(self.img_resolution,) * 2, mode="bilinear", align_corners=False,
                                antialias=True)
        raw = F.interpolate(img, size=(self.raw_resolution,) * 2, mode="bilinear", align_corners=False,
                            antialias=True)
        mask = img.new_ones(img.shape[0], 1, self.raw_resolution, self.raw_resolution)
        c = img.new_zeros(img.shape[0], getattr(self.D, "c_dim", 25))
        try:
            self.D({"image": img, "image_raw": raw, "image_mask": mask}, c)
        except _StopForward:
            pass
        finally:
            for h in handles:
                h.remove()
        return feats

    @torch.no_grad()
    def target_features(self, y: torch.Tensor) -> list[torch.Tensor]:
        return [_unit_channels(f) for f in self._features(y)]

    def forward(self, x: torch.Tensor, y: torch.Tensor, target_features=None) -> torch.Tensor:
        if target_features is None:
            feats = self._features(torch.cat([x, y]))
            fx, target_features = [f[:len(x)] for f in feats], [_unit_channels(f[len(x):]) for f in feats]
        else:
            fx = self._features(x)
        return _feature_distance(fx, target_features)


class MSSSIM(PerceptualLoss):
    """1 - MS-SSIM (5 scales) on [0,1] images, compared at most at 256 px like the official LPIPS.

    MS-SSIM needs side > 16 * (win_size - 1), so small renders get a smaller window
    (128 px: 7); below 48 px a single-scale SSIM is used. The scale weights are a buffer and each
    window is made once per device, so no step copies anything from the host.
    """

    name = "msssim"

    def __init__(self, win_size: int = 11):
        super().__init__()
        self.win_size = win_size
        self.register_buffer("weights", torch.tensor(MS_SSIM_WEIGHTS), persistent=False)
        self._windows: dict[tuple, torch.Tensor] = {}  # (taps, device) -> window, made on first use

    def _window(self, size: int, device) -> torch.Tensor:
        key = (size, str(device))
        if key not in self._windows:
            self._windows[key] = gaussian_window(size, device=device)
        return self._windows[key]

    def forward(self, x: torch.Tensor, y: torch.Tensor, target_features=None) -> torch.Tensor:
        x, y = area_downsample(x), area_downsample(y)
        x01, y01 = ((x + 1) / 2).clamp(0, 1), ((y + 1) / 2).clamp(0, 1)
        side = min(x.shape[-2:])
        win = self.win_size
        while win > 3 and side <= 16 * (win - 1):
            win -= 2
        if side <= 16 * (win - 1):
            return 1 - ssim(x01, y01, self._window(min(win, side), x.device))
        return 1 - ms_ssim(x01, y01, self._window(win, x.device), self.weights)


PERCEPTUAL_BACKENDS = ("auto", "lpips", "dfeat", "msssim", "none")


def build_perceptual(kind: str = "auto", vgg16: str | Path | None = None, lpips_linear: str | Path | None = None,
                     discriminator: torch.nn.Module | None = None) -> PerceptualLoss:
    """Make a backend. ``auto``: LPIPS if VGG16 weights are given, else MS-SSIM (see docs/reconstruct.md)."""
    if kind not in PERCEPTUAL_BACKENDS:
        raise InputError(f"unknown perceptual backend {kind!r}; choose one of {', '.join(PERCEPTUAL_BACKENDS)}")
    if kind == "auto":
        kind = "lpips" if vgg16 is not None else "msssim"
    if kind == "lpips":
        if vgg16 is None:
            raise InputError("perceptual backend 'lpips' needs VGG16 weights (--vgg16 PATH)")
        lin_path = lpips_linear if lpips_linear is not None else find_lpips_linear_weights()
        linear = load_lpips_linear(lin_path) if lin_path is not None else None
        return LPIPSVGG16(load_vgg16(vgg16), linear)
    if kind == "dfeat":
        if discriminator is None:
            raise InputError("perceptual backend 'dfeat' needs a discriminator (a network file that contains D)")
        return DiscriminatorFeatures(discriminator)
    if kind == "msssim":
        return MSSSIM()
    return PerceptualLoss()
