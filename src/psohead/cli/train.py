"""Verbs: ``train``, ``export-snapshot``, ``dataset pack|check``."""
from __future__ import annotations

import json
from pathlib import Path

# CLI flag → TrainOptions field, for flags whose value (when given) replaces the preset's.
_OPTION_FLAGS = {
    "data": "data", "seg_data": "seg_data", "out": "out", "kimg": "kimg", "kimg_per_run": "kimg_per_run",
    "max_minutes": "max_minutes", "batch": "batch", "batch_gpu": "batch_gpu", "glr": "glr", "dlr": "dlr",
    "precision": "precision", "seed": "seed", "workers": "workers", "device": "device",
    "tick_kimg": "tick_kimg", "snap_ticks": "snap_ticks", "image_ticks": "image_ticks",
    "snapshot_part_mb": "snapshot_part_mb", "min_yaw": "min_yaw", "max_yaw": "max_yaw",
    "back_repeat": "back_repeat", "ema_kimg": "ema_kimg", "r1_interval": "r1_interval",
}
_LOSS_FLAGS = {"gamma": "r1_gamma", "gamma_seg": "r1_gamma_seg", "gpc_prob": "gpc_reg_prob",
               "bcg_prob": "bcg_reg_prob", "trans_reg": "trans_reg"}


def _add_train_args(p) -> None:
    p.add_argument("--data", help="dataset folder or zip (images/ + dataset.json + masks/)")
    p.add_argument("--seg-data", help="separate mask folder/zip (official layout)")
    p.add_argument("--out", help="run folder (log.jsonl, sample grids, snapshots)")
    p.add_argument("--kimg", type=float, help="total training length in thousands of images")
    p.add_argument("--kimg-per-run", type=float, help="stop this invocation after this many kimg (snapshot)")
    p.add_argument("--max-minutes", type=float, help="stop this invocation after this wall time (snapshot)")
    p.add_argument("--batch", type=int, help="total batch over all processes")
    p.add_argument("--batch-gpu", type=int, help="images per forward pass (gradient accumulation below --batch)")
    p.add_argument("--glr", type=float)
    p.add_argument("--dlr", type=float)
    p.add_argument("--precision", choices=("fp32", "bf16"), help="bf16 autocast (CUDA only)")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, help="data loader processes")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--tick-kimg", type=float)
    p.add_argument("--snap-ticks", type=int)
    p.add_argument("--image-ticks", type=int)
    p.add_argument("--snapshot-part-mb", type=float, help="split snapshots into parts of at most N MiB")
    p.add_argument("--min-yaw", type=float)
    p.add_argument("--max-yaw", type=float)
    p.add_argument("--back-repeat", type=int)
    p.add_argument("--ema-kimg", type=float)
    p.add_argument("--r1-interval", type=int)
    p.add_argument("--gamma", type=float, help="R1 weight on image and raw image")
    p.add_argument("--gamma-seg", type=float, help="R1 weight on the mask")
    p.add_argument("--gpc-prob", type=float, help="final pose-conditioning swap probability")
    p.add_argument("--bcg-prob", type=float, help="background swap probability")
    p.add_argument("--trans-reg", type=float, help="camera-offset regulariser weight")
    p.add_argument("--mirror", dest="xflip", action="store_true", default=None, help="add x-flipped copies")
    p.add_argument("--no-mirror", dest="xflip", action="store_false")
    p.add_argument("--compact-snapshot", action="store_true", default=None,
                   help="store Adam moments as bfloat16")
    p.add_argument("--no-tf32", dest="tf32", action="store_false", default=None)
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)


def _explicit_changes(args) -> dict:
    """The option changes the command line asks for (``loss.<name>`` for loss settings)."""
    changes = {field: getattr(args, flag) for flag, field in _OPTION_FLAGS.items() if getattr(args, flag) is not None}
    changes.update({f"loss.{field}": getattr(args, flag) for flag, field in _LOSS_FLAGS.items()
                    if getattr(args, flag) is not None})
    for flag in ("xflip", "compact_snapshot", "tf32", "progress"):
        if getattr(args, flag) is not None:
            changes[flag] = getattr(args, flag)
    return changes


