"""Verbs: ``fk-enhance`` (back-view dataset from a generator) and ``finetune`` (FAGE)."""
from __future__ import annotations

import contextlib
import json
import sys
import warnings

from .train import _add_train_args, _merge, _resolve_resume


@contextlib.contextmanager
def _warnings_as_lines(verb: str):
    """Library warnings as one ``psohead VERB: warning: ...`` line each."""
    old = warnings.showwarning
    warnings.showwarning = lambda message, *_a, **_k: print(f"psohead {verb}: warning: {message}", file=sys.stderr)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            yield
    finally:
        warnings.showwarning = old


def _fk_enhance(args) -> int:
    from ..training.fk_enhance import build_fk_enhance, config_from_dict

    cfg = config_from_dict({
        "n": args.n, "seed": args.seed, "truncation": args.truncation, "yaw_jitter_deg": args.yaw_jitter,
        "pitch_jitter_deg": args.pitch_jitter, "batch": args.batch, "face_check": args.face_check,
        "real_backs": args.real_backs, "real_yaw_deg": args.real_yaw, "real_pitch_deg": args.real_pitch,
        "keep_top": args.d_keep, "min_area": args.min_area, "max_area": args.max_area,
        "min_main_blob": args.min_main_blob, "max_top_border": args.max_top_border,
        "max_side_border": args.max_side_border, "mirror_max": args.mirror_max})
    with _warnings_as_lines("fk-enhance"):
        report = build_fk_enhance(args.network, args.out, cfg, discriminator=args.discriminator, device=args.device,
                                  progress=not args.quiet, keep_work=args.keep_work)
    print(json.dumps({"out": args.out, "counts": report["counts"],
                      "rejected": {k: v for k, v in report["rejected"].items() if v}}))
    return 0


def _finetune(args) -> int:
    from ..errors import InputError
    from ..training.fage import finetune
    from ..training.options import TrainOptions
    from ..training.presets import preset
    from ..training.snapshot import load_snapshot

    if args.resume:
        resume = _resolve_resume(args.resume)
        opts = _merge(TrainOptions.from_dict(load_snapshot(resume)["options"]), args)
    else:
        resume = None
        if args.kimg is None:
            raise InputError("--kimg is required (length of the fine-tune in thousands of images)")
        opts = _merge(preset(args.preset)[2], args)
    with _warnings_as_lines("finetune"):
        result = finetune(opts, network=args.network, fk=args.fk, fk_ratio=args.fk_ratio, preset_name=args.preset,
                          discriminator=args.discriminator, resume=resume)
    print(json.dumps(result))
    return 0


def register(subparsers) -> None:
    from ..training.fk_filters import FACE_CHECKS, FKFilters
    from ..training.presets import PRESET_NAMES

    f = FKFilters()
    p = subparsers.add_parser("fk-enhance", help="back-of-head training views rendered by a generator, filtered",
                              description="Render back views (yaw 180 deg +- jitter) of random latents, drop "
                                          "implausible masks, faces on the back and low discriminator scores, "
                                          "and write a psohead dataset + fk_report.json (docs/training.md).")
    p.add_argument("--network", required=True, help="'default' (bundled G + D), psohead .safetensors, official .pkl, or training snapshot / run")
    p.add_argument("--out", required=True, help="output folder or .zip (rerun the same command to resume)")
    p.add_argument("--n", type=int, default=1000, help="latents rendered (default 1000); the dataset keeps those that pass")
    p.add_argument("--discriminator", help="file holding the D to score renders (default: the network's own, if any)")
    p.add_argument("--real-backs", help="folder of real back-of-head photos to add (masks beside them, else matted)")
    p.add_argument("--real-yaw", type=float, default=180.0, help="camera yaw of the real photos in degrees (default 180)")
    p.add_argument("--real-pitch", type=float, default=0.0, help="camera pitch of the real photos in degrees")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--truncation", type=float, default=0.7, help="truncation psi (default 0.7)")
    p.add_argument("--yaw-jitter", type=float, default=20.0, help="yaw = 180 +- U(jitter) degrees (default 20)")
    p.add_argument("--pitch-jitter", type=float, default=10.0, help="pitch = U(+-jitter) degrees (default 10)")
    p.add_argument("--batch", type=int, default=4, help="candidates per forward pass (default 4)")
    p.add_argument("--face-check", default="both", choices=FACE_CHECKS, help="face-leak test (default both)")
    p.add_argument("--d-keep", type=float, help=f"share kept by D score (default {f.keep_top})")
    p.add_argument("--min-area", type=float, help=f"min foreground share (default {f.min_area})")
    p.add_argument("--max-area", type=float, help=f"max foreground share (default {f.max_area})")
    p.add_argument("--min-main-blob", type=float, help=f"min share of the largest blob (default {f.min_main_blob})")
    p.add_argument("--max-top-border", type=float, help=f"max foreground share of the top row (default {f.max_top_border})")
    p.add_argument("--max-side-border", type=float,
                   help=f"max foreground share of the left/right column (default {f.max_side_border})")
    p.add_argument("--mirror-max", type=float, help=f"max front/back correlation (default {f.mirror_max})")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--keep-work", action="store_true", help="keep the render cache (.OUT.fk-work) after writing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_fk_enhance)

    p = subparsers.add_parser("finetune", help="FAGE: fine-tune G and D on the data mixed with an FK-Enhance set",
                              description="Continue training a network on --data with FK-Enhance images mixed into "
                                          "the real batches; writes RUN/network.safetensors when complete.")
    p.add_argument("--network", help="generator to start from: 'default' (bundled G + D), .safetensors, official .pkl, training snapshot / run")
    p.add_argument("--fk", help="FK-Enhance dataset (psohead fk-enhance)")
    p.add_argument("--fk-ratio", type=float, help="share of real-batch entries taken from --fk (default 0.3)")
    p.add_argument("--discriminator", help="file holding D (default: the network's own; else a fresh one)")
    p.add_argument("--preset", default="default", choices=PRESET_NAMES,
                   help="training options (batch, lr, ...) and the config of a fresh D")
    p.add_argument("--resume", help="continue a finetune run (run folder, snapshot file or split-file stem)")
    _add_train_args(p)
    p.set_defaults(func=_finetune)
