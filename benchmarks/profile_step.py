"""Where a stage-1 step, a stage-2 step and a plain generator forward spend their time, by op and
by module, on the CPU or a GPU.

A network (the bundled model, or ``official``: the full official config with random weights), a
fixed synthetic target (a render of a random head, front and back views as the ``fast`` preset
supervises them: stage 1 the front, stage 2 front + back + one of the back +-45 views), fixed ray
samples. Two tables per case:

* by module: forward (and forward + backward, for the steps) of each part of the generator
  (backbone, renderer, background, super-resolution, loss) run on its own on the inputs it sees;
* by op: ``torch.profiler`` self time of the top ops (CPU time on the CPU, kernel time on CUDA).

    python benchmarks/profile_step.py --steps 4                          # CPU, bundled model
    python benchmarks/profile_step.py --device cuda --network official --tf32 --forward 1 8

Shares are what to compare on a shared machine; absolute seconds scale with the load. The numbers
and what they led to are in docs/performance.md.
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from psohead.api import load_generator
from psohead.camera import label_from_yaw_pitch
from psohead.networks.config import GeneratorConfig
from psohead.networks.generator import TriGridGenerator
from psohead.inversion.losses import build_perceptual
from psohead.inversion.pivotal import tuned_parameters
from psohead.inversion.projector import latent_stats
from psohead.inversion.targets import TargetCache, TargetView, views_loss

RENDER = {"ray_start": 2.35}  # what inversion renders with


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_views(G, seed: int = 1) -> tuple[list[TargetView], list[TargetView]]:
    yaws = (0.0, math.pi, math.pi + math.pi / 4)
    dev = next(G.parameters()).device
    labels = torch.cat([label_from_yaw_pitch(y) for y in yaws]).to(dev)
    with torch.no_grad():
        z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(dev)
        ws = G.mapping(z, labels[:1])
        images = G.synthesis(ws, labels, noise_mode="const", deterministic=True, render_overrides=RENDER)["image"]
    views = [TargetView(n, images[i:i + 1], labels[i:i + 1], w) for i, (n, w) in
             enumerate((("front", 1.0), ("back", 0.15), ("back+45", 0.15)))]
    return views[:1], views


def step_fn(G, ws, views, perceptual, params):
    cache = TargetCache()
    opt = torch.optim.Adam(params, lr=1e-4)

    def step():
        out = G.synthesis(ws, torch.cat([v.label for v in views]), noise_mode="const", deterministic=True,
                          render_overrides=RENDER)
        loss, _ = views_loss(out["image"], views, perceptual, cache=cache)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def timed(fn, repeats: int, device: torch.device = torch.device("cpu")) -> float:
    fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - t) / repeats


def by_module(G, ws, labels, views, perceptual, repeats: int, backward: bool = True
              ) -> list[tuple[str, float, float]]:
    """(part, forward s, forward + backward s (nan without ``backward``)) of each part on the
    inputs it sees in a call at the cameras ``labels`` (with the loss on ``views``, if given)."""
    dev = ws.device
    grads = any(p.requires_grad for p in G.parameters())
    leaf = lambda t: t.detach().requires_grad_(True)  # noqa: E731
    captured = {}
    with torch.no_grad():
        c = labels.float()
        origins, dirs = G.ray_sampler(c[:, :16].reshape(-1, 4, 4), c[:, 16:25].reshape(-1, 3, 3),
                                      G.neural_rendering_resolution)
        captured["planes"] = G.planes(ws, noise_mode="const")
        out = G.synthesis(ws, labels, noise_mode="const", deterministic=True, render_overrides=RENDER,
                          return_intermediates=True)
    n = len(labels)
    opts = {**G.rendering_kwargs, **RENDER}
    sr_ws = ws.expand(n, -1, -1)
    parts = {
        "backbone (tri-grid)": lambda: G.backbone.synthesis(ws if grads else leaf(ws), noise_mode="const"),
        "renderer (rays, decoder, compositing)": lambda: G.renderer(
            leaf(captured["planes"]), G.decoder, origins, dirs, opts, deterministic=True)[0],
        "background net": lambda: G.bcg_synthesis(ws[:, :G.bcg_synthesis.num_ws] if grads else
                                                  leaf(ws[:, :G.bcg_synthesis.num_ws]), noise_mode="const"),
        "torgb + super-resolution": lambda: G.superresolution(
            G.torgb(leaf(out["sr_input_feature"]), sr_ws[:, -1], fused_modconv=False),
            out["sr_input_feature"], sr_ws, noise_mode="none"),
        "loss (MSE + MS-SSIM)": lambda: views_loss(leaf(out["image"]), views, perceptual, cache=cache)[0],
    }
    cache = TargetCache()
    rows = []
    if G.bcg_synthesis is None:
        del parts["background net"]
    if views is None:  # a plain forward: no loss
        del parts["loss (MSE + MS-SSIM)"]
    if G.torgb is None:
        parts["torgb + super-resolution"] = lambda: G.superresolution(
            leaf(out["sr_input_feature"])[:, :3], out["sr_input_feature"], sr_ws, noise_mode="none")
    for name, fn in parts.items():
        with torch.no_grad():
            fwd = timed(fn, repeats, dev)

        def both():
            y = fn()
            y = y[0] if isinstance(y, tuple) else y
            y.float().sum().backward()
        rows.append((name, fwd, timed(both, repeats, dev) if backward else float("nan")))
    return rows


def report(title: str, step, modules, steps: int, top: int, device: torch.device) -> None:
    per_step = timed(step, steps, device)
    print(f"\n## {title}: {1000 * per_step:.1f} ms per call (mean of {steps})\n")
    col = 2 if not math.isnan(modules[0][2]) else 1
    total = sum(r[col] for r in modules)
    print(f"| part | forward ms | forward + backward ms | share of the parts |\n|---|---:|---:|---:|")
    for name, f, fb in modules:
        both = "–" if math.isnan(fb) else f"{1000 * fb:.1f}"
        print(f"| {name} | {1000 * f:.1f} | {both} | {100 * (f, fb)[col - 1] / total:.0f} % |")
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        sync(device)
    attr = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if not e.key.startswith("autograd::engine") and getattr(e, attr) > 0]
    if cuda:  # the kernels alone: an op's device time is its kernels' time, counted twice otherwise
        events = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    total_self = sum(getattr(e, attr) for e in events)
    what = "GPU kernel (device time)" if cuda else "op (self CPU)"
    print(f"\n| {what} | share | ms per call | calls per call |\n|---|---:|---:|---:|")
    for e in sorted(events, key=lambda e: -getattr(e, attr))[:top]:
        print(f"| {e.key[:90]} | {100 * getattr(e, attr) / total_self:.1f} % | "
              f"{getattr(e, attr) / 1000 / steps:.2f} | {e.count / steps:.0f} |")
    if cuda:
        print(f"\nkernel time {total_self / 1000 / steps:.1f} ms of {1000 * per_step:.1f} ms wall per call "
              f"(the rest: launch and CPU overhead)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", default="default",
                    help="network file, 'default' (bundled) or 'official' (full official config, random weights)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tf32", action="store_true", help="TF32 matmul/conv on CUDA")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--stage", choices=("1", "2", "both", "none"), default="both")
    ap.add_argument("--forward", type=int, nargs="*", default=[], metavar="BATCH",
                    help="also profile a plain G forward (z -> 512² image) at these batch sizes")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {device}: {gpu}, network {args.network}, tf32 {args.tf32}")
    if args.network == "official":
        G = TriGridGenerator.from_config(GeneratorConfig.official()).to(device)
    else:
        G = load_generator(args.network, device=device)
    G.requires_grad_(False)
    for batch in args.forward:
        G.eval()
        z = torch.randn(batch, G.z_dim, device=device, generator=torch.Generator(device).manual_seed(0))
        c = label_from_yaw_pitch(0.0).to(device).repeat(batch, 1)

        def forward():
            with torch.no_grad():
                return G(z, c, truncation_psi=0.7, noise_mode="const")
        with torch.no_grad():
            ws = G.mapping(z, c, truncation_psi=0.7)
        report(f"G forward, batch {batch}", forward, by_module(G, ws, c, None, None, args.steps, backward=False),
               args.steps, args.top, device)
    if args.stage == "none":
        return 0
    front, all_views = make_views(G)
    perceptual = build_perceptual("msssim").to(device)
    stats = latent_stats(G, 2000)
    ws0 = stats.w_avg.repeat(1, G.num_ws, 1).to(device)
    if args.stage in ("1", "both"):
        G.eval().requires_grad_(False)
        w = ws0.clone().requires_grad_(True)
        report("stage 1 (latent, 1 view)", step_fn(G, w, front, perceptual, [w]),
               by_module(G, w, torch.cat([v.label for v in front]), front, perceptual, args.steps), args.steps, args.top, device)
    if args.stage in ("2", "both"):
        G.train().requires_grad_(False)
        params = tuned_parameters(G)
        for p in params:
            p.requires_grad_(True)
        report("stage 2 (tuning, 3 views)", step_fn(G, ws0, all_views, perceptual, params),
               by_module(G, ws0, torch.cat([v.label for v in all_views]), all_views, perceptual, args.steps), args.steps, args.top, device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
