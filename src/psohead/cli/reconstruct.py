"""``psohead reconstruct INPUT --out DIR``: one photo to a 360-degree head (docs/reconstruct.md)."""
from __future__ import annotations

import argparse


def add_shared_options(p: argparse.ArgumentParser) -> None:
    """Options of ``reconstruct`` that ``reconstruct-batch`` shares (network, preset, losses, outputs)."""
    from ..inversion.losses import PERCEPTUAL_BACKENDS
    from ..inversion.precision import PRECISIONS
    from ..inversion.presets import PRESET_NAMES

    p.add_argument("--network", default="default", help="'default' (bundled model) or a network file")
    p.add_argument("--preset", default="auto", choices=PRESET_NAMES,
                   help="step counts and output sizes; auto = fast; quality = fast with a 4-latent back prior "
                        "(better back, slower stage 1); see docs/reconstruct.md")
    p.add_argument("--fk-bank", default=None, help="FK-Enhance dataset folder/zip for --back fk")
    p.add_argument("--perceptual", default="auto", choices=PERCEPTUAL_BACKENDS,
                   help="perceptual loss; auto = lpips with --vgg16, else msssim")
    p.add_argument("--vgg16", default=None, help="torchvision VGG16 ImageNet weights (.pth or .safetensors)")
    p.add_argument("--lpips-linear", default=None, help="LPIPS v0.1 vgg.pth linear layers (found in an "
                                                         "installed lpips/torchmetrics package if omitted)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--stage1-steps", type=int, default=None, help="override the preset's stage-1 steps")
    p.add_argument("--stage2-steps", type=int, default=None, help="override the preset's stage-2 steps")
    p.add_argument("--video-frames", type=int, default=None, help="override the preset's turntable frames")
    p.add_argument("--mesh-resolution", type=int, default=None, help="override the preset's mesh grid size")
    p.add_argument("--seed", type=int, default=666)
    p.add_argument("--no-cuda-graphs", action="store_true",
                   help="run every optimisation step eagerly on CUDA (default: replay them as CUDA graphs)")
    p.add_argument("--density", action="store_true", help="also write density.mrc")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def preset_overrides(args: argparse.Namespace) -> dict:
    """Preset fields set on the command line (None = the preset's own)."""
    return {"video_frames": args.video_frames, "mesh_resolution": args.mesh_resolution,
            "cuda_graphs": False if args.no_cuda_graphs else None}


def shared_kwargs(args: argparse.Namespace) -> dict:
    """reconstruct() keyword arguments from the shared options (the preset is handled by the caller)."""
    return dict(network=args.network, back=args.back, fk_bank=args.fk_bank, perceptual=args.perceptual,
                vgg16=args.vgg16, lpips_linear=args.lpips_linear, seed=args.seed,
                stage1_steps=args.stage1_steps, stage2_steps=args.stage2_steps, precision=args.precision,
                density=args.density)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "reconstruct", help="reconstruct a 360-degree head from one photo",
        description="Invert a photo (raw, or an aligned crop with --label) into the generator: stage 1 "
                    "latent projection, pseudo back label, stage 2 pivotal tuning; writes views, video, "
                    "meshes, latent, tuned generator and an HTML report into --out.")
    p.add_argument("input", help="photo, or aligned crop (label from --label or a dataset.json beside it)")
    p.add_argument("--out", required=True, help="output folder (replaced atomically when the run completes)")
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
    from ..inversion.presets import get_preset
    from ..inversion.reconstruct import reconstruct

    preset = get_preset(args.preset, **preset_overrides(args))
    rec = reconstruct(args.input, args.out, label=args.label, mask=args.mask, preset=preset,
                      extra_views=args.extra_view, device=args.device, progress=not args.quiet,
                      **shared_kwargs(args))
    t = rec.timings
    print(f"reconstruction written to {rec.out_dir} (preset {rec.preset.name}, back {rec.back['used']}, "
          f"perceptual {rec.perceptual}; stage 1 {t['stage1']:.1f} s, stage 2 {t['stage2']:.1f} s); "
          f"open {rec.out_dir / 'report.html'}")
    return 0
