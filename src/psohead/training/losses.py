"""The PanoHead GAN objective (spec 2.2-2.4).

Phases (StyleGAN2 lazy regularisation):
  Gmain  softplus(-D(G(z))) + trans_reg * ||mean_batch(delta)||^2
  Dmain  softplus(D(G(z))) + softplus(-D(x))
  Dreg   R1: gamma/2 (||d/d image||^2 + ||d/d image_raw||^2) + gamma_seg/2 ||d/d image_mask||^2
  Dboth  Dmain and Dreg together (when R1 is not lazy)
with the generator pose-conditioning swap (GPC) and background swap, the D blur fade-in, the
density-noise fade and an optional neural-rendering-resolution fade, all functions of the number
of images shown so far (``cur_nimg``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..nn import filtered_resize, gaussian_blur


@dataclass
class LossConfig:
    """Loss hyper-parameters; defaults are the official PanoHead run (spec section 0)."""

    r1_gamma: float = 1.0
    r1_gamma_seg: float = 1.0
    gpc_reg_prob: float = 0.7          # final pose-swap probability
    gpc_reg_fade_kimg: float = 1000.0  # swap probability fades 1 -> gpc_reg_prob
    bcg_reg_prob: float = 0.2          # background-swap probability
    trans_reg: float = 10.0            # camera-offset regulariser weight
    blur_init_sigma: float = 10.0
    blur_fade_kimg: float = 200.0
    density_noise_fade_kimg: float = 200.0
    neural_rendering_resolution_initial: int = 64
    neural_rendering_resolution_final: int | None = None
    neural_rendering_resolution_fade_kimg: float = 1000.0

    def without_fades(self) -> "LossConfig":
        """Schedules as after an official resume: no blur, final GPC prob, no density noise."""
        return LossConfig(**{**self.__dict__, "blur_fade_kimg": 0.0, "gpc_reg_fade_kimg": 0.0,
                             "density_noise_fade_kimg": 0.0})


def _fade(cur_nimg: int, fade_kimg: float) -> float:
    """1 at the start, 0 after fade_kimg (0 if there is no fade)."""
    if fade_kimg <= 0:
        return 0.0
    return max(1.0 - cur_nimg / (fade_kimg * 1000), 0.0)


class PanoHeadLoss:
    """Accumulates the gradients of one phase on G or D for one (per-GPU) minibatch."""

    def __init__(self, G, D, cfg: LossConfig, autocast_dtype: torch.dtype | None = None):
        self.G, self.D, self.cfg = G, D, cfg
        self.autocast_dtype = autocast_dtype

    # ---- schedules -------------------------------------------------------------------------
    def blur_sigma(self, cur_nimg: int) -> float:
        return self.cfg.blur_init_sigma * _fade(cur_nimg, self.cfg.blur_fade_kimg)

    def swapping_prob(self, cur_nimg: int) -> float:
        alpha = 1.0 - _fade(cur_nimg, self.cfg.gpc_reg_fade_kimg)
        return (1 - alpha) + alpha * self.cfg.gpc_reg_prob

    def density_noise(self, cur_nimg: int) -> float:
        return _fade(cur_nimg, self.cfg.density_noise_fade_kimg)

    def rendering_resolution(self, cur_nimg: int) -> int:
        r0, r1 = self.cfg.neural_rendering_resolution_initial, self.cfg.neural_rendering_resolution_final
        if r1 is None:
            return r0
        alpha = 1.0 - _fade(cur_nimg, self.cfg.neural_rendering_resolution_fade_kimg)
        return int(round((1 - alpha) * r0 + alpha * r1))

    # ---- passes ----------------------------------------------------------------------------
    def _autocast(self, device: torch.device):
        if self.autocast_dtype is None or device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.autocast_dtype)

    def run_G(self, z, c, swapping_prob: float, resolution: int, update_emas: bool = False):
        """Generator pass with GPC + background swap; returns (outputs, delta)."""
        n = z.shape[0]
        swap = torch.rand((n, 1), device=c.device) < swapping_prob
        c_cond = torch.where(swap, torch.roll(c, 1, 0), c)
        with self._autocast(z.device):
            ws = self.G.mapping(z, c_cond, update_emas=update_emas)
            ws_bcg = None
            if self.cfg.bcg_reg_prob > 0:
                swap_bcg = torch.rand((n, 1, 1), device=ws.device) < self.cfg.bcg_reg_prob
                ws_bcg = torch.where(swap_bcg, torch.roll(ws, 1, 0), ws)
            c_render, delta = self.G.apply_delta_c(z, c)
            out = self.G.synthesis(ws, c_render, neural_rendering_resolution=resolution,
                                   update_emas=update_emas, ws_bcg=ws_bcg)
        return {k: v.float() for k, v in out.items() if k in ("image", "image_raw", "image_mask")}, delta.float()

    def run_D(self, img: dict, c, blur_sigma: float, update_emas: bool = False) -> torch.Tensor:
        if blur_sigma > 0:
            img = {**img, "image": gaussian_blur(img["image"], blur_sigma)}
        with self._autocast(c.device):
            return self.D(img, c, update_emas=update_emas).float()

    def real_inputs(self, real_img, real_mask, resolution: int, blur_sigma: float) -> dict:
        """Real batch as D sees it: image [-1,1], raw = blurred resize to R, mask [0,1] at R."""
        raw = filtered_resize(real_img, resolution)
        if blur_sigma > 0:
            raw = gaussian_blur(raw, blur_sigma)  # official: the real raw image is blurred once more
        return {"image": real_img, "image_raw": raw, "image_mask": filtered_resize(real_mask, resolution)}

    # ---- phases ----------------------------------------------------------------------------
    def accumulate_gradients(self, phase: str, real_img, real_mask, real_c, gen_z, gen_c,
                             gain: float, cur_nimg: int) -> dict:
        """Backward the loss of ``phase`` scaled by ``gain``; return detached loss terms.

        real_img float [-1,1] [N,3,H,W]; real_mask float [0,1] [N,1,H,W].
        """
        assert phase in ("Gmain", "Dmain", "Dreg", "Dboth")
        cfg = self.cfg
        blur_sigma = self.blur_sigma(cur_nimg)
        swapping_prob = self.swapping_prob(cur_nimg)
        resolution = self.rendering_resolution(cur_nimg)
        if phase != "Dreg":  # Dreg runs D on reals only
            self.G.rendering_kwargs["density_noise"] = self.density_noise(cur_nimg)
        stats = {}

        if phase == "Gmain":
            gen, delta = self.run_G(gen_z, gen_c, swapping_prob, resolution)
            logits = self.run_D(gen, gen_c, blur_sigma)
            loss_g = F.softplus(-logits).mean()
            loss_trans = cfg.trans_reg * delta.mean(0).square().sum()
            (loss_g + loss_trans).mul(gain).backward()
            stats.update({"loss/G": loss_g.detach(), "loss/trans": loss_trans.detach(),
                          "scores/fake": logits.detach().mean()})

        if phase in ("Dmain", "Dboth"):
            with torch.no_grad():
                gen, _ = self.run_G(gen_z, gen_c, swapping_prob, resolution, update_emas=True)
            logits = self.run_D(gen, gen_c, blur_sigma, update_emas=True)
            loss_dgen = F.softplus(logits).mean()
            loss_dgen.mul(gain).backward()
            stats["loss/D_fake"] = loss_dgen.detach()

        if phase in ("Dmain", "Dreg", "Dboth"):
            with_r1 = phase in ("Dreg", "Dboth")
            real = self.real_inputs(real_img, real_mask, resolution, blur_sigma)
            real = {k: v.detach().requires_grad_(with_r1) for k, v in real.items()}
            logits = self.run_D(real, real_c, blur_sigma)
            total = logits.new_zeros(())
            if phase in ("Dmain", "Dboth"):
                loss_dreal = F.softplus(-logits).mean()
                total = total + loss_dreal
                stats.update({"loss/D_real": loss_dreal.detach(), "scores/real": logits.detach().mean()})
            if with_r1:
                g_img, g_raw, g_mask = torch.autograd.grad(
                    outputs=[logits.sum()], inputs=[real["image"], real["image_raw"], real["image_mask"]],
                    create_graph=True, only_inputs=True)
                penalty = g_img.square().sum([1, 2, 3]) + g_raw.square().sum([1, 2, 3])
                penalty_seg = g_mask.square().sum([1, 2, 3])
                loss_r1 = (penalty * (cfg.r1_gamma / 2) + penalty_seg * (cfg.r1_gamma_seg / 2)).mean()
                total = total + loss_r1
                stats.update({"loss/r1": loss_r1.detach(), "loss/r1_penalty": penalty.detach().mean(),
                              "loss/r1_penalty_seg": penalty_seg.detach().mean()})
            if total.requires_grad:  # False only for a D whose score ignores the images
                total.mul(gain).backward()
        return stats
