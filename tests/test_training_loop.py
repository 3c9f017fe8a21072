"""Loss schedules and terms, EMA, split/compact snapshots, and the training loop on a tiny config."""
import math

import numpy as np
import pytest
import torch

from psohead import camera
from psohead.training.losses import LossConfig, PanoHeadLoss
from psohead.training.options import TrainOptions
from psohead.training.snapshot import load_snapshot, part_paths, save_snapshot


def test_schedules_follow_spec_formulas():
    loss = PanoHeadLoss(None, None, LossConfig(blur_init_sigma=10, blur_fade_kimg=200, gpc_reg_prob=0.7,
                                               gpc_reg_fade_kimg=1000, density_noise_fade_kimg=200))
    assert loss.blur_sigma(0) == 10 and loss.blur_sigma(100_000) == pytest.approx(5) and loss.blur_sigma(300_000) == 0
    assert loss.swapping_prob(0) == pytest.approx(1.0)
    assert loss.swapping_prob(500_000) == pytest.approx(0.5 + 0.5 * 0.7)
    assert loss.swapping_prob(2_000_000) == pytest.approx(0.7)
    assert loss.density_noise(50_000) == pytest.approx(0.75) and loss.density_noise(10**6) == 0
    fade = PanoHeadLoss(None, None, LossConfig(neural_rendering_resolution_initial=64,
                                               neural_rendering_resolution_final=128,
                                               neural_rendering_resolution_fade_kimg=1000))
    assert fade.rendering_resolution(0) == 64 and fade.rendering_resolution(500_000) == 96
    assert fade.rendering_resolution(5_000_000) == 128


class _ConstD(torch.nn.Module):
    """Score depends on the label only: the R1 gradient w.r.t. the images is exactly zero."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(25))

    def forward(self, img, c, update_emas=False):
        return (c * self.w).sum(1, keepdim=True) + 0 * sum(v.sum() for v in img.values())


class _QuadD(_ConstD):
    """Score = sum of squared image pixels: R1 = gamma/2 * ||2 x||^2 summed per tensor."""

    def forward(self, img, c, update_emas=False):
        return sum(v.square().sum([1, 2, 3]) for v in img.values())[:, None] + 0 * self.w.sum()


def test_r1_zero_for_constant_d_and_analytic_for_quadratic_d():
    img = torch.rand(2, 3, 16, 16) * 2 - 1
    mask = torch.rand(2, 1, 16, 16)
    c = camera.label_from_yaw_pitch(torch.tensor([0.0, 1.0]), 0.0)
    cfg = LossConfig(blur_init_sigma=0, r1_gamma=2.0, r1_gamma_seg=4.0)
    stats = PanoHeadLoss(None, _ConstD(), cfg).accumulate_gradients("Dreg", img, mask, c, None, None, 1.0, 0)
    assert float(stats["loss/r1"]) == 0.0
    loss = PanoHeadLoss(None, _QuadD(), cfg)
    stats = loss.accumulate_gradients("Dreg", img, mask, c, None, None, 1.0, 0)
    real = loss.real_inputs(img, mask, cfg.neural_rendering_resolution_initial, 0.0)
    expect = (4 * real["image"].square().sum([1, 2, 3]) + 4 * real["image_raw"].square().sum([1, 2, 3])) * 1.0 \
        + 4 * real["image_mask"].square().sum([1, 2, 3]) * 2.0
    assert float(stats["loss/r1"]) == pytest.approx(float(expect.mean()), rel=1e-5)


def test_ema_beta_half_life_and_rampup():
    from psohead.training.loop import ema_beta
    opts = TrainOptions(batch=32, ema_kimg=10, ema_rampup=0.05)
    # after ema_kimg*1000 images at this beta, the weight of the old value halves
    beta = ema_beta(opts, 10**9)
    assert beta ** (10_000 / 32) == pytest.approx(0.5)
    assert ema_beta(opts, 1000) == pytest.approx(0.5 ** (32 / 50))


def test_split_snapshot_round_trip(tmp_path):
    state = {"G": {"w": torch.randn(300_000)}, "progress": {"cur_nimg": 7}}
    path = tmp_path / "snap.pt"
    save_snapshot(path, state, part_mb=0.5)
    parts = part_paths(path)
    assert len(parts) == 3 and not path.exists() and all(p.stat().st_size <= 2**19 for p in parts)
    back = load_snapshot(path)
    assert torch.equal(back["G"]["w"], state["G"]["w"]) and back["progress"]["cur_nimg"] == 7
    save_snapshot(path, {"G": {"w": torch.zeros(3)}, "progress": {}})  # whole file replaces the parts
    assert part_paths(path) == [] and load_snapshot(path)["G"]["w"].shape == (3,)


def test_compact_optimizer_state_loads_as_float32():
    from psohead.training.loop import _compact
    p = torch.nn.Parameter(torch.randn(10))
    opt = torch.optim.Adam([p], lr=0.1)
    p.grad = torch.randn(10)
    opt.step()
    compact = _compact(opt.state_dict(), True)
    assert compact["state"][0]["exp_avg_sq"].dtype == torch.bfloat16
    opt2 = torch.optim.Adam([torch.nn.Parameter(p.detach().clone())], lr=0.1)
    opt2.load_state_dict(compact)
    got = opt2.state_dict()["state"][0]["exp_avg_sq"]
    assert got.dtype == torch.float32
    assert torch.allclose(got, opt.state_dict()["state"][0]["exp_avg_sq"], rtol=1e-2)


@pytest.mark.parametrize("beta1", [0.0, 0.5])
def test_saved_optimizer_state_continues_exactly(beta1):
    """Leaving Adam's first moment out (beta1 = 0 overwrites it every step) loses nothing."""
    import io

    from psohead.training.loop import _compact, _restore
    torch.manual_seed(0)
    grads = [torch.randn(2, 5) for _ in range(6)]

    def run(steps, opt, p):
        for g in steps:
            p.grad = g.clone()
            opt.step()

    p = torch.nn.Parameter(torch.randn(2, 5))
    opt = torch.optim.Adam([p], lr=0.1, betas=(beta1, 0.99))
    run(grads[:3], opt, p)
    buf = io.BytesIO()  # through bytes, as a snapshot goes (a state_dict shares tensors with opt)
    torch.save(_compact(opt.state_dict(), False), buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    assert ("exp_avg" in saved["state"][0]) == (beta1 != 0)
    p2 = torch.nn.Parameter(p.detach().clone())
    opt2 = torch.optim.Adam([p2], lr=0.1, betas=(beta1, 0.99))
    opt2.load_state_dict(_restore(saved))
    run(grads[3:], opt, p)
    run(grads[3:], opt2, p2)
    assert torch.equal(p, p2)


# ------------------------------------------------------------------------------------------------
# With the real networks (tiny preset)

def _dataset(root, n=8, res=32):
    from psohead.io.dataset_writer import DatasetWriter
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:res, :res]
    with DatasetWriter(root) as w:
        for i in range(n):
            m = (yy - res / 2) ** 2 + (xx - res / 2) ** 2 < (res * 0.3) ** 2
            img = np.zeros((res, res, 3), np.uint8)
            img[m] = rng.integers(0, 256, 3)
            w.add(f"{i:05d}", img, (m * 255).astype(np.uint8),
                  camera.label_from_yaw_pitch(rng.uniform(-math.pi, math.pi), 0.1)[0])
    return root


