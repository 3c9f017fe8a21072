"""Mapping, synthesis backbone, background net and SR head against the official fixture tensors."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import require_shared

from psohead.networks.stylegan2 import MappingNetwork, StyleGAN2Backbone, SynthesisNetwork
from psohead.networks.superres import SuperresolutionHybrid8XDC, superres_class


def _within(ours: torch.Tensor, ref: torch.Tensor, atol: float, rtol: float) -> None:
    err = (ours - ref).abs().max().item()
    limit = atol + rtol * ref.abs().max().item()
    assert ours.shape == ref.shape and err <= limit, f"max err {err:.3g} > {limit:.3g}"


@pytest.fixture(scope="module")
def fx():
    from safetensors.torch import load_file
    meta = json.loads(require_shared("fixtures", "panohead_small_meta.json").read_text())
    weights = load_file(str(require_shared("fixtures", "panohead_small_weights.safetensors")))
    io = load_file(str(require_shared("fixtures", "panohead_small_io.safetensors")))
    return meta, weights, io


def _sub(weights: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


def _synthesis_kwargs(meta: dict) -> dict:
    g = meta["G_kwargs"]
    return dict(architecture=g["architecture"], channel_base=g["channel_base"], channel_max=g["channel_max"],
                fused_modconv_default=g["fused_modconv_default"], num_fp16_res=g["num_fp16_res"],
                conv_clamp=g["conv_clamp"])


@pytest.fixture(scope="module")
def backbone(fx):
    meta, weights, _ = fx
    g, common = meta["G_kwargs"], meta["common_kwargs"]
    depth = g["rendering_kwargs"]["triplane_depth"]
    net = StyleGAN2Backbone(g["z_dim"], common["c_dim"], g["w_dim"], img_resolution=256,
                            img_channels=32 * 3 * depth, mapping_kwargs=g["mapping_kwargs"],
                            **_synthesis_kwargs(meta)).eval()
    net.load_state_dict(_sub(weights, "G.backbone."), strict=True)
    return net


@pytest.fixture(scope="module")
def t_mapping(fx):
    meta, weights, _ = fx
    g = meta["G_kwargs"]
    net = MappingNetwork(g["z_dim"], meta["common_kwargs"]["c_dim"], w_dim=3, num_ws=1,
                         lr_multiplier=1, last_activation="linear", **g["mapping_kwargs"]).eval()
    net.load_state_dict(_sub(weights, "G.t_mapping."), strict=True)
    return net


@pytest.fixture(scope="module")
def bcg(fx):
    meta, weights, _ = fx
    kwargs = _synthesis_kwargs(meta)
    kwargs["channel_base"] //= 2  # the background net is half as wide (spec 1.10)
    kwargs["num_fp16_res"] = 0
    net = SynthesisNetwork(w_dim=meta["G_kwargs"]["w_dim"], img_resolution=128, img_channels=32, **kwargs).eval()
    net.load_state_dict(_sub(weights, "G.bcg_synthesis."), strict=True)
    return net


@pytest.mark.parametrize("psi,cutoff,name", [(1, None, "psi1"), (0.7, 14, "psi0.7_cutoff14")])
def test_mapping_and_camera_offset(fx, backbone, t_mapping, psi, cutoff, name):
    _, _, io = fx
    z, c = io["z"], io["caseA/c"]
    with torch.no_grad():
        ws = backbone.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
        delta = t_mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff).squeeze(1)
    _within(ws, io[f"ws_{name}"], 1e-6, 1e-6)
    _within(delta, io[f"delta_c_{name}"], 1e-6, 1e-6)
    if psi == 1:
        _within(ws, io["caseA/ws"], 1e-6, 1e-6)


def test_backbone_planes_case_a(fx, backbone):
    _, _, io = fx
    with torch.no_grad():
        planes = backbone.synthesis(io["caseA/ws"], noise_mode="const")
    assert planes.shape == (2, 288, 256, 256)
    _within(planes[:, :, ::8, ::8], io["caseA/planes_sub8"], 1e-5, 1e-4)


def test_backbone_planes_wplus_rows_routed(fx, backbone):
    _, _, io = fx
    ws = io["wplusA/ws"]
    assert (ws[:, 1:] - ws[:, :-1]).abs().amax(dim=2).min() > 0  # every row distinct
    with torch.no_grad():
        planes = backbone.synthesis(ws, noise_mode="const")
        swapped = backbone.synthesis(ws[:, [1, 0] + list(range(2, 14))], noise_mode="const")
    ref = io["wplusA/planes_sub32"]
    _within(planes[:, :, ::32, ::32], ref, 1e-5, 1e-4)
    assert (swapped[:, :, ::32, ::32] - ref).abs().max() > 100 * (1e-5 + 1e-4 * ref.abs().max())


def test_non_fused_training_path_matches(fx, backbone):
    # train() switches 'inference_only' to the non-fused modulated conv; same function.
    _, _, io = fx
    backbone.train()
    try:
        with torch.no_grad():
            planes = backbone.synthesis(io["caseA/ws"], noise_mode="const")
    finally:
        backbone.eval()
    _within(planes[:, :, ::8, ::8], io["caseA/planes_sub8"], 1e-5, 1e-4)


@pytest.mark.parametrize("case", ["caseA", "wplusA", "wplusC"])
def test_background_synthesis(fx, bcg, case):
    _, _, io = fx
    ws = io[f"{case}/ws_bcg"] if case == "wplusC" else io[f"{case}/ws"]
    with torch.no_grad():
        img = bcg(ws[:, :12], noise_mode="const")
    assert img.shape == (2, 32, 128, 128)
    _within(img[:, :2], io[f"{case}/bcg_image_ch0-1"], 1e-5, 1e-4)


def test_superresolution_case_a_first_sample(fx):
    # One sample keeps the full-size SR (256/128 channels up to 512²) inside the default-suite budget.
    meta, weights, io = fx
    g = meta["G_kwargs"]
    cls = superres_class(g["rendering_kwargs"]["superresolution_module"])
    assert cls is SuperresolutionHybrid8XDC
    sr = cls(channels=32, img_resolution=512, sr_num_fp16_res=g["sr_num_fp16_res"],
             sr_antialias=g["rendering_kwargs"]["sr_antialias"], **g["sr_kwargs"]).eval()
    sr.load_state_dict(_sub(weights, "G.superresolution."), strict=True)
    with torch.no_grad():
        image = sr(io["caseA/image_raw"][:1], io["caseA/sr_input_feature"][:1], io["caseA/ws"][:1],
                   noise_mode="none")
    _within(image, io["caseA/image"][:1], 1e-4, 2e-4)


@pytest.mark.parametrize("name,in_res,out_res", [("SuperresolutionHybrid2X", 64, 128),
                                                 ("SuperresolutionHybrid4X", 128, 256)])
def test_small_sr_heads_skip_path(name, in_res, out_res):
    # With every toRGB silenced, the output is the input RGB carried along the skip path: unchanged
    # through the no-upsampling first block, FIR-upsampled 2x by the second.
    from psohead.nn import setup_filter, upsample2d
    sr = superres_class(name)(channels=8, img_resolution=out_res, sr_num_fp16_res=0, sr_antialias=True).eval()
    assert not hasattr(sr.block0, "const") and sr.block0.conv0.up == 1 and sr.block1.conv0.up == 2
    with torch.no_grad():
        for block in (sr.block0, sr.block1):
            block.torgb.weight.zero_()
            block.torgb.bias.zero_()
        rgb = torch.randn(1, 3, in_res, in_res)
        out = sr(rgb, torch.randn(1, 8, in_res, in_res), torch.randn(1, 14, 512), noise_mode="none")
    assert out.shape == (1, 3, out_res, out_res)
    torch.testing.assert_close(out, upsample2d(rgb, setup_filter([1, 3, 3, 1])), atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="img_resolution"):
        superres_class(name)(channels=8, img_resolution=512, sr_num_fp16_res=0, sr_antialias=True)
