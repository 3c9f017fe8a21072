"""``psohead crop``: photos -> PanoHead-aligned crops, dataset.json, masks."""
from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("crop", help="align photos the PanoHead way (crop, camera label, mask)",
                              description="Files, globs or folders in; per face an aligned crop, "
                                          "dataset.json, dataset_back.json, masks/ and crop_report.json.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    p.add_argument("--outdir", required=True, help="output folder: new, empty or an earlier crop folder")
    p.add_argument("--overwrite", action="store_true",
                   help="write into --outdir even if it holds other files (they are kept)")
    p.add_argument("--size", type=int, choices=(563, 512), default=563,
                   help="563: official canvas (default); 512: resized like the official projector")
    p.add_argument("--all-faces", action="store_true", help="one crop per detected face (default: largest)")
    p.add_argument("--no-mask", action="store_true", help="skip the foreground matte")
    p.add_argument("--skip-small", action="store_true",
                   help="drop faces whose quad side is < 256 px, as the official tool does (default: warn)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..preprocess import crop_files

    summary = crop_files(args.inputs, args.outdir, size=args.size, all_faces=args.all_faces,
                         with_mask=not args.no_mask, skip_small=args.skip_small, overwrite=args.overwrite)
    for note in summary["warnings"]:
        print(f"warning: {note}", file=sys.stderr)
    for reason in summary["failed"].values():
        print(f"skipped: {reason}", file=sys.stderr)
    where = f"written to {args.outdir}" if summary["written"] else "written (nothing was saved)"
    print(f"psohead crop: {len(summary['written'])} face(s) {where}, {len(summary['failed'])} input(s) failed")
    return 0 if summary["written"] else 1
