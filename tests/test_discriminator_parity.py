"""MaskDualDiscriminatorV2 against the official fixture logits and the official parameter list."""
from __future__ import annotations

import json
import re

import pytest
import torch
from conftest import require_shared

from psohead.networks.discriminator import MaskDualDiscriminatorV2, MinibatchStdLayer
from psohead.nn import gaussian_blur


def _within(ours: torch.Tensor, ref: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    err = (ours - ref).abs().max().item()
    limit = atol + rtol * ref.abs().max().item()
    assert ours.shape == ref.shape and err <= limit, f"max err {err:.3g} > {limit:.3g}"


@pytest.fixture(scope="module")
def fixture_d():
    from safetensors.torch import load_file
    meta = json.loads(require_shared("fixtures", "panohead_small_meta.json").read_text())
    kwargs = {k: v for k, v in meta["D_kwargs"].items() if k != "class_name"}
    kwargs.update(meta["common_kwargs"])
    weights = load_file(str(require_shared("fixtures", "panohead_small_weights.safetensors")))
    D = MaskDualDiscriminatorV2(**kwargs).eval()
    D.load_state_dict({k[2:]: v for k, v in weights.items() if k.startswith("D.")}, strict=True)
    io = load_file(str(require_shared("fixtures", "panohead_small_io.safetensors")))
    return D, meta, io


def test_fixture_param_count(fixture_d):
    D, meta, _ = fixture_d
    assert sum(p.numel() for p in D.parameters()) == meta["param_counts"]["D"]
    assert len(D.state_dict()) == meta["param_counts"]["D_state_dict_tensors"]


@pytest.mark.parametrize("blur", [0, 10])
def test_fixture_logits_case_a(fixture_d, blur):
    D, _, io = fixture_d
    img = {k: io[f"caseA/{k}"] for k in ("image", "image_raw", "image_mask")}
    if blur:
        img["image"] = gaussian_blur(img["image"], blur)  # the loss blurs only `image`
    with torch.no_grad():
        logits = D(img, io["caseA/c"])
    _within(logits, io["caseA/d_logits_blur10" if blur else "caseA/d_logits"])


def test_mask_and_raw_inputs_matter(fixture_d):
    # Guard against a D that ignores the raw image or the mask channels.
    D, _, io = fixture_d
    img = {k: io[f"caseA/{k}"] for k in ("image", "image_raw", "image_mask")}
    with torch.no_grad():
        base = D(img, io["caseA/c"])
        no_mask = D({**img, "image_mask": torch.zeros_like(img["image_mask"])}, io["caseA/c"])
    assert (base - no_mask).abs().max() > 1e-4


def _appendix_b() -> tuple[list[tuple[str, tuple]], list[tuple[str, tuple]]]:
    text = require_shared("spec", "PANOHEAD_SPEC.md").read_text()
    section = text.split("## Appendix B", 1)[1]
    params, buffers = [], []
    for kind, name, shape in re.findall(r"^([PB]) (\S+) \[([\d, ]*)\]$", section, flags=re.M):
        entry = (name, tuple(int(s) for s in shape.split(",") if s.strip()))
        (params if kind == "P" else buffers).append(entry)
    return params, buffers


def test_full_official_config_names_shapes_and_count():
    with torch.device("meta"):
        D = MaskDualDiscriminatorV2(c_dim=25, img_resolution=512, img_channels=3)
    assert sum(p.numel() for p in D.parameters()) == 31_359_808
    params, buffers = _appendix_b()
    assert len(params) == 61 and len(buffers) == 31
    assert [(n, tuple(p.shape)) for n, p in D.named_parameters()] == params
    assert sorted((n, tuple(b.shape)) for n, b in D.named_buffers()) == sorted(buffers)


def test_minibatch_std_groups_with_stride():
    x = torch.randn(4, 6, 2, 3)
    y = MinibatchStdLayer(group_size=2)(x)
    assert y.shape == (4, 7, 2, 3)
    torch.testing.assert_close(y[:, :6], x)
    # group size 2 over N=4 pairs samples (0, 2) and (1, 3)
    for a, b in ((0, 2), (1, 3)):
        std = (((x[a] - x[b]) / 2).square() + 1e-8).sqrt().mean()
        torch.testing.assert_close(y[a, 6], torch.full((2, 3), std.item()))
        torch.testing.assert_close(y[b, 6], torch.full((2, 3), std.item()))
    with pytest.raises(ValueError, match="divisible"):
        MinibatchStdLayer(group_size=4)(torch.randn(6, 2, 2, 2))


def test_freeze_layers_turns_first_layers_into_buffers():
    frozen = MaskDualDiscriminatorV2(c_dim=0, img_resolution=16, img_channels=3, channel_base=64,
                                     channel_max=8, block_kwargs={"freeze_layers": 2})
    names = dict(frozen.named_parameters())
    assert "b16.fromrgb.weight" not in names and "b16.conv0.weight" not in names
    assert "b16.conv1.weight" in names
    assert "b16.fromrgb.weight" in dict(frozen.named_buffers())


def test_r1_double_backward():
    # R1 needs d/dθ |∂D/∂x|²: a second-order gradient through every op of D.
    torch.manual_seed(3)
    D = MaskDualDiscriminatorV2(c_dim=4, img_resolution=16, img_channels=3, channel_base=64,
                                channel_max=8, mapping_kwargs={"num_layers": 2}).double()
    img = {"image": torch.randn(2, 3, 16, 16, dtype=torch.float64, requires_grad=True),
           "image_raw": torch.randn(2, 3, 8, 8, dtype=torch.float64),
           "image_mask": torch.rand(2, 1, 8, 8, dtype=torch.float64)}
    c = torch.randn(2, 4, dtype=torch.float64)
    (g,) = torch.autograd.grad(D(img, c).sum(), img["image"], create_graph=True)
    penalty = g.square().sum()
    penalty.backward()
    w = D.b16.conv0.weight
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    # finite-difference check of d(penalty)/dw along the gradient direction
    eps = 1e-4  # smaller steps drown in the round-off of the penalty sum
    direction = w.grad / w.grad.norm()

    def r1() -> float:
        (gg,) = torch.autograd.grad(D(img, c).sum(), img["image"])
        return gg.square().sum().item()

    with torch.no_grad():
        w += eps * direction
    plus = r1()
    with torch.no_grad():
        w -= 2 * eps * direction
    minus = r1()
    assert abs((plus - minus) / (2 * eps) - w.grad.norm().item()) < 2e-3 * w.grad.norm().item()
