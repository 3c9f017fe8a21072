"""``psohead synth dataset|preview|orbit``: procedural heads (see docs/synth.md)."""
from __future__ import annotations

import json


def _device(name: str) -> str:
    import torch

    from ..errors import InputError

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    if not (name == "cpu" or name.startswith("cuda")):
        raise InputError(f"--device {name!r}: use cpu or cuda[:N]")
    return name


def _dataset(args) -> int:
    from ..synth.dataset import generate_dataset

    summary = generate_dataset(args.out, n=args.n, res=args.res, seed=args.seed, yaw_dist=args.yaw_dist,
                               device=_device(args.device), batch=args.batch, workers=args.workers,
                               progress=not args.quiet)
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
