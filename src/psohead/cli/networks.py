"""``psohead convert | info | generate``: network files and sample images (docs/checkpoints.md)."""
from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

from ..atomic import write_image
from ..errors import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser("convert", help="official .pkl (or our file) -> psohead .safetensors",
                              description="Import one network of an official snapshot without executing "
                                          "anything it contains, check it loads, and save it in our format.")
    p.add_argument("src", help="official snapshot .pkl or psohead .safetensors")
    p.add_argument("dst", help="output .safetensors")
    p.add_argument("--which", default="G_ema", choices=("G_ema", "G", "D"), help="network inside a .pkl")
    p.add_argument("--fp16", action="store_true", help="store float16 (half the size; loads back as float32)")
    p.set_defaults(func=run_convert)

    p = subparsers.add_parser("info", help="describe a network file")
    p.add_argument("path", help="psohead .safetensors, official .pkl, or 'default'")
    p.add_argument("--which", default="G_ema", choices=("G_ema", "G", "D"), help="network inside a .pkl")
    p.set_defaults(func=run_info)

    p = subparsers.add_parser("generate", help="random heads from a generator, one PNG per seed and view",
                              description="Writes seed<S>_yaw<Y>_pitch<P>.png per seed and view, and grid.png "
                                          "(rows = seeds, columns = views). Angles in degrees; yaw 0 = frontal, "
                                          "180 = back.")
    p.add_argument("--network", default="default", help="'default', psohead .safetensors or official .pkl")
    p.add_argument("--seeds", default="0-3", help="e.g. 0-7 or 1,5,9 (default 0-3)")
    p.add_argument("--yaw", default="0,90,180", help="comma-separated yaws in degrees (default 0,90,180)")
    p.add_argument("--pitch", default="0", help="comma-separated pitches in degrees (default 0)")
    p.add_argument("--truncation", type=float, default=0.7, help="truncation psi (default 0.7)")
    p.add_argument("--truncation-cutoff", type=int, default=14, help="truncate the first N ws (default 14)")
    p.add_argument("--outdir", required=True, help="output folder")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--deterministic", action="store_true",
                   help="fixed ray jitter and importance draws (reproducible across runs and devices)")
    p.add_argument("--depth", action="store_true",
                   help="add a depth row (near = bright) under each seed's row in grid.png")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_generate)


def parse_seeds(text: str) -> list[int]:
    """'0-7' / '1,5,9' / '0-3,10' -> list of seeds (order kept, no duplicates)."""
    seeds: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m[2] is not None and int(m[2]) < int(m[1])):
            raise InputError(f"--seeds {text!r}: expected e.g. 0-7 or 1,5,9 (non-negative integers, low-high)")
        seeds.extend(range(int(m[1]), int(m[2] or m[1]) + 1))
    if max(seeds) >= 2 ** 32:
        raise InputError(f"--seeds {text!r}: seeds must lie in 0..2^32-1")
    return list(dict.fromkeys(seeds))


