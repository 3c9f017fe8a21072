"""The bundled default model: size, strict loading, and a 3D-consistent head from every side."""
import math

import torch

from psohead import api
from psohead.camera import label_from_yaw_pitch


def test_bundled_files_are_small_and_load_strictly():
    assert api.DEFAULT_GENERATOR.stat().st_size <= 40 * 2**20
    G = api.load_generator("default")
    D = api.load_discriminator("default")
    assert G.img_resolution == D.img_resolution == 128
    with torch.no_grad():
        z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0))
        c = label_from_yaw_pitch(0.0, 0.0).expand(2, -1)
        out = G(z, c, truncation_psi=0.7, deterministic=True)
        logits = D({"image": out["image"], "image_raw": out["image_raw"], "image_mask": out["image_mask"]}, c)
    assert out["image"].shape == (2, 3, 128, 128) and torch.isfinite(out["image"]).all()
    assert torch.isfinite(logits).all()


def test_default_network_set_brings_its_discriminator():
    from psohead.training.network_source import read_network_set
    nets = read_network_set("default")
    assert nets.D is not None and nets.D_source == str(api.DEFAULT_DISCRIMINATOR)
    assert nets.D_config.img_resolution == nets.G_config.img_resolution


def test_silhouettes_agree_between_opposite_views():
    """A head seen from the front and from the back has mirror-image outlines; from the side, a
    different one. Masks of an untrained or view-inconsistent generator fail one of the two."""
    G = api.load_generator("default")
    yaws = [0.0, math.pi, math.pi / 2]
    labels = torch.cat([label_from_yaw_pitch(y, 0.0) for y in yaws])
    ious = []
    for seed in range(3):
        z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            ws = G.mapping(z, label_from_yaw_pitch(0.0, 0.0), truncation_psi=0.7)
            masks = G.synthesis(ws.expand(3, -1, -1), labels, deterministic=True)["image_mask"][:, 0] > 0.5
        front, back, side = masks
        assert 0.1 < front.float().mean() < 0.8  # a head, not empty and not the whole frame
        mirrored = back.flip(-1)
        ious.append(((front & mirrored).sum() / (front | mirrored).sum()).item())
        side_iou = ((front & side).sum() / (front | side).sum()).item()
        assert side_iou < ious[-1]
    assert min(ious) > 0.8, ious