def test_loss_terms_finite_with_right_sign():
    pytest.importorskip("psohead.networks.generator")
    from psohead.training.loop import build_discriminator, build_generator
    from psohead.training.presets import preset
    torch.manual_seed(0)
    G_cfg, D_cfg, opts = preset("tiny")
    G, D = build_generator(G_cfg), build_discriminator(D_cfg)
    loss = PanoHeadLoss(G, D, opts.loss)
    n = 2
    real = torch.rand(n, 3, 128, 128) * 2 - 1
    mask = torch.rand(n, 1, 128, 128)
    c = camera.label_from_yaw_pitch(torch.tensor([0.0, 2.0]), 0.1)
    z = torch.randn(n, G.z_dim)
    g = loss.accumulate_gradients("Gmain", real, mask, c, z, c, 1.0, 0)
    d = loss.accumulate_gradients("Dboth", real, mask, c, z, c, 1.0, 0)
    for k, v in {**g, **d}.items():
        assert torch.isfinite(v), k
    for k in ("loss/G", "loss/D_fake", "loss/D_real", "loss/r1"):
        assert float({**g, **d}[k]) >= 0, k
    assert float(g["loss/trans"]) >= 0
    assert all(torch.isfinite(p.grad).all() for p in G.parameters() if p.grad is not None)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in D.parameters())


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path):
    """Two steps in one run == one step, snapshot, resume, one more step (same weights)."""
    pytest.importorskip("psohead.networks.generator")
    from psohead.training.loop import train
    from psohead.training.presets import preset
    data = _dataset(tmp_path / "ds")
    G_cfg, D_cfg, opts = preset("tiny")
    opts = opts.replace(data=str(data), progress=False, tick_kimg=0.004, kimg=0.008)
    train(opts.replace(out=str(tmp_path / "a")), G_cfg, D_cfg)
    train(opts.replace(out=str(tmp_path / "b"), kimg_per_run=0.004), G_cfg, D_cfg)
    mid = load_snapshot(tmp_path / "b" / "snapshot-latest.pt")
    assert mid["progress"]["cur_nimg"] == 4
    res = train(opts.replace(out=str(tmp_path / "b")), resume=str(tmp_path / "b" / "snapshot-latest.pt"))
    assert res["complete"] and res["kimg"] == pytest.approx(0.008)
    a = load_snapshot(tmp_path / "a" / "snapshot-latest.pt")
    b = load_snapshot(tmp_path / "b" / "snapshot-latest.pt")
    for key in ("G", "G_ema", "D"):
        for name, t in a[key].items():
            assert torch.allclose(t, b[key][name], atol=1e-6), (key, name)


