"""Where a stage-1 and a stage-2 step spend their time on the CPU, by op and by module.

The bundled model, a fixed synthetic target (a render of a random head, front and back views as
the ``fast`` preset supervises them: stage 1 the front, stage 2 front + back + one of the back
+-45 views), fixed ray samples. Two tables per stage:

* by module: forward and forward + backward of each part of the generator (backbone, renderer,
  background, super-resolution, loss) run on its own on the inputs it sees in a real step;
* by op: ``torch.profiler`` self CPU time of the top ops over ``--steps`` steps.

    python benchmarks/profile_cpu.py --steps 4            # -> stdout (shares, not absolute seconds)

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
from psohead.inversion.losses import build_perceptual
from psohead.inversion.pivotal import tuned_parameters
from psohead.inversion.projector import latent_stats
from psohead.inversion.targets import TargetCache, TargetView, views_loss

RENDER = {"ray_start": 2.35}  # what inversion renders with


def make_views(G, seed: int = 1) -> tuple[list[TargetView], list[TargetView]]:
    yaws = (0.0, math.pi, math.pi + math.pi / 4)
    labels = torch.cat([label_from_yaw_pitch(y) for y in yaws])
    with torch.no_grad():
        z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed))
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


def timed(fn, repeats: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def by_module(G, ws, views, perceptual, repeats: int) -> list[tuple[str, float, float]]:
    """(part, forward s, forward + backward s) of each part on the inputs it sees in a step."""
    labels = torch.cat([v.label for v in views])
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
    n = len(views)
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
    for name, fn in parts.items():
        with torch.no_grad():
            fwd = timed(fn, repeats)

        def both():
            y = fn()
            y = y[0] if isinstance(y, tuple) else y
            y.float().sum().backward()
        rows.append((name, fwd, timed(both, repeats)))
    return rows


def report(title: str, step, modules, steps: int, top: int) -> None:
    per_step = timed(step, steps)
    print(f"\n## {title}: {per_step:.3f} s per step (mean of {steps})\n")
    total = sum(r[2] for r in modules)
    print("| part | forward s | forward + backward s | share of the parts |\n|---|---:|---:|---:|")
    for name, f, fb in modules:
        print(f"| {name} | {f:.3f} | {fb:.3f} | {100 * fb / total:.0f} % |")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = [e for e in prof.key_averages() if not e.key.startswith("autograd::engine")]
    total_self = sum(e.self_cpu_time_total for e in events)
    print(f"\n| op (self CPU) | share | calls per step |\n|---|---:|---:|")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]:
        print(f"| {e.key} | {100 * e.self_cpu_time_total / total_self:.1f} % | {e.count / steps:.0f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", default="default")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--stage", choices=("1", "2", "both"), default="both")
    args = ap.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    G = load_generator(args.network, device="cpu")
    front, all_views = make_views(G)
    perceptual = build_perceptual("msssim")
    stats = latent_stats(G, 2000)
    ws0 = stats.w_avg.repeat(1, G.num_ws, 1)
    if args.stage in ("1", "both"):
        G.eval().requires_grad_(False)
        w = ws0.clone().requires_grad_(True)
        report("stage 1 (latent, 1 view)", step_fn(G, w, front, perceptual, [w]),
               by_module(G, w, front, perceptual, args.steps), args.steps, args.top)
    if args.stage in ("2", "both"):
        G.train().requires_grad_(False)
        params = tuned_parameters(G)
        for p in params:
            p.requires_grad_(True)
        report("stage 2 (tuning, 3 views)", step_fn(G, ws0, all_views, perceptual, params),
               by_module(G, ws0, all_views, perceptual, args.steps), args.steps, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
