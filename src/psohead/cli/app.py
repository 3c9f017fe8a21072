"""``psohead app``: the local web page (docs/app.md); parses the options and starts the server."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from ..app.config import AppConfig

    d = AppConfig()
    p = subparsers.add_parser(
        "app", help="start the local web page (drop a photo, turn and download the 3D head)",
        description="Serve a web page on this machine where a photo becomes a 3D head: live progress, "
                    "an orbit viewer, the turntable and every output for download. Needs the app extra.")
    p.add_argument("--network", default=d.network, help="'default' (bundled model) or a network file, loaded once")
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--host", default=d.host, help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--preset", default=d.preset, choices=("fast", "quality", "official", "preview"),
                   help="the preset the page starts with")
    p.add_argument("--encoder", default=None, help="the network's latent encoder file (psohead train-encoder); "
                                                   "the bundled model has one")
    p.add_argument("--no-first-look", dest="first_look", action="store_false",
                   help="do not show the encoder's preview of each photo while its reconstruction runs")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", dest="settings",
                   help="change a preset field for every job, as on psohead reconstruct (repeatable)")
    p.add_argument("--stage1-steps", type=int, default=None, help="= --set stage1.steps=N")
    p.add_argument("--stage2-steps", type=int, default=None, help="= --set stage2.steps=N")
    p.add_argument("--queue", type=int, default=d.queue, help="jobs queued or running at once; more are told to retry")
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="jobs running at once on the device")
    p.add_argument("--ttl", type=float, default=d.ttl, help="seconds a job's results are kept")
    p.add_argument("--work-dir", default=None, help="folder for the job folders (default: a fresh temp folder)")
    p.add_argument("--max-upload-mb", type=float, default=d.max_upload_mb)
    p.add_argument("--max-megapixels", type=float, default=d.max_megapixels)
    p.add_argument("--max-disk-mb", type=float, default=d.max_disk_mb, help="disk budget of the work folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..app import AppConfig, serve
    from .reconstruct import preset_overrides

    serve(AppConfig(network=args.network, device=args.device, host=args.host, port=args.port, preset=args.preset,
                    overrides=preset_overrides(args), encoder=args.encoder, first_look=args.first_look,
                    queue=args.queue, concurrency=args.concurrency, ttl=args.ttl,
                    work_dir=Path(args.work_dir) if args.work_dir else None, max_upload_mb=args.max_upload_mb,
                    max_megapixels=args.max_megapixels, max_disk_mb=args.max_disk_mb))
    return 0
