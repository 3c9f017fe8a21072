"""``psohead synth dataset|preview|orbit``: procedural heads (see docs/synth.md)."""
from __future__ import annotations

import json


def _device(name: str) -> str:
    from ..devices import resolve_device

    return str(resolve_device(name))


def _dataset(args) -> int:
    from ..synth.dataset import generate_dataset

    summary = generate_dataset(args.out, n=args.n, res=args.res, seed=args.seed, yaw_dist=args.yaw_dist,
                               device=_device(args.device), batch=args.batch, workers=args.workers,
                               progress=not args.quiet)
    print(json.dumps(summary))
    return 0


def _preview(args) -> int:
    from ..synth.preview import contact_sheet

    path = contact_sheet(args.out, seeds=args.ids, views=args.views, res=args.res, device=_device(args.device))
    print(path)
    return 0


def _orbit(args) -> int:
    from ..synth.orbit import write_orbits

    summary = write_orbits(args.out, args.ids, views=args.views, pitches=args.pitches, res=args.res,
                           device=_device(args.device), mesh_grid=args.mesh_grid)
    print(json.dumps(summary))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("synth", help="procedural 3D heads: datasets, orbits, previews")
    sub = p.add_subparsers(dest="synth_verb", metavar="<synth-verb>", required=True)
    d = sub.add_parser("dataset", help="render a labelled training set (images, masks, dataset.json)")
    d.add_argument("--n", type=int, required=True, help="number of images (one random head each)")
    d.add_argument("--res", type=int, default=128, help="image size, a power of two (default 128)")
    d.add_argument("--out", required=True, help="output folder (rerun the same command to resume)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--yaw-dist", default="panohead", help="panohead (default, 360 deg), uniform or front")
    d.add_argument("--workers", type=int, default=4, help="PNG writer threads")
    d.add_argument("--device", default="cpu", help="cpu or cuda")
    d.add_argument("--batch", type=int, default=None, help="images rendered per batch (default by device)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_dataset)
    v = sub.add_parser("preview", help="contact sheet: identities (rows) x yaws (columns)")
    v.add_argument("--out", required=True, help="PNG file")
    v.add_argument("--ids", type=int, nargs="+", default=[0, 1, 2, 3, 4, 8, 15, 52], help="head seeds")
    v.add_argument("--views", type=int, default=6, help="yaws over the full turn, frontal first")
    v.add_argument("--res", type=int, default=128)
    v.add_argument("--device", default="cpu")
    v.set_defaults(func=_preview)
    o = sub.add_parser("orbit", help="ground-truth orbits (views, masks, labels) and coloured PLY meshes")
    o.add_argument("--ids", type=int, nargs="+", required=True, help="head seeds")
    o.add_argument("--views", type=int, default=24, help="evenly spaced yaws per pitch")
    o.add_argument("--pitches", type=float, nargs="+", default=[0.0, 0.3, -0.2], help="radians")
    o.add_argument("--res", type=int, default=256)
    o.add_argument("--mesh-grid", type=int, default=160, help="marching-cubes grid size")
    o.add_argument("--out", required=True)
    o.add_argument("--device", default="cpu")
    o.set_defaults(func=_orbit)