def _merge(opts, args):
    return opts.replace(**_explicit_changes(args))


def _resolve_resume(value: str) -> str:
    from ..errors import InputError
    from ..training.snapshot import find_latest, part_paths
    path = Path(value)
    if path.is_dir():
        latest = find_latest(path)
        if latest is None:
            raise InputError(f"--resume {value}: the folder holds no snapshot-latest.pt")
        return str(latest)
    if not path.is_file() and not part_paths(path):
        raise InputError(f"--resume {value}: no such snapshot")
    return str(path)


def _train(args) -> int:
    from ..errors import InputError
    from ..training.loop import train
    from ..training.options import RUN_CONTROL, TrainOptions
    from ..training.presets import preset
    from ..training.snapshot import load_snapshot

    G_cfg = D_cfg = None
    if args.resume:
        resume = _resolve_resume(args.resume)
        opts = TrainOptions.from_dict(load_snapshot(resume)["options"])
    else:
        resume = None
        G_cfg, D_cfg, opts = preset(args.preset)
    changes = _explicit_changes(args)
    opts = opts.replace(**changes)
    if not opts.data:
        raise InputError("--data is required")
    if not opts.out:
        raise InputError("--out is required")
    # On resume, options given on the command line (other than run control) deliberately change the run.
    overrides = {k: v for k, v in changes.items() if k not in RUN_CONTROL} if resume else {}
    result = train(opts, G_cfg, D_cfg, resume=resume, resume_overrides=overrides)
    if result is not None:
        print(json.dumps(result))
    return 0


def _export(args) -> int:
    from ..training.loop import export_network
    path = export_network(_resolve_resume(args.snapshot), args.out, which=args.which, half=not args.fp32)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


def _dataset_check(args) -> int:
    from ..io.dataset import check_dataset
    summary = check_dataset(args.path, args.seg_data, progress=True)
    print(json.dumps(summary, indent=1))
    return 0


def _dataset_pack(args) -> int:
    from ..io.dataset_writer import pack_dataset
    summary = pack_dataset(args.src, args.dst, args.seg_data, resolution=args.resolution)
    print(json.dumps(summary, indent=1))
    return 0


def register(subparsers) -> None:
    from ..training.presets import PRESET_NAMES

    p = subparsers.add_parser("train", help="train the 3D GAN (single process, or under torchrun)",
                              description="Train the PanoHead GAN. Runs under `torchrun --nproc_per_node N` "
                                          "for several GPUs (or CPU processes with gloo).")
    p.add_argument("--preset", default="default", choices=PRESET_NAMES, help="network + options preset")
    p.add_argument("--resume", help="continue a snapshot (file, split-file stem or run folder)")
    _add_train_args(p)
    p.set_defaults(func=_train)

    p = subparsers.add_parser("export-snapshot", help="write a training snapshot's G_ema (or G, D) as .safetensors")
    p.add_argument("snapshot", help="snapshot file, split-file stem or run folder")
    p.add_argument("out", help="output .safetensors")
    p.add_argument("--which", default="G_ema", choices=("G_ema", "G", "D"),
                   help="network to write (default G_ema; D to continue training or score FK-Enhance renders)")
    p.add_argument("--fp32", action="store_true", help="store float32 instead of float16")
    p.set_defaults(func=_export)

    p = subparsers.add_parser("dataset", help="check or pack a training dataset")
    sub = p.add_subparsers(dest="dataset_verb", metavar="<pack|check>", required=True)
    q = sub.add_parser("check", help="list missing files, bad labels, size mismatches")
    q.add_argument("path")
    q.add_argument("--seg-data", help="separate mask folder/zip (official layout)")
    q.set_defaults(func=_dataset_check)
    q = sub.add_parser("pack", help="write a dataset (any accepted layout) as a psohead folder or zip")
    q.add_argument("src")
    q.add_argument("dst", help="output folder or .zip")
    q.add_argument("--seg-data", help="separate mask folder/zip (official layout)")
    q.add_argument("--resolution", type=int, help="resize to this square power of two")
    q.set_defaults(func=_dataset_pack)
