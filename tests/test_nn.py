"""psohead.nn against independent references: direct numpy/scipy convolutions and closed forms."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F

from psohead.nn import (Conv2dLayer, FullyConnectedLayer, bias_act, conv2d_resample, downsample2d,
                        filter2d, gaussian_blur, gaussian_kernel, modulated_conv2d, normalize_2nd_moment,
                        setup_filter, upfirdn2d, upsample2d)


# ---------------------------------------------------------------- numpy reference for upfirdn2d

def _pad_or_crop(a: np.ndarray, x0: int, x1: int, y0: int, y1: int) -> np.ndarray:
    a = np.pad(a, [(max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0))])
    h, w = a.shape
    return a[max(-y0, 0): h - max(-y1, 0), max(-x0, 0): w - max(-x1, 0)]


def _ref_upfirdn(img: np.ndarray, f2: np.ndarray, up: int, down: int, pad: tuple, flip: bool,
                 gain: float) -> np.ndarray:
    """Spec 5.2 literally, one 2-D channel: zero-insert, pad/crop, convolve (valid), subsample."""
    h, w = img.shape
    u = np.zeros([h * up, w * up])
    u[::up, ::up] = img
    u = _pad_or_crop(u, *pad)
    op = scipy.signal.correlate2d if flip else scipy.signal.convolve2d
    return op(u, f2 * gain, mode="valid")[::down, ::down]


def _ref_batch(x: torch.Tensor, f2: np.ndarray, up=1, down=1, pad=(0, 0, 0, 0), flip=False, gain=1.0):
    xn = x.double().numpy()
    out = [[_ref_upfirdn(xn[n, c], f2, up, down, pad, flip, gain) for c in range(xn.shape[1])]
           for n in range(xn.shape[0])]
    return torch.from_numpy(np.array(out))


ASYM = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])  # 2x3, neither symmetric nor separable


@pytest.mark.parametrize("up,down,pad", [
    (1, 1, (0, 0, 0, 0)), (2, 1, (2, 1, 1, 0)), (1, 2, (1, 1, 2, 0)), (3, 2, (1, 2, 0, 3)),
    (1, 1, (-1, 2, 1, -2)),  # negative padding crops
    (2, 1, (-1, 3, 2, -1)), (3, 1, (0, 0, 0, 0)), (1, 3, (2, 0, 1, 1)),  # the zero-free up / down paths
])
@pytest.mark.parametrize("flip", [False, True])
def test_upfirdn2d_matches_direct_definition(up, down, pad, flip):
    x = torch.randn(2, 3, 7, 6)
    f = torch.from_numpy(ASYM).float()
    ours = upfirdn2d(x, f, up=up, down=down, padding=list(pad), flip_filter=flip, gain=1.7)
    ref = _ref_batch(x, ASYM, up, down, pad, flip, gain=1.7)  # 2-D filter: gain applied once
    assert ours.shape == ref.shape
    h = (7 * up + pad[2] + pad[3] - 2) // down + 1
    w = (6 * up + pad[0] + pad[1] - 3) // down + 1
    assert ours.shape[2:] == (h, w)
    torch.testing.assert_close(ours.double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("up,down", [(2, 1), (1, 2), (2, 2)])
def test_upfirdn2d_gradient_matches_finite_differences(up, down):
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    f = torch.from_numpy(ASYM)
    assert torch.autograd.gradcheck(lambda t: upfirdn2d(t, f, up=up, down=down, padding=[1, 2, 2, 0], gain=1.3),
                                    (x,))


def test_upfirdn2d_separable_filter_gets_full_gain():
    taps = np.arange(1.0, 10.0)  # 9 taps (asymmetric) stays 1-D in setup_filter
    f = setup_filter(taps.tolist())
    assert f.ndim == 1 and abs(float(f.sum()) - 1) < 1e-6
    x = torch.randn(1, 2, 12, 11)
    f2 = np.outer(taps, taps) / taps.sum() ** 2  # outer(f, f): row filter applied along y
    for flip in (False, True):
        ours = upfirdn2d(x, f, up=2, padding=[4, 4, 3, 5], flip_filter=flip, gain=3.0)
        ref = _ref_batch(x, f2, up=2, pad=(4, 4, 3, 5), flip=flip, gain=3.0)
        torch.testing.assert_close(ours.double(), ref, atol=1e-5, rtol=1e-5)


def test_setup_filter_outer_product_and_normalisation():
    f = setup_filter([1, 3, 3, 1])
    expect = torch.tensor([1.0, 3, 3, 1])
    torch.testing.assert_close(f, torch.outer(expect, expect) / 64)
    torch.testing.assert_close(setup_filter([1, 3, 3, 1], gain=4), 4 * torch.outer(expect, expect) / 64)


def test_resampling_helpers_sizes_and_constant_preservation():
    f = setup_filter([1, 3, 3, 1])
    x = torch.full([1, 1, 8, 8], 2.5)
    up = upsample2d(x, f)
    down = downsample2d(x, f)
    same = filter2d(x, f)
    assert up.shape[-2:] == (16, 16) and down.shape[-2:] == (4, 4) and same.shape[-2:] == (8, 8)
    # Away from the zero-padded border a constant stays the same constant (mean-preserving gains).
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 2.5))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full_like(down[..., 1:-1, 1:-1], 2.5))
    torch.testing.assert_close(same[..., 2:-2, 2:-2], torch.full_like(same[..., 2:-2, 2:-2], 2.5))


def test_resampling_helpers_padding_rules():
    f = setup_filter([1, 3, 3, 1])
    f2 = f.double().numpy()
    x = torch.randn(1, 2, 6, 6)
    # spec 5.2: upsample2d pads ((fw+up-1)//2, (fw-up)//2) = (2, 1); downsample2d (1, 1); filter2d (2, 1)
    torch.testing.assert_close(upsample2d(x, f).double(), _ref_batch(x, f2, up=2, pad=(2, 1, 2, 1), gain=4.0),
                               atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(downsample2d(x, f).double(), _ref_batch(x, f2, down=2, pad=(1, 1, 1, 1)),
                               atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(filter2d(x, f).double(), _ref_batch(x, f2, pad=(2, 1, 2, 1)),
                               atol=1e-6, rtol=1e-6)


def test_gaussian_blur_taps_and_identity():
    k = gaussian_kernel(10.0)
    assert k.numel() == 61
    taps = 2.0 ** -((np.arange(-30, 31) / 10.0) ** 2)
    np.testing.assert_allclose(k.numpy(), taps / taps.sum(), rtol=1e-6)
    x = torch.randn(1, 3, 16, 16)
    assert gaussian_blur(x, 0.2) is x  # floor(3σ) = 0 → no kernel
    ref = _ref_batch(x, np.outer(taps, taps) / taps.sum() ** 2, pad=(30, 30, 30, 30))
    torch.testing.assert_close(gaussian_blur(x, 10.0).double(), ref, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- bias_act

def test_bias_act_formulas():
    x = torch.randn(3, 5, 4)
    b = torch.randn(5)
    xb = x + b[None, :, None]
    torch.testing.assert_close(bias_act(x, b, act="lrelu"),
                               torch.where(xb > 0, xb, 0.2 * xb) * math.sqrt(2))
    torch.testing.assert_close(bias_act(x, b, act="lrelu", alpha=0.1, gain=3.0),
                               torch.where(xb > 0, xb, 0.1 * xb) * 3.0)
    torch.testing.assert_close(bias_act(x, b), xb)
    torch.testing.assert_close(bias_act(x, b, act="relu"), xb.clamp(min=0) * math.sqrt(2))
    torch.testing.assert_close(bias_act(x, b, act="swish"), xb / (1 + torch.exp(-xb)) * math.sqrt(2))
    torch.testing.assert_close(bias_act(x, b, act="softplus"), torch.log1p(torch.exp(xb)))
    # bias along another dim
    b2 = torch.randn(4)
    torch.testing.assert_close(bias_act(x, b2, dim=2, act="tanh"), torch.tanh(x + b2))
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act(x, act="gelu-ish")
    with pytest.raises(ValueError, match="bias"):
        bias_act(x, torch.randn(4))


def test_bias_act_clamp_values_and_gradients():
    x = torch.tensor([[-5.0, -0.5, 0.3, 2.0, 9.0]], requires_grad=True)
    y = bias_act(x, act="lrelu", clamp=1.0)
    expect = (torch.where(x > 0, x, 0.2 * x) * math.sqrt(2)).clamp(-1, 1)
    torch.testing.assert_close(y, expect.detach())
    (g,) = torch.autograd.grad(y.sum(), x)
    # zero gradient where clamped (|out| hit 1), slope·gain elsewhere
    torch.testing.assert_close(g, torch.tensor([[0.0, 0.2 * math.sqrt(2), math.sqrt(2), 0.0, 0.0]]))
    assert torch.equal(bias_act(x, act="linear", clamp=-1), x)  # negative clamp disables


def test_bias_act_double_backward():
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    for act in ("lrelu", "softplus", "swish"):
        assert torch.autograd.gradgradcheck(lambda x, b: bias_act(x, b, act=act, clamp=50.0), (x, b))


# ---------------------------------------------------------------- conv2d_resample

def _ref_conv_resample(x, w, f2, up, down, pad, flip_weight=True):
    """Direct definition: zero-insert, pad once, FIR (gain up²), correlate w, take every down-th."""
    xn, wn = x.double().numpy(), w.double().numpy()
    res = []
    for n in range(xn.shape[0]):
        chans = [_ref_upfirdn(xn[n, c], f2, up, 1, pad, False, up * up) if f2 is not None
                 else _pad_or_crop(xn[n, c], *pad) for c in range(xn.shape[1])]
        op = scipy.signal.correlate2d if flip_weight else scipy.signal.convolve2d
        res.append([sum(op(chans[c], wn[o, c], mode="valid") for c in range(xn.shape[1]))[::down, ::down]
                    for o in range(wn.shape[0])])
    return torch.from_numpy(np.array(res))


@pytest.mark.parametrize("k,up,down", [(3, 1, 1), (3, 2, 1), (3, 1, 2), (1, 1, 2), (1, 2, 1)])
@pytest.mark.parametrize("flip_weight", [True, False])
def test_conv2d_resample_matches_direct_definition(k, up, down, flip_weight):
    f = setup_filter([1, 3, 3, 1])
    f2 = f.double().numpy()
    x = torch.randn(2, 3, 8, 8)
    w = torch.randn(4, 3, k, k)
    p = k // 2
    ours = conv2d_resample(x, w, f=f, up=up, down=down, padding=p, flip_weight=flip_weight)
    # total padding in the upsampled domain (spec 5.3: enlarged by the 5.2 rules)
    pad = [p] * 4
    if up > 1:
        pad = [pad[0] + (4 + up - 1) // 2, pad[1] + (4 - up) // 2] * 2
    if down > 1:
        pad = [pad[0] + (4 - down + 1) // 2, pad[1] + (4 - down) // 2] * 2
    if up == 1 and down == 1:
        ref = _ref_conv_resample(x, w, None, 1, 1, pad, flip_weight)
    elif up > 1:
        ref = _ref_conv_resample(x, w, f2, up, 1, pad, flip_weight)
    else:  # FIR then strided correlation
        ref = _ref_conv_resample(x, w, f2, 1, down, pad, flip_weight)
    assert ours.shape[-2:] == (8 * up // down,) * 2
    torch.testing.assert_close(ours.double(), ref, atol=2e-5, rtol=1e-5)


def test_conv2d_resample_flip_weight_and_groups():
    x = torch.randn(1, 4, 6, 6)
    w = torch.randn(6, 2, 3, 3)
    conv = conv2d_resample(x, w[:, :, :, :], padding=1, groups=2, flip_weight=False)
    ref = F.conv2d(x, w.flip([2, 3]), padding=1, groups=2)  # true convolution = correlation with flipped w
    torch.testing.assert_close(conv, ref)


# ---------------------------------------------------------------- modulated conv + layers

def _ref_modconv(x, weight, styles, demodulate, up=1, f=None, padding=1, noise=None):
    outs = []
    for n in range(x.shape[0]):
        wn = weight * styles[n].reshape(1, -1, 1, 1)
        if demodulate:
            wn = wn / (wn.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        if up == 1:
            y = F.conv2d(x[n:n + 1], wn, padding=padding)
        else:
            y = conv2d_resample(x[n:n + 1], wn, f=f, up=up, padding=padding, flip_weight=False)
        outs.append(y)
    y = torch.cat(outs)
    return y + noise if noise is not None else y


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv_equals_per_sample_conv(demodulate, fused):
    x = torch.randn(3, 4, 8, 8)
    weight = torch.randn(5, 4, 3, 3)
    styles = torch.randn(3, 4)
    noise = torch.randn(3, 1, 8, 8)
    ours = modulated_conv2d(x, weight, styles, noise=noise, padding=1, demodulate=demodulate,
                            fused_modconv=fused)
    torch.testing.assert_close(ours, _ref_modconv(x, weight, styles, demodulate, noise=noise),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv_upsampling_equals_per_sample(fused):
    f = setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 3, 5, 5)
    weight = torch.randn(4, 3, 3, 3)
    styles = torch.randn(2, 3)
    ours = modulated_conv2d(x, weight, styles, up=2, padding=1, resample_filter=f, flip_weight=False,
                            fused_modconv=fused)
    ref = _ref_modconv(x, weight, styles, True, up=2, f=f)
    assert ours.shape == (2, 4, 10, 10)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_demodulated_output_has_unit_weight_norm():
    # With demodulation, scaling one sample's style by a constant changes nothing.
    x = torch.randn(2, 4, 6, 6)
    weight = torch.randn(3, 4, 3, 3)
    styles = torch.randn(2, 4)
    a = modulated_conv2d(x, weight, styles, padding=1)
    b = modulated_conv2d(x, weight, styles * torch.tensor([[7.0], [0.3]]), padding=1)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_fully_connected_layer_equalised_lr():
    fc = FullyConnectedLayer(6, 4, activation="lrelu", lr_multiplier=0.01, bias_init=0.5)
    torch.testing.assert_close(fc.bias * 0.01, torch.full([4], 0.5))
    x = torch.randn(3, 6)
    w = fc.weight * 0.01 / math.sqrt(6)
    xb = x @ w.t() + fc.bias * 0.01
    torch.testing.assert_close(fc(x), torch.where(xb > 0, xb, 0.2 * xb) * math.sqrt(2))
    lin = FullyConnectedLayer(6, 4)
    torch.testing.assert_close(lin(x), x @ (lin.weight / math.sqrt(6)).t() + lin.bias)


def test_conv2d_layer_gain_and_clamp():
    layer = Conv2dLayer(3, 5, kernel_size=3, activation="lrelu", conv_clamp=0.5)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 3, 6, 6)
    y = F.conv2d(x, layer.weight / math.sqrt(27), layer.bias, padding=1)
    y = torch.where(y > 0, y, 0.2 * y) * math.sqrt(2)
    torch.testing.assert_close(layer(x), y.clamp(-0.5, 0.5))
    g = math.sqrt(0.5)
    torch.testing.assert_close(layer(x, gain=g), (y * g).clamp(-0.5 * g, 0.5 * g))
    assert layer.resample_filter.shape == (4, 4)


def test_normalize_2nd_moment():
    x = torch.randn(4, 9) * 5
    y = normalize_2nd_moment(x)
    torch.testing.assert_close(y.square().mean(dim=1), torch.ones(4), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y * x.norm(dim=1, keepdim=True) / 3, x)