def test_cli_resume_applies_explicit_option_changes(tmp_path):
    """`psohead train --resume RUN --batch 8` continues the run with the new batch; other saved options stay."""
    pytest.importorskip("psohead.networks.generator")
    from psohead.cli import main
    data = _dataset(tmp_path / "ds")
    run = tmp_path / "run"
    common = ["--data", str(data), "--device", "cpu", "--no-progress", "--workers", "0"]
    assert main(["train", "--preset", "tiny", "--out", str(run), "--kimg-per-run", "0.004", "--glr", "0.001",
                 *common]) == 0
    assert main(["train", "--resume", str(run), "--kimg-per-run", "0.004", "--batch", "8", "--batch-gpu", "8",
                 *common]) == 0
    snap = load_snapshot(run / "snapshot-latest.pt")
    assert snap["progress"]["cur_nimg"] == 4 + 8  # one step of the preset's batch 4, then one of 8
    assert snap["options"]["batch"] == 8 and snap["options"]["batch_gpu"] == 8
    assert snap["options"]["glr"] == pytest.approx(0.001)  # saved, not reset to the preset's value


def _first_adam_step_gain(params, lr: float, eps: float) -> float:
    """First-order loss decrease of Adam's first step with beta1 = 0: each parameter moves by
    lr * g / (|g| + eps) against its gradient g, so the loss falls by lr * sum(g^2 / (|g| + eps))."""
    return lr * sum(float((p.grad.square() / (p.grad.abs() + eps)).sum()) for p in params if p.grad is not None)


def test_one_optimiser_step_lowers_the_d_and_g_losses_on_a_fixed_batch():
    """Tiny preset G and D, the loop's Adam: one D step on a fixed batch lowers the Dmain loss
    (fakes + reals), one G step lowers the Gmain loss and raises D's score of the fakes, each by
    at least a good part of the first-order prediction from the gradients (not just by rounding)."""
    from psohead.training.loop import _lazy_adam, build_discriminator, build_generator
    from psohead.training.presets import preset
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # several times faster than 2 on the shared 2-core machine
    try:
        torch.manual_seed(0)
        G_cfg, D_cfg, opts = preset("tiny")
        G, D = build_generator(G_cfg).train(), build_discriminator(D_cfg).train()
        loss = PanoHeadLoss(G, D, opts.loss)
        n, res = 4, G.img_resolution
        yy, xx = torch.meshgrid(torch.arange(res), torch.arange(res), indexing="ij")
        disc = (((yy - res / 2) ** 2 + (xx - res / 2) ** 2) < (res * 0.3) ** 2).float()
        img = disc * (torch.rand(n, 3, 1, 1) * 2 - 1) - (1 - disc)  # coloured heads on black
        mask = disc.expand(n, 1, res, res)
        c = camera.label_from_yaw_pitch(torch.rand(n) * 2 * math.pi - math.pi, 0.1)
        z = torch.randn(n, G.z_dim)

        def phase(name):
            torch.manual_seed(1)  # the same pose swaps, noise and ray jitter at every evaluation
            for p in [*G.parameters(), *D.parameters()]:
                p.grad = None
            return {k: float(v) for k, v in loss.accumulate_gradients(name, img, mask, c, z, c, 1.0, 0).items()}

        opt_D = _lazy_adam(D.parameters(), opts.dlr, opts.betas, opts.eps, opts.r1_interval)
        G.requires_grad_(False), D.requires_grad_(True)
        before = phase("Dmain")
        expect = _first_adam_step_gain(D.parameters(), opt_D.param_groups[0]["lr"], opts.eps)
        opt_D.step()
        after = phase("Dmain")
        drop = before["loss/D_fake"] + before["loss/D_real"] - after["loss/D_fake"] - after["loss/D_real"]
        assert expect > 1e-3 and drop > 0.5 * expect, (before, after, expect)

        opt_G = _lazy_adam(G.parameters(), opts.glr, opts.betas, opts.eps, 0)
        G.requires_grad_(True), D.requires_grad_(False)
        before = phase("Gmain")
        expect = _first_adam_step_gain(G.parameters(), opts.glr, opts.eps)
        opt_G.step()
        after = phase("Gmain")
        drop = before["loss/G"] + before["loss/trans"] - after["loss/G"] - after["loss/trans"]
        assert expect > 1e-3 and drop > 0.25 * expect, (before, after, expect)
        assert after["scores/fake"] > before["scores/fake"] and after["loss/G"] < before["loss/G"]
    finally:
        torch.set_num_threads(threads)
