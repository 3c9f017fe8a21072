"""Rays, stratified + importance sampling and volume integration (spec 1.8-1.9).

Randomness: the stratified jitter U, the importance draws u and the optional density noise.
``deterministic=True`` replaces them exactly as the parity fixtures do (U = 0.5,
u = linspace(0, 1, N_importance), no density noise) and uses no random number generator at all.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .trigrid import sample_trigrid_mean

TRIPLANE_CROP = 0.1  # samples with |x| or |z| beyond box_warp/2 - crop get σ = -1000 (official default)


def no_autocast(device: torch.device):
    """Float32 inside a bf16/fp16 autocast region (rays, camera offsets, compositing)."""
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


class _PositiveCumprod(torch.autograd.Function):
    """torch.cumprod for inputs known to be > 0 (transmittances 1 - alpha + 1e-10).

    The gradient is PyTorch's own no-zero formula, reverse cumsum(grad * out) / x; PyTorch first
    checks the input for zeros with a device-to-host read, which stalls the GPU every step and
    cannot be recorded in a CUDA graph. Values and gradients are identical."""

    @staticmethod
    def forward(ctx, x, dim):
        out = torch.cumprod(x, dim)
        ctx.save_for_backward(x, out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        return (grad * out).flip(ctx.dim).cumsum(ctx.dim).flip(ctx.dim) / x, None


def positive_cumprod(x: torch.Tensor, dim: int) -> torch.Tensor:
    return _PositiveCumprod.apply(x, dim)


class RaySampler(torch.nn.Module):
    """One ray per pixel centre of an R×R image, row-major; unit directions in world space."""

    def forward(self, cam2world: torch.Tensor, intrinsics: torch.Tensor, resolution: int):
        n, m = cam2world.shape[0], resolution ** 2
        origins = cam2world[:, :3, 3]
        fx, fy = intrinsics[:, 0, 0, None], intrinsics[:, 1, 1, None]
        cx, cy = intrinsics[:, 0, 2, None], intrinsics[:, 1, 2, None]
        sk = intrinsics[:, 0, 1, None]
        ar = torch.arange(resolution, dtype=torch.float32, device=cam2world.device)
        ij = torch.stack(torch.meshgrid(ar, ar, indexing="ij")) * (1.0 / resolution) + (0.5 / resolution)
        uv = ij.flip(0).reshape(2, -1)  # u = column (x), v = row (y)
        x_cam, y_cam = uv[0].expand(n, m), uv[1].expand(n, m)
        z_cam = torch.ones((n, m), device=cam2world.device)
        x_lift = (x_cam - cx + cy * sk / fy - sk * y_cam / fy) / fx * z_cam
        y_lift = (y_cam - cy) / fy * z_cam
        cam_points = torch.stack((x_lift, y_lift, z_cam, torch.ones_like(z_cam)), dim=-1)
        world = torch.bmm(cam2world, cam_points.permute(0, 2, 1)).permute(0, 2, 1)[:, :, :3]
        directions = F.normalize(world - origins[:, None, :], dim=2)
        return origins.unsqueeze(1).expand(-1, m, -1), directions


class MipRayMarcher2(torch.nn.Module):
    """Alpha compositing on interval midpoints with softplus(σ − 1) density."""

    @staticmethod
    def interval_weights(densities, depths, rendering_options: dict) -> torch.Tensor:
        """Compositing weights [N,M,S-1,1] of the S-1 intervals between the samples."""
        if rendering_options["clamp_mode"] != "softplus":
            raise ValueError(f"clamp_mode must be 'softplus', got {rendering_options['clamp_mode']!r}")
        deltas = depths[:, :, 1:] - depths[:, :, :-1]
        densities_mid = F.softplus((densities[:, :, :-1] + densities[:, :, 1:]) / 2 - 1)
        alpha = 1 - torch.exp(-densities_mid * deltas)
        alpha_shifted = torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], -2)
        return alpha * positive_cumprod(alpha_shifted, -2)[:, :, :-1]

    def forward(self, colors, densities, depths, rendering_options: dict, colors_order=None):
        """Samples along each ray in depth order; ``colors_order`` [N,M,S,1] (optional): the colours
        are given unsorted and ``colors.gather(-2, colors_order)`` would sort them."""
        weights = self.interval_weights(densities, depths, rendering_options)
        depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
        # sum_i w_i (c_i + c_i+1) / 2 regrouped per sample as one small matmul per ray: the
        # [N,M,S-1,C] midpoint colours are never built (2-3x faster forward + backward on CPU),
        # and unsorted colours get their weights moved to them instead of being sorted themselves.
        sample_weights = (F.pad(weights, (0, 0, 0, 1)) + F.pad(weights, (0, 0, 1, 0))) / 2
        if colors_order is not None:
            sample_weights = torch.zeros_like(sample_weights).scatter(-2, colors_order, sample_weights)
        dtype = torch.promote_types(torch.float32, torch.promote_types(weights.dtype, colors.dtype))
        with no_autocast(colors.device):  # as precise as the elementwise sum it replaces
            composite_rgb = (sample_weights.to(dtype).transpose(-1, -2) @ colors.to(dtype)).squeeze(-2)
        if composite_rgb.requires_grad:  # callers permute it; a strided gradient sends bmm's backward
            composite_rgb.register_hook(torch.Tensor.contiguous)  # into a slow per-ray loop on CPU
        weight_total = weights.sum(2)
        composite_depth = torch.sum(weights * depths_mid, -2) / weight_total
        # Quirk kept on purpose: clamp to the min/max over the whole batch, not per ray.
        composite_depth = torch.nan_to_num(composite_depth, float("inf"))
        composite_depth = torch.clamp(composite_depth, torch.min(depths), torch.max(depths))
        if rendering_options.get("white_back", False):
            composite_rgb = composite_rgb + 1 - weight_total
        return composite_rgb, composite_depth, weights


def crop_mask(coordinates: torch.Tensor, box_warp: float, crop: float) -> torch.Tensor:
    """True where a sample lies outside the x/z crop box (y is not constrained)."""
    # Two slices, not coordinates[..., [0, 2]]: a list index is a host-to-device copy on every call
    # (a synchronisation, and not allowed while a CUDA graph is captured).
    limit = box_warp / 2 - crop
    return ((coordinates[..., 0].abs() > limit) | (coordinates[..., 2].abs() > limit)).unsqueeze(-1)


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, n_samples: int, deterministic: bool,
               eps: float = 1e-5) -> torch.Tensor:
    """Inverse-CDF draw of n_samples per row from piecewise-constant weights over `bins` edges."""
    n_rays, n_bins = weights.shape
    weights = weights + eps
    pdf = weights / torch.sum(weights, -1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1)
    if deterministic:
        u = torch.linspace(0, 1, n_samples, device=bins.device).expand(n_rays, n_samples)
    else:
        u = torch.rand(n_rays, n_samples, device=bins.device)
    u = u.contiguous()
    inds = torch.searchsorted(cdf, u, right=True)
    below = torch.clamp_min(inds - 1, 0)
    above = torch.clamp_max(inds, n_bins)
    inds_sampled = torch.stack([below, above], -1).view(n_rays, 2 * n_samples)
    cdf_g = torch.gather(cdf, 1, inds_sampled).view(n_rays, n_samples, 2)
    bins_g = torch.gather(bins, 1, inds_sampled).view(n_rays, n_samples, 2)
    denom = cdf_g[..., 1] - cdf_g[..., 0]
    denom = torch.where(denom < eps, torch.ones_like(denom), denom)
    return bins_g[..., 0] + (u - cdf_g[..., 0]) / denom * (bins_g[..., 1] - bins_g[..., 0])


class ImportanceRenderer(torch.nn.Module):
    """Two-pass (coarse + importance) volume renderer over a tri-grid."""

    def __init__(self):
        super().__init__()
        self.ray_marcher = MipRayMarcher2()

    def forward(self, planes, decoder, ray_origins, ray_directions, rendering_options: dict,
                deterministic: bool = False, triplane_crop: float = TRIPLANE_CROP,
                return_intermediates: bool = False):
        """planes [N or 1,3,C*D,H,W]; rays [N,M,3]. Returns feature [N,M,C], depth [N,M,1], opacity [N,M,1]
        (+ a dict with depths_coarse [N,M,S,1] / depths_fine [N,M,S_imp,1] if requested)."""
        opts = rendering_options
        depths_coarse = self.sample_stratified(ray_origins, opts["ray_start"], opts["ray_end"],
                                               opts["depth_resolution"], opts["disparity_space_sampling"],
                                               deterministic)
        colors_coarse, densities_coarse = self._decode_along_rays(
            planes, decoder, ray_origins, ray_directions, depths_coarse, opts, deterministic, triplane_crop)
        extras = {"depths_coarse": depths_coarse}
        n_importance = opts["depth_resolution_importance"]
        if n_importance > 0:
            with torch.no_grad():  # the importance draw takes no gradient
                weights = self.ray_marcher.interval_weights(densities_coarse, depths_coarse, opts)
                empty = self._empty_rays(weights, opts, planes, ray_origins)
            depths_fine = self.sample_importance(depths_coarse, weights, n_importance, deterministic)
            if empty is not None:  # their importance samples sit on coarse ones (below)
                on_coarse = torch.arange(n_importance, device=depths_coarse.device).clamp_max(
                    depths_coarse.shape[2] - 1)
                depths_fine = torch.where(empty[..., None, None], depths_coarse[:, :, on_coarse], depths_fine)
            colors_fine, densities_fine = self._decode_along_rays(
                planes, decoder, ray_origins, ray_directions, depths_fine, opts, deterministic, triplane_crop,
                skip=empty)
            if empty is not None:
                # A sample at a coarse sample's depth with its density and colour bounds an interval
                # of length zero (opacity 0) and leaves the next one as it was: an empty ray
                # composites exactly as its coarse samples alone, gradients included.
                e = empty[..., None, None]
                colors_fine = torch.where(e, colors_coarse[:, :, on_coarse], colors_fine)
                densities_fine = torch.where(e, densities_coarse[:, :, on_coarse], densities_fine)
            depths, densities, order = self.sort_samples(depths_coarse, densities_coarse, depths_fine, densities_fine)
            colors = torch.cat([colors_coarse, colors_fine], dim=-2)  # left unsorted (see the marcher)
            extras["depths_fine"] = depths_fine
        else:
            depths, colors, densities, order = depths_coarse, colors_coarse, densities_coarse, None
        rgb, depth, weights = self.ray_marcher(colors, densities, depths, opts, colors_order=order)
        result = (rgb, depth, weights.sum(2))
        return result + (extras,) if return_intermediates else result

    def run_model(self, planes, decoder, coordinates, directions, options: dict, deterministic: bool = False):
        """Decoder outputs {'rgb', 'sigma'} at points [N,M,3] (raw σ; no crop mask). ``planes`` may have
        batch 1 for N sets of points (one tri-grid seen by several cameras)."""
        features = sample_trigrid_mean(planes, coordinates, options["box_warp"], options.get("triplane_depth", 1))
        out = decoder.decode(features)
        noise = options.get("density_noise", 0)
        if noise > 0 and not deterministic:
            out["sigma"] = out["sigma"] + torch.randn_like(out["sigma"]) * noise
        return out

    @staticmethod
    def _empty_rays(weights, opts, planes, origins) -> torch.Tensor | None:
        """[N,M] True for rays whose coarse opacity is below ``opts["skip_empty_below"]`` (on the
        CPU, one tri-grid; None otherwise): their importance samples are not decoded, and they
        composite from their coarse samples alone. At the inversion's cameras about half the rays
        are empty; what such a ray loses is what its near-uniform importance draw would have found
        between the coarse samples (thin edges, a few rays in a thousand; docs/performance.md).
        Off (0) unless asked for: the render is then the official one."""
        below = float(opts.get("skip_empty_below", 0) or 0)
        if below <= 0 or planes.shape[0] != 1 or origins.device.type != "cpu":
            return None
        return weights.sum(2).squeeze(-1) < below

    def _decode_along_rays(self, planes, decoder, origins, directions, depths, opts, deterministic, crop,
                           skip: torch.Tensor | None = None):
        """Colours [N,M,S,C] and densities [N,M,S,1] at ``depths``; samples outside the crop box, and
        every sample of the rays in ``skip`` [N,M] (CPU, one tri-grid), get σ = -1000."""
        # The decoder ignores ray directions (as officially), so none are made per sample.
        n, m, s, _ = depths.shape
        coords = (origins.unsqueeze(-2) + depths * directions.unsqueeze(-2)).reshape(n, -1, 3)
        outside = crop_mask(coords, opts["box_warp"], crop) if crop else None
        if skip is not None:
            skipped = skip.reshape(n, m, 1, 1).expand(n, m, s, 1).reshape(n, -1, 1)
            outside = skipped if outside is None else outside | skipped
        if outside is not None and planes.shape[0] == 1 and coords.device.type == "cpu":
            inside = (~outside).reshape(-1).nonzero().squeeze(1)
            if len(inside):
                return self._decode_inside(planes, decoder, coords, inside, opts, deterministic, (n, m, s))
        out = self.run_model(planes, decoder, coords, None, opts, deterministic)
        sigma = out["sigma"]
        if outside is not None:
            sigma = sigma.masked_fill(outside, -1e3)
        return out["rgb"].reshape(n, m, s, -1), sigma.reshape(n, m, s, 1)

    def _decode_inside(self, planes, decoder, coords, inside, opts, deterministic, shape):
        """:meth:`_decode_along_rays` for one tri-grid on the CPU, decoding only the samples inside
        the crop box. The others get σ = -1000, which gives every interval they bound an opacity
        of exactly 0 in float32 (for any σ of the neighbour below 960), hence weight 0 and no
        gradient: their colour (0 here) and features never count, so the results are those of
        decoding every sample, at the cost of the samples inside (docs/performance.md). (On CUDA
        the data-dependent count would cost a synchronisation and break CUDA graphs.)"""
        n, m, s = shape
        out = self.run_model(planes, decoder, coords.reshape(1, -1, 3).index_select(1, inside), None, opts,
                             deterministic)
        sigma, rgb = out["sigma"][0], out["rgb"][0]
        sigma = sigma.new_full((n * m * s, 1), -1e3).index_copy(0, inside, sigma)
        rgb = rgb.new_zeros((n * m * s, rgb.shape[-1])).index_copy(0, inside, rgb)
        return rgb.reshape(n, m, s, -1), sigma.reshape(n, m, s, 1)

    @staticmethod
    def sample_stratified(ray_origins, ray_start, ray_end, depth_resolution, disparity_space_sampling=False,
                          deterministic=False):
        """Evenly spaced depths [N,M,S,1] jittered by U·δ (U = 0.5 when deterministic)."""
        if not all(isinstance(v, (int, float)) for v in (ray_start, ray_end)):
            raise ValueError(f"ray_start/ray_end must be numbers, got {ray_start!r}/{ray_end!r} ('auto' is unsupported)")
        n, m, _ = ray_origins.shape
        device = ray_origins.device
        lo, hi = (0.0, 1.0) if disparity_space_sampling else (ray_start, ray_end)
        depths = torch.linspace(lo, hi, depth_resolution, device=device).reshape(1, 1, -1, 1).repeat(n, m, 1, 1)
        delta = (hi - lo) / (depth_resolution - 1)
        jitter = torch.full_like(depths, 0.5) if deterministic else torch.rand_like(depths)
        depths = depths + jitter * delta
        if disparity_space_sampling:
            depths = 1.0 / (1.0 / ray_start * (1.0 - depths) + 1.0 / ray_end * depths)
        return depths

    @staticmethod
    def sample_importance(z_vals, weights, n_importance, deterministic=False):
        """Draw depths [N,M,n_importance,1] from the smoothed coarse weights (no gradient)."""
        with torch.no_grad():
            n, m, s, _ = z_vals.shape
            z_vals = z_vals.reshape(n * m, s)
            weights = weights.reshape(n * m, 1, -1).float()
            weights = F.max_pool1d(weights, 2, 1, padding=1)
            weights = F.avg_pool1d(weights, 2, 1).squeeze(1) + 0.01
            z_mid = 0.5 * (z_vals[:, :-1] + z_vals[:, 1:])
            fine = sample_pdf(z_mid, weights[:, 1:-1], n_importance, deterministic)
        return fine.detach().reshape(n, m, n_importance, 1)

    @staticmethod
    def sort_samples(depths1, densities1, depths2, densities2):
        """Coarse and fine samples merged in depth order: (depths, densities, order [N,M,S,1])."""
        depths = torch.cat([depths1, depths2], dim=-2)
        densities = torch.cat([densities1, densities2], dim=-2)
        _, order = torch.sort(depths, dim=-2)
        return torch.gather(depths, -2, order), torch.gather(densities, -2, order), order
