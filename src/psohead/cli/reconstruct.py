"""``psohead reconstruct INPUT --out DIR``: one photo to a 360-degree head (docs/reconstruct.md)."""
from __future__ import annotations

import argparse

from ._mesh_flags import add_mesh_flags, mesh_flags


def add_shared_options(p: argparse.ArgumentParser) -> None:
    """Options of ``reconstruct`` that ``reconstruct-batch`` shares (network, preset, losses, meshes)."""
    from ..inversion.losses import PERCEPTUAL_BACKENDS
    from ..inversion.precision import PRECISIONS
    from ..inversion.presets import INITS, PRESET_NAMES

    p.add_argument("--network", default="default", help="'default' (bundled model) or a network file")
    p.add_argument("--preset", default="auto", choices=PRESET_NAMES,
                   help="settings of the whole run; auto = fast; "
                        "quality = a better back for a longer stage 1; official = the official 500 + 500 steps; "
                        "preview = the encoder's latent refined by a few steps, seconds (docs/reconstruct.md)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", dest="settings",
                   help="change one preset field, e.g. --set stage1.steps=60 --set outputs.video_frames=120 "
                        "(repeatable; docs/reconstruct.md lists them)")
    p.add_argument("--stage1-steps", type=int, default=None, help="= --set stage1.steps=N")
    p.add_argument("--stage2-steps", type=int, default=None, help="= --set stage2.steps=N")
    p.add_argument("--precision", default=None, choices=PRECISIONS, help="= --set runtime.precision=P (CUDA only)")
    p.add_argument("--init", default=None, choices=INITS,
                   help="= --set stage1.init=I: stage 1 starts from the mean latent or the encoder's guess")
    p.add_argument("--encoder", default=None,
                   help="latent encoder of the network (psohead train-encoder; default: the bundled one for the "
                        "bundled model) for --init encoder and --preset preview (docs/encoder.md)")
    p.add_argument("--fk-bank", default=None, help="FK-Enhance dataset folder/zip for --back fk")
    p.add_argument("--perceptual", default="auto", choices=PERCEPTUAL_BACKENDS,
                   help="perceptual loss; auto = lpips with --vgg16, else msssim")
    p.add_argument("--vgg16", default=None, help="torchvision VGG16 ImageNet weights (.pth or .safetensors)")
    p.add_argument("--lpips-linear", default=None, help="LPIPS v0.1 vgg.pth linear layers (found in an "
                                                         "installed lpips/torchmetrics package if omitted)")
    p.add_argument("--seed", type=int, default=666, help="seed of the exploration noise and ray jitter")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_mesh_flags(p)


# options that stand for one preset field (argparse dest -> field)
SHORTCUTS = {"stage1_steps": "stage1.steps", "stage2_steps": "stage2.steps", "precision": "runtime.precision",
             "init": "stage1.init"}


def preset_overrides(args: argparse.Namespace) -> dict:
    """Every preset change asked for on the command line, as {"section.field": value}; a
    shortcut option that was given (--stage1-steps 60) wins over --set of the same field, one
    that was not leaves --set alone."""
    from ..inversion.presets import mesh_overrides, parse_assignments

    given = {key: getattr(args, dest) for dest, key in SHORTCUTS.items() if getattr(args, dest, None) is not None}
    mesh = mesh_overrides(mesh_flags(args)) if hasattr(args, "mesh_faces") else {}  # `psohead app` has no mesh flags
    return {**parse_assignments(args.settings), **given, **mesh}


def pipeline_kwargs(args: argparse.Namespace) -> dict:
    """``Reconstructor`` keyword arguments from the shared options."""
    return dict(preset=args.preset, overrides=preset_overrides(args), perceptual=args.perceptual, vgg16=args.vgg16,
                lpips_linear=args.lpips_linear, fk_bank=args.fk_bank, encoder=args.encoder)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "reconstruct", help="reconstruct a 360-degree head from one photo",
        description="Invert a photo (raw, or an aligned crop with --label) into the generator: stage 1 "
                    "latent projection, pseudo back label, stage 2 pivotal tuning; writes views, video, "
                    "meshes, latent, tuned generator and an HTML report into --out.")
    p.add_argument("input", help="photo, or aligned crop (label from --label or a dataset.json beside it)")
    p.add_argument("--out", required=True, help="output folder: new, empty or an earlier reconstruction, which is "
                                              "replaced when the run completes")
    p.add_argument("--overwrite", action="store_true",
                   help="write into --out even if it holds other files (they are kept; files of psohead's names "
                        "are replaced)")
    p.add_argument("--back", default="auto",
                   help="pseudo back label: auto (= prior) | prior | fk | none | PATH of a photo of the back of the head")
    p.add_argument("--extra-view", action="append", default=[], metavar="PATH[:YAW]",
                   help="another photo of the same head (yaw in degrees, else estimated); repeatable")
    p.add_argument("--label", default=None, help="JSON file with the 25-number camera label of an aligned crop")
    p.add_argument("--mask", default=None, help="mask image (255 = head) of an aligned crop")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    add_shared_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..atomic import check_output_dir
    from ..inversion.outputs import OUTPUT_VERB
    from ..inversion.pipeline import Reconstructor

    check_output_dir(args.out, OUTPUT_VERB, overwrite=args.overwrite, replace=True)  # before the network loads
    pipeline = Reconstructor(args.network, device=args.device, **pipeline_kwargs(args))
    rec = pipeline(args.input, args.out, label=args.label, mask=args.mask, back=args.back,
                   extra_views=args.extra_view, seed=args.seed, progress=not args.quiet, overwrite=args.overwrite)
    t = rec.timings
    print(f"reconstruction written to {rec.out_dir} (preset {rec.preset.name}, back {rec.back['used']}, "
          f"perceptual {rec.perceptual}; stage 1 {t['stage1']:.1f} s, stage 2 {t['stage2']:.1f} s); "
          f"open {rec.out_dir / 'report.html'}")
    return 0
