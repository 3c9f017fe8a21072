"""Batched sphere tracing of procedural heads under PanoHead camera labels (CPU or CUDA).

All rays of all images march together on flat tensors; every ``compact_every`` steps the rays
that hit or left the bound are dropped, so the cost follows the live rays without any
per-pixel Python work. Near-miss rays keep their closest approach, which gives soft edges to
both the colour and the mask.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..camera import split_label
from . import head as H
from .params import SCOL


@dataclass
class RenderConfig:
    resolution: int = 128
    steps: int = 72  # sphere-tracing iterations (fixed upper bound)
    relax: float = 0.85  # step = relax * distance (the SDF is only a bound)
    compact_every: int = 6
    hit_px: float = 0.3  # hit when the distance is below this many pixel footprints
    ao: bool = True


@dataclass
class RenderOutput:
    rgb: torch.Tensor  # [B, 3, R, R] in [0, 1] (sRGB)
    mask: torch.Tensor  # [B, R, R] soft foreground in [0, 1]
    depth: torch.Tensor  # [B, R, R] camera-space z (0 where background)
    normal: torch.Tensor  # [B, 3, R, R] world normals (0 where background)
    hit: torch.Tensor  # [B, R, R] bool, ray hit the surface


def camera_rays(labels: torch.Tensor, res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """labels [B,25] -> origins [B,3], unit directions [B, R*R, 3] (row-major pixels, top row first)."""
    cam2world, k = split_label(labels)
    dev = labels.device
    pix = (torch.arange(res, device=dev, dtype=torch.float32) + 0.5) / res
    v, u = torch.meshgrid(pix, pix, indexing="ij")
    fx, fy, cx, cy = (k[:, 0, 0, None], k[:, 1, 1, None], k[:, 0, 2, None], k[:, 1, 2, None])
    x = (u.reshape(1, -1) - cx) / fx
    y = (v.reshape(1, -1) - cy) / fy
    d_cam = torch.stack([x, y, torch.ones_like(x)], -1)
    d = d_cam @ cam2world[:, :3, :3].transpose(1, 2)
    return cam2world[:, :3, 3], d / d.norm(dim=-1, keepdim=True)


def _bound(o, d):
    c = torch.tensor(H.BOUND_CENTER, device=o.device)
    oc = o - c
    b = (oc * d).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - H.BOUND_RADIUS ** 2)
    s = disc.clamp_min(0).sqrt()
    return (-b - s).clamp_min(0), -b + s, disc > 0


def _trace(o, d, pp, head_idx, pix_angle, cfg):
    n = d.shape[0]
    t0, t1, inside = _bound(o, d)
    best_r = torch.full((n,), 1e9, device=d.device)
    best_t = t0.clone()
    hit = torch.zeros(n, dtype=torch.bool, device=d.device)
    act = inside.nonzero().squeeze(1)
    t_a = t0[act]
    done_steps = 0
    while done_steps < cfg.steps and act.numel():
        o_a, d_a, p_a, far, pa = o[act], d[act], pp[head_idx[act]], t1[act], pix_angle[act]
        br, bt = best_r[act], best_t[act]
        h = torch.zeros_like(t_a, dtype=torch.bool)
        for _ in range(min(cfg.compact_every, cfg.steps - done_steps)):
            dist = H.sdf(o_a + t_a.unsqueeze(-1) * d_a, p_a)
            r = dist / (t_a * pa)
            better = r < br
            br, bt = torch.where(better, r, br), torch.where(better, t_a, bt)
            h = h | (r < cfg.hit_px)
            t_a = torch.where(h, t_a, t_a + cfg.relax * dist)
            done_steps += 1
        best_r[act], best_t[act], hit[act] = br, bt, h
        keep = ~h & (t_a < far)
        act, t_a = act[keep], t_a[keep]
    return best_t, best_r, hit


def _normals(p, pp, eps=2.5e-3):
    k = torch.tensor([[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]], dtype=p.dtype, device=p.device)
    n = sum(k[i] * H.sdf(p + eps * k[i], pp).unsqueeze(-1) for i in range(4))
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-8)


def _light_dirs(o, sp):
    """Key/fill directions (toward the lights), set relative to each camera."""
    fwd = -o / o.norm(dim=-1, keepdim=True)
    up = torch.tensor([0.0, 1.0, 0.0], device=o.device).expand_as(fwd)
    right = torch.cross(fwd, up, dim=-1)
    right = right / right.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    up = torch.cross(right, fwd, dim=-1)

    def dir_(az, el):
        v = (-fwd * (torch.cos(el) * torch.cos(az)).unsqueeze(-1) + right * (torch.cos(el) * torch.sin(az)).unsqueeze(-1)
             + up * torch.sin(el).unsqueeze(-1))
        return v / v.norm(dim=-1, keepdim=True)

    az, el = sp[:, SCOL["key_az"]], sp[:, SCOL["key_el"]]
    return dir_(az, el), dir_(-0.8 * az - 0.3 * torch.sign(az), 0.3 * el), fwd


def background(sp: torch.Tensor, res: int) -> torch.Tensor:
    """[B, 3, R, R] flat, gradient or noise backgrounds (sRGB)."""
    dev = sp.device
    g = (torch.arange(res, device=dev, dtype=torch.float32) + 0.5) / res * 2 - 1
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    c0 = sp[:, [SCOL["bg_r0"], SCOL["bg_g0"], SCOL["bg_b0"]]].view(-1, 3, 1, 1)
    c1 = sp[:, [SCOL["bg_r1"], SCOL["bg_g1"], SCOL["bg_b1"]]].view(-1, 3, 1, 1)
    a = sp[:, SCOL["bg_angle"]].view(-1, 1, 1)
    ramp = (0.5 + 0.5 * (xx * torch.cos(a) + yy * torch.sin(a))).unsqueeze(1)
    ph = sp[:, SCOL["bg_phase"]].view(-1, 1, 1)
    noise = (torch.sin(5.3 * xx + 3.1 * yy + ph) + torch.sin(-4.1 * xx + 7.7 * yy + 1.7 * ph)
             + 0.5 * torch.sin(13.0 * xx - 11.0 * yy + 2.3 * ph)).unsqueeze(1) / 2.5
    typ = sp[:, SCOL["bg_type"]].view(-1, 1, 1, 1)
    flat = c0.expand(-1, 3, res, res)
    grad = torch.lerp(c0, c1, ramp)
    noisy = torch.lerp(c0, c1, 0.5 + 0.5 * noise) + sp[:, SCOL["bg_noise"]].view(-1, 1, 1, 1) * noise
    out = torch.where(typ < 0.5, flat, torch.where(typ < 1.5, grad, noisy))
    return out.clamp(0, 1)


@torch.no_grad()
def render(labels: torch.Tensor, head_params: torch.Tensor, scene_params: torch.Tensor,
           cfg: RenderConfig | None = None) -> RenderOutput:
    """Render B images: labels [B,25], head_params [B,P], scene_params [B,S], all on one device."""
    cfg = cfg or RenderConfig()
    res, dev = cfg.resolution, labels.device
    b = labels.shape[0]
    o, d = camera_rays(labels.float(), res)
    fx = split_label(labels)[1][:, 0, 0]
    npx = res * res
    head_idx = torch.arange(b, device=dev).repeat_interleave(npx)
    o_f, d_f = o.repeat_interleave(npx, 0), d.reshape(-1, 3)
    pix_angle = (1.0 / (fx * res)).repeat_interleave(npx)
    best_t, best_r, hit = _trace(o_f, d_f, head_params, head_idx, pix_angle, cfg)
    alpha = torch.where(hit, torch.ones_like(best_r), ((1.0 - best_r) / (1.0 - cfg.hit_px)).clamp(0, 1))
    sel = (alpha > 0).nonzero().squeeze(1)
    rgb = torch.zeros(b * npx, 3, device=dev)
    nrm = torch.zeros(b * npx, 3, device=dev)
    if sel.numel():
        pp, sp = head_params[head_idx[sel]], scene_params[head_idx[sel]]
        p = o_f[sel] + best_t[sel].unsqueeze(-1) * d_f[sel]
        comp = H.components(p, pp)
        alb, mat = H.albedo(comp, pp)
        n = _normals(p, pp)
        rgb[sel] = _shade(p, n, alb, mat, o_f[sel], d_f[sel], pp, sp, cfg)
        nrm[sel] = n
    bg = background(scene_params, res)
    rgb = rgb.view(b, res, res, 3).permute(0, 3, 1, 2)
    a = alpha.view(b, 1, res, res)
    out = torch.lerp(bg, rgb, a)
    cos_f = (d * _forward(labels).unsqueeze(1)).sum(-1)
    depth = torch.where(hit.view(b, -1), best_t.view(b, -1) * cos_f, torch.zeros_like(cos_f)).view(b, res, res)
    return RenderOutput(out, alpha.view(b, res, res), depth, nrm.view(b, res, res, 3).permute(0, 3, 1, 2),
                        hit.view(b, res, res))


def _forward(labels):
    return split_label(labels)[0][:, :3, 2]


def _shade(p, n, alb, mat, o, d, pp, sp, cfg):
    key, fill, _ = _light_dirs(o, sp)
    ao = torch.ones_like(p[:, 0])
    if cfg.ao:
        occ = sum((s - H.sdf(p + s * n, pp)).clamp_min(0) / s for s in (0.012, 0.03))
        ao = (1 - 0.45 * occ).clamp(0.3, 1)
    warm = sp[:, SCOL["warm"]].unsqueeze(-1) * torch.tensor([1.0, 0.0, -1.0], device=p.device)
    key_col = (1 + warm) * sp[:, SCOL["key_i"]].unsqueeze(-1)
    lk = (n * key).sum(-1).clamp_min(0).unsqueeze(-1)
    lf = (n * fill).sum(-1).clamp_min(0).unsqueeze(-1)
    amb = (sp[:, SCOL["amb_i"]] * (0.7 + 0.3 * n[:, 1]) * ao).unsqueeze(-1)
    light = amb + lk * key_col * (0.5 + 0.5 * ao.unsqueeze(-1)) + lf * sp[:, SCOL["fill_i"]].unsqueeze(-1)
    half = key - d
    half = half / half.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    nh = (n * half).sum(-1).clamp_min(0)
    shine = torch.tensor([0.12, 0.6, 0.03, 0.1], device=p.device)[mat]
    power = torch.tensor([24.0, 90.0, 8.0, 40.0], device=p.device)[mat]
    spec = (shine * nh.pow(power) * (lk.squeeze(-1) > 0)).unsqueeze(-1) * key_col
    lin = alb * light + spec
    return lin.clamp(0, 1).pow(1 / 2.2)
