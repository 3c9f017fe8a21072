"""Photographic augmentation of the encoder's input: each operation against its formula, the
draws reproducible, and training with it runs and logs the augmented held-out error."""
import json

import pytest
import torch

from psohead.training import photo_augment as pa

IDENTITY = {"GAIN": (1.0, 1.0), "WHITE_BALANCE": (1.0, 1.0), "GAMMA": (1.0, 1.0), "SATURATION": (1.0, 1.0),
            "BLUR_SHARE": 0.0, "RESAMPLE_SHARE": 0.0, "NOISE_STD": (0.0, 0.0), "BACKGROUND_SHARE": 0.0}


def _images(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 1.6 - 0.8


def _only(monkeypatch, **ranges):
    for name, value in {**IDENTITY, **ranges}.items():
        monkeypatch.setattr(pa, name, value)


def test_share_zero_changes_nothing_and_draws_nothing():
    x = _images()
    gen = torch.Generator().manual_seed(1)
    state = gen.get_state()
    assert pa.augment_photos(x, None, 0.0, gen) is x
    assert torch.equal(gen.get_state(), state)  # a run without augmentation samples as before


def test_draws_are_reproducible_and_stay_in_range():
    x, mask = _images(8), torch.rand(8, 1, 16, 16)
    a = pa.augment_photos(x, mask, 1.0, torch.Generator().manual_seed(3))
    b = pa.augment_photos(x, mask, 1.0, torch.Generator().manual_seed(3))
    c = pa.augment_photos(x, mask, 1.0, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype and a.min() >= -1 and a.max() <= 1
    assert all(not torch.equal(a[i], x[i]) for i in range(8))  # share 1: every sample changed


def test_a_share_leaves_the_other_samples_untouched():
    x = _images(64)
    out = pa.augment_photos(x, None, 0.5, torch.Generator().manual_seed(0))
    changed = [not torch.equal(out[i], x[i]) for i in range(64)]
    assert 16 < sum(changed) < 48


def test_with_every_range_at_identity_the_image_comes_back(monkeypatch):
    _only(monkeypatch)
    x = _images()
    out = pa.augment_photos(x, torch.ones(4, 1, 8, 8), 1.0, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x, atol=1e-6)


def test_exposure_is_a_gain_on_zero_to_one_intensities(monkeypatch):
    _only(monkeypatch, GAIN=(1.2, 1.2))
    x = _images()
    out = pa.augment_photos(x, None, 1.0, torch.Generator().manual_seed(0))
    expected = ((x + 1) / 2 * 1.2).clamp(0, 1) * 2 - 1
    assert torch.allclose(out, expected, atol=1e-6)


def test_saturation_zero_gives_the_grey_image(monkeypatch):
    _only(monkeypatch, SATURATION=(0.0, 0.0))
    x = _images()
    out = pa.augment_photos(x, None, 1.0, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x.mean(1, keepdim=True).expand_as(x), atol=1e-6)


def test_a_new_background_replaces_only_what_the_mask_leaves_out(monkeypatch):
    _only(monkeypatch, BACKGROUND_SHARE=1.0)
    x = _images(2, 32)
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1  # the head; bilinear upsampling blends a two-pixel rim
    out = pa.augment_photos(x, mask, 1.0, torch.Generator().manual_seed(0))
    assert torch.allclose(out[..., 10:22, 10:22], x[..., 10:22, 10:22], atol=1e-6)
    outside = (out - x)[..., :6, :].abs()
    assert outside.mean() > 0.1  # the background is another one
    # and it is smooth: neighbouring pixels differ far less than the input's noise does
    bg = out[..., :6, :]
    assert (bg[..., 1:] - bg[..., :-1]).abs().mean() < 0.2 * (x[..., 1:] - x[..., :-1]).abs().mean()


def test_blur_and_resampling_soften_an_edge(monkeypatch):
    _only(monkeypatch, BLUR_SHARE=1.0, BLUR_SIGMA=(4.0, 4.0))  # 1 px at 32²
    x = -torch.ones(1, 3, 32, 32)
    x[..., 16:] = 1
    blurred = pa.augment_photos(x, None, 1.0, torch.Generator().manual_seed(0))
    row = blurred[0, 0, 8]
    assert row[15] > -1 + 0.1 and row[16] < 1 - 0.1  # the step is spread over its neighbours
    assert torch.allclose(row[:10], torch.full((10,), -1.0), atol=1e-3)
    _only(monkeypatch, RESAMPLE_SHARE=1.0, RESAMPLE_SCALE=(0.5, 0.5))
    resampled = pa.augment_photos(x, None, 1.0, torch.Generator().manual_seed(0))
    assert -1 + 0.05 < resampled[0, 0, 8, 16] < 1 - 0.05 or -1 + 0.05 < resampled[0, 0, 8, 15] < 1 - 0.05


def test_noise_has_the_drawn_spread(monkeypatch):
    _only(monkeypatch, NOISE_STD=(0.02, 0.02))
    x = torch.zeros(2, 3, 64, 64)  # mid-grey: no clipping
    out = pa.augment_photos(x, None, 1.0, torch.Generator().manual_seed(0))
    std = float(((out + 1) / 2 - 0.5).std())
    assert 0.018 < std < 0.022


def test_training_with_augmentation_logs_the_augmented_error(tmp_path):
    from test_encoder import _micro_generator, _opts

    from psohead.checkpoint.safetensors_io import save_network
    from psohead.errors import InputError
    from psohead.training.encoder import train_encoder

    net = tmp_path / "tiny.safetensors"
    save_network(_micro_generator(), net)
    out = tmp_path / "E.safetensors"
    train_encoder(_opts(net, out, steps=4, augment=0.8))
    log = [json.loads(line) for line in (tmp_path / "E-run" / "log.jsonl").read_text().splitlines()]
    assert all(r["heldout_latent_error_augmented"] > 0 for r in log)
    with pytest.raises(InputError, match="--augment must be in"):
        train_encoder(_opts(net, tmp_path / "F.safetensors", steps=1, augment=1.5))
