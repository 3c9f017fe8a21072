"""``psohead reconstruct-batch INPUT... --out DIR [--devices cuda:0,cuda:1] [--procs N]`` (docs/reconstruct.md)."""
from __future__ import annotations

import argparse

from .reconstruct import add_shared_options, pipeline_kwargs


def register(subparsers) -> None:
    from ..inversion.back import STRATEGIES

    p = subparsers.add_parser(
        "reconstruct-batch", help="reconstruct many photos, one worker process per device",
        description="Reconstruct every photo (files, or the images directly inside folders) into "
                    "OUT/<name>/, one worker process per device entry, each loading the network once. "
                    "Each photo is done once; a rerun skips complete outputs and retries failures; "
                    "OUT/batch_summary.json lists the result of every photo.")
    p.add_argument("inputs", nargs="+", help="photos and/or folders of photos (aligned crops take their "
                                             "labels from a dataset.json beside them)")
    p.add_argument("--out", required=True, help="output folder; each photo goes to OUT/<file name stem>/")
    p.add_argument("--devices", default="auto",
                   help="comma-separated device per worker, e.g. cuda:0,cuda:1 or cpu,cpu "
                        "(auto: every visible GPU, else one CPU worker)")
    p.add_argument("--procs", type=int, default=1, help="worker processes per listed device")
    p.add_argument("--back", default="auto", choices=STRATEGIES, help="pseudo back label strategy")
    add_shared_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..inversion.batch import SUMMARY_NAME, reconstruct_batch

    result = reconstruct_batch(args.inputs, args.out, network=args.network, devices=args.devices,
                               procs_per_device=args.procs, back=args.back, seed=args.seed,
                               progress=not args.quiet, **pipeline_kwargs(args))
    counts = ", ".join(f"{v} {k}" for k, v in sorted(result.counts().items()))
    print(f"{counts} in {result.seconds:.1f} s on {len(result.devices)} worker(s): "
          f"{result.photos_per_minute:.2f} photos/minute; summary in {result.out / SUMMARY_NAME}")
    return 1 if result.counts().get("failed") else 0