def parse_angles(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--{what} {text!r}: expected comma-separated degrees, e.g. 0,90,180") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise InputError(f"--{what} {text!r}: expected comma-separated finite degrees")
    if what == "pitch" and any(abs(v) >= 90 for v in values):
        raise InputError(f"--pitch {text!r}: pitch must lie strictly between -90 and 90 degrees")
    return values


def run_convert(args: argparse.Namespace) -> int:
    import torch

    from ..api import load_network, save_network

    module = load_network(args.src, which=args.which)
    dtype = torch.float16 if args.fp16 else torch.float32
    out = save_network(module, args.dst, dtype=dtype, source=f"{args.which} of {Path(args.src).name}")
    n = sum(t.numel() for t in module.state_dict().values())
    print(f"wrote {out} ({type(module).__name__}, {n:,} numbers, {str(dtype)[6:]}, {out.stat().st_size / 2**20:.1f} MiB)")
    return 0


_CONFIG_FIELDS = ("z_dim", "w_dim", "c_dim", "img_resolution", "channel_base", "channel_max", "num_fp16_res",
                  "sr_num_fp16_res", "conv_clamp", "seg_resolution", "neural_rendering_resolution")
_RENDER_FIELDS = ("triplane_size", "triplane_depth", "depth_resolution", "depth_resolution_importance",
                  "superresolution_module", "use_background", "ray_start", "ray_end")


def run_info(args: argparse.Namespace) -> int:
    from ..api import build_network, read_checkpoint

    net = read_checkpoint(args.path, args.which)
    module = build_network(net, args.path)
    meta = net.metadata
    print(f"file:     {args.path}")
    print(f"kind:     {net.kind} ({net.class_name} -> {type(module).__name__})")
    print(f"storage:  {meta.get('psohead.dtype', 'float32 (official pickle)')}"
          + (f", written by psohead {meta['psohead.version']}" if "psohead.version" in meta else ""))
    if "psohead.source" in meta:
        print(f"source:   {meta['psohead.source']}")
    cfg = net.config
    print("config:   " + ", ".join(f"{k}={cfg[k]}" for k in _CONFIG_FIELDS if k in cfg))
    rk = cfg.get("rendering_kwargs") or {}
    if rk:
        print("render:   " + ", ".join(f"{k}={rk[k]}" for k in _RENDER_FIELDS if k in rk))
    if hasattr(module, "neural_rendering_resolution"):
        print(f"neural rendering resolution: {module.neural_rendering_resolution}")
    print("parameters per top-level child:")
    total = 0
    for name, child in module.named_children():
        n = sum(p.numel() for p in child.parameters())
        total += n
        if n:
            print(f"  {name:<16} {n:>12,}")
    own = sum(p.numel() for p in module.parameters(recurse=False))
    total += own
    buffers = sum(b.numel() for b in module.buffers())
    print(f"  {'total':<16} {total:>12,}   (+ {buffers:,} buffer values)")
    return 0


def _depth_rows(out: dict, size) -> "np.ndarray":
    """uint8 depth images (near = bright) stretched over the head's own depth range, background black.

    Depth and mask come at the neural rendering resolution; they are nearest-upsampled to ``size``.
    """
    import torch

    from ..io.images import to_uint8

    depth, fg = (torch.nn.functional.interpolate(out[k], size=tuple(size), mode="nearest")
                 for k in ("image_depth", "image_mask"))
    fg = fg > 0.5
    near_far = (float(depth[fg].min()), float(depth[fg].max())) if fg.any() else None
    return to_uint8(torch.where(fg, depth, torch.tensor(float("inf"))), "image_depth", depth_range=near_far)


def run_generate(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from ..api import load_generator
    from ..camera import HEAD_LOOKAT, apply_offset, label_from_yaw_pitch
    from ..devices import resolve_device
    from ..io.images import to_uint8
    from ..networks.sampling import map_latents, seed_z

    seeds = parse_seeds(args.seeds)
    views = [(y, p) for p in parse_angles(args.pitch, "pitch") for y in parse_angles(args.yaw, "yaw")]
    device = resolve_device(args.device)
    G = load_generator(args.network, device=device)
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)

    # cameras aim at the head centre (the origin) so the head stays centred from every side
    labels = torch.cat([label_from_yaw_pitch(math.radians(y), math.radians(p), lookat=HEAD_LOOKAT)
                        for y, p in views]).to(device)
    rows = []
    for seed in tqdm(seeds, desc="generate", unit="seed", disable=args.quiet):
        torch.manual_seed(seed)  # renderer jitter, unless --deterministic
        ws, delta = map_latents(G, seed_z(seed, G.z_dim, device), args.truncation, args.truncation_cutoff)
        with torch.no_grad():
            out = G.synthesis(ws, apply_offset(labels, delta.expand(len(views), 3)), noise_mode="const",
                              deterministic=args.deterministic)
        img = to_uint8(out["image"])
        for (yaw, pitch), im in zip(views, img):
            write_image(outdir / f"seed{seed:04d}_yaw{yaw:g}_pitch{pitch:g}.png", im)
        rows.append(np.concatenate(list(img), axis=1))
        if args.depth:
            rows.append(np.concatenate(list(_depth_rows(out, img.shape[1:3])), axis=1))
    write_image(outdir / "grid.png", np.concatenate(rows, axis=0))
    print(f"wrote {len(seeds) * len(views)} images and grid.png ({len(seeds)} seeds x {len(views)} views) to {outdir}")
    return 0
