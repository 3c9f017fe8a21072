import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from psohead.errors import InputError
from psohead.metrics.image import mask_iou, ms_ssim, psnr, ssim


def test_psnr_of_constant_offset_is_analytic():
    a = torch.zeros(3, 16, 16)
    b = torch.full((3, 16, 16), 0.1)
    assert psnr(a, b) == pytest.approx(20.0, abs=1e-5)                    # MSE 0.01
    assert psnr(a * 2 - 1, b * 2 - 1, data_range=2) == pytest.approx(20.0, abs=1e-5)


def test_psnr_uint8_numpy_and_batch():
    a = np.zeros((8, 8, 3), np.uint8)
    b = np.full((8, 8, 3), 51, np.uint8)                                 # 0.2 in [0, 1]
    assert psnr(a, b) == pytest.approx(10 * math.log10(1 / 0.04), abs=1e-9)
    batch = psnr(np.stack([a, a]), np.stack([b, a]))
    assert batch.shape == (2,) and batch[0] == pytest.approx(13.9794, abs=1e-3) and batch[1] > 150


def test_masked_psnr_ignores_pixels_outside_the_mask():
    a = torch.zeros(1, 3, 8, 8)
    b = a.clone()
    b[..., :, 4:] = 1.0                    # error only on the right half
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :, :4] = 1
    assert float(psnr(a, b, mask=mask)) > 150
    assert float(psnr(a, b, mask=1 - mask)) == pytest.approx(0.0, abs=1e-9)
    assert float(psnr(a, b)) == pytest.approx(10 * math.log10(2), abs=1e-6)
    with pytest.raises(InputError):
        psnr(a, b, mask=torch.zeros(1, 1, 8, 8))


def test_ssim_of_flat_images_matches_formula():
    # Flat images: variances and covariance vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.3, 0.7
    c1 = (0.01 * 1.0) ** 2
    expect = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(torch.full((1, 24, 24), a), torch.full((1, 24, 24), b)) == pytest.approx(expect, rel=1e-6)


def test_ssim_matches_scikit_image_gaussian_ssim():
    rng = np.random.default_rng(0)
    a = rng.random((48, 40))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    ref_map = structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, full=True)[1]
    ref = ref_map[5:-5, 5:-5].mean()       # same valid area as ours (no padding)
    ours = ssim(torch.from_numpy(a)[None], torch.from_numpy(b)[None])
    assert ours == pytest.approx(ref, abs=1e-6)
    rgb = np.repeat(a[:, :, None], 3, axis=2)                  # numpy images are [H,W,C]
    assert ssim(rgb, rgb) == pytest.approx(1.0)


def test_masked_ssim_counts_only_masked_windows():
    rng = np.random.default_rng(1)
    a = rng.random((32, 32))
    b = a.copy()
    b[:, 16:] = rng.random((32, 16))
    mask = np.zeros((32, 32))
    mask[:, :8] = 1                                      # windows centred here never see the change
    assert ssim(a, b) < 0.8
    assert ssim(a, b, mask=mask) == pytest.approx(1.0)


def test_ms_ssim_identity_and_degradation():
    rng = np.random.default_rng(2)
    a = torch.from_numpy(rng.random((1, 3, 176, 176))).float()
    assert float(ms_ssim(a, a)) == pytest.approx(1.0, abs=1e-5)
    noisy = (a + 0.2 * torch.randn_like(a)).clamp(0, 1)
    assert float(ms_ssim(a, noisy)) < 0.95
    with pytest.raises(InputError):
        ms_ssim(a[..., :100, :100], a[..., :100, :100])


def test_mask_iou_of_overlapping_squares():
    a = np.zeros((20, 20), np.uint8)
    b = np.zeros((20, 20), np.uint8)
    a[0:10, 0:10] = 255                    # 100 px
    b[5:15, 0:10] = 255                    # 100 px, 50 shared
    assert mask_iou(a, b) == pytest.approx(50 / 150)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(InputError, match="differ in shape"):
        psnr(torch.zeros(3, 8, 8), torch.zeros(3, 8, 9))


@pytest.mark.parametrize("size", [161, 176, 255])
def test_ms_ssim_matches_pytorch_msssim(size):
    reference = pytest.importorskip("pytorch_msssim")
    g = torch.Generator().manual_seed(size)
    a = torch.rand(2, 3, size, size, generator=g)
    b = (a + 0.15 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    expect = reference.ms_ssim(a, b, data_range=1.0, size_average=False)
    assert torch.allclose(ms_ssim(a, b), expect, atol=1e-5)


def test_colour_leakage_counts_backdrop_colours_on_the_head():
    from psohead.metrics.image import colour_leakage

    rng = np.random.default_rng(0)
    photo = np.zeros((40, 40, 3), np.uint8)
    photo[:, :20] = (200, 30, 30)  # red backdrop left
    photo[:, 20:] = (60, 40, 30)   # dark-brown subject right
    photo = np.clip(photo + rng.normal(0, 3, photo.shape), 0, 255).astype(np.uint8)
    pmask = np.zeros((40, 40), np.uint8)
    pmask[:, 20:] = 255
    render = np.zeros((20, 20, 3), np.uint8)
    rmask = np.zeros((20, 20), np.uint8)
    rmask[5:15] = 255  # head: rows 5-14
    render[:] = (200, 30, 30)
    assert colour_leakage(render, rmask, photo, pmask) == 1.0
    render[:] = (60, 40, 30)
    assert colour_leakage(render, rmask, photo, pmask) == 0.0
    render[:, :10] = (201, 32, 28)  # half the head carries the backdrop
    assert colour_leakage(render, rmask, photo, pmask) == 0.5
    render[:] = (30, 200, 30)  # a colour from neither: not leakage
    assert colour_leakage(render, rmask, photo, pmask) == 0.0
    render[:5] = (200, 30, 30)  # backdrop outside the head area does not count
    assert colour_leakage(render, rmask, photo, pmask) == 0.0
    with pytest.raises(InputError):
        colour_leakage(render, np.zeros((20, 20)), photo, pmask)
