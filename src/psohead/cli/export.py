"""``psohead render | video | mesh``: outputs of any (tuned) network and latent (docs/export.md)."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..atomic import check_output_file
from ..errors import InputError
from ..export.mesh_options import MeshOptions
from ._mesh_flags import add_mesh_flags, mesh_flags

IMAGE_KINDS = ("image", "image_raw", "image_depth", "image_mask")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--network", default="default", help="'default', a psohead .safetensors or an official .pkl")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--latent", help="latent.safetensors from reconstruct (or an official projected_w.npz)")
    src.add_argument("--seed", type=int, help="a random head of the network instead of a latent "
                                            "(the same head as `psohead generate --seeds N`)")
    p.add_argument("--truncation", type=float, default=0.7, help="truncation psi for --seed (default 0.7)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _camera(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pitch", type=float, default=0.0, help="camera elevation in degrees (default 0)")
    p.add_argument("--kind", default="image", choices=IMAGE_KINDS, help="which generator output to show")
    p.add_argument("--render-resolution", type=int, default=None,
                   help="neural rendering resolution (default: the network's own)")
    p.add_argument("--batch", type=int, default=4, help="views rendered per generator call")


def register(subparsers) -> None:
    p = subparsers.add_parser("render", help="render a latent at chosen yaws into an image grid",
                              description="Render a network + latent at several yaws (degrees; 0 = face, "
                                          "180 = back of the head) and write one image or a grid.")
    _common(p)
    _camera(p)
    p.add_argument("--yaws", default="0,45,90,135,180,225,270,315", help="comma-separated yaws in degrees")
    p.add_argument("--cols", type=int, default=4, help="grid columns")
    p.add_argument("--out", required=True, help="output image (.png, .jpg)")
    p.set_defaults(func=run_render)

    p = subparsers.add_parser("video", help="render a 360-degree turntable .mp4",
                              description="Orbit a network + latent once round and write an H.264 .mp4.")
    _common(p)
    _camera(p)
    p.add_argument("--frames", type=int, default=120, help="frames per turn (default 120)")
    p.add_argument("--fps", type=float, default=30, help="frames per second (default 30)")
    p.add_argument("--out", required=True, help="output video (.mp4)")
    p.set_defaults(func=run_video)

    p = subparsers.add_parser("mesh", help="extract a UV-textured mesh (and density volume) of a latent",
                              description="Sample the density on a grid, run marching cubes, clean, smooth and "
                                          "decimate the surface, unwrap it and bake a texture from the network's "
                                          "renders; writes .glb, .obj (+ .mtl and _albedo.png) or .ply "
                                          "(several --out allowed). See docs/export.md.")
    _common(p)
    p.add_argument("--out", required=True, action="append", help="mesh file .glb | .obj | .ply (repeatable)")
    p.add_argument("--resolution", type=int, default=256, help="grid points per axis (default 256)")
    p.add_argument("--level", default="auto", help="iso-level on the activated density, or 'auto' (default)")
    p.add_argument("--crop", default="render", choices=("render", "official", "none"),
                   help="zero the density where the renderer never looks (render), the official borders, or not")
    p.add_argument("--keep-all", action="store_true",
                   help="keep every connected piece and inner cavity (default: the head's outer surface)")
    p.add_argument("--smoothing", type=int, default=MeshOptions.smoothing,
                   help=f"Taubin smoothing passes (default {MeshOptions.smoothing}; 0 = none)")
    add_mesh_flags(p)
    p.add_argument("--photo", default=None, metavar="DIR|CROP",
                   help="for --texture-from-photo: a reconstruct output folder (crop.png + label.json) or the "
                        "crop image itself (label from label.json beside it or from --latent); default: the "
                        "folder of --latent")
    p.add_argument("--bake-views", type=int, default=MeshOptions.bake_views,
                   help=f"bake views on the level ring (default {MeshOptions.bake_views}; the rings above and "
                        "below get a third each)")
    p.add_argument("--scale", type=float, default=MeshOptions.scale,
                   help=f"metres per world unit in the files (default {MeshOptions.scale:g}, a real head's size; "
                        "1 keeps the generator's world units)")
    p.add_argument("--no-colors", action="store_true", help="geometry only: no texture, no vertex colours")
    p.add_argument("--mrc", default=None, help="also write the raw density grid as an MRC volume")
    p.set_defaults(func=run_mesh)


def _load(args):
    """(G, ws [1,num_ws,w_dim], delta [1,3] or None) on the chosen device."""
    from ..api import load_generator
    from ..export.latent import load_latent
    from ..devices import resolve_device
    from ..networks.sampling import check_seed

    if args.latent is None:
        check_seed(args.seed, "--seed")  # before the network loads
    device = resolve_device(args.device)
    G = load_generator(args.network, device=device)
    if args.latent is not None:
        lat = load_latent(args.latent)
        want = (G.num_ws, G.w_dim)
        if tuple(lat.ws.shape[1:]) != want:
            raise InputError(f"{args.latent}: latent has shape {tuple(lat.ws.shape[1:])} but the network "
                             f"needs [{want[0]}, {want[1]}]")
        delta = None if lat.delta is None else lat.delta.to(device)
        return G, lat.ws.to(device), delta
    from ..networks.sampling import map_latents, seed_z

    ws, delta = map_latents(G, seed_z(args.seed, G.z_dim, device), truncation_psi=args.truncation)
    return G, ws, delta


def _yaws(text: str) -> list[float]:
    try:
        yaws = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--yaws must be comma-separated numbers in degrees, got {text!r}") from None
    if not yaws:
        raise InputError("--yaws is empty")
    if not all(math.isfinite(y) for y in yaws):
        raise InputError(f"--yaws must be finite numbers in degrees, got {text!r}")
    return yaws


def _at_least(args, minimum: int, *names: str, maximum: int | None = None) -> None:
    """Integer options that must be >= ``minimum`` (and <= ``maximum``; those left unset are skipped)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise InputError(f"--{name.replace('_', '-')} {value}: must be at least {minimum}")
        if value is not None and maximum is not None and value > maximum:
            raise InputError(f"--{name.replace('_', '-')} {value}: must be at most {maximum}")


def _check_camera(args) -> None:
    if abs(args.pitch) >= 90:
        raise InputError(f"--pitch {args.pitch:g}: must lie strictly between -90 and 90 degrees")
    _at_least(args, 1, "batch", "render_resolution")


def run_render(args: argparse.Namespace) -> int:
    from ..atomic import write_image
    from ..export.views import render_views, save_grid
    from ..io.images import IMAGE_SUFFIXES

    yaws = _yaws(args.yaws)
    _check_camera(args)
    _at_least(args, 1, "cols")
    check_output_file(args.out, IMAGE_SUFFIXES, "output image")
    G, ws, delta = _load(args)
    views = render_views(G, ws, [math.radians(y) for y in yaws], pitch=math.radians(args.pitch), delta=delta,
                         key=args.kind, batch_size=args.batch, neural_rendering_resolution=args.render_resolution)
    if len(views) == 1:
        out = write_image(args.out, views[0])
    else:
        out = save_grid(views, args.out, cols=args.cols, captions=[f"yaw {y:g}" for y in yaws])
    print(f"wrote {out} ({len(views)} view{'s' if len(views) > 1 else ''})")
    return 0


def run_video(args: argparse.Namespace) -> int:
    from ..export.video import MAX_TURNTABLE_FRAMES, write_turntable

    _check_camera(args)
    _at_least(args, 1, "frames", maximum=MAX_TURNTABLE_FRAMES)
    if args.fps <= 0:
        raise InputError(f"--fps {args.fps:g}: must be positive")
    check_output_file(args.out, (".mp4",), "output video")
    G, ws, delta = _load(args)
    out = write_turntable(G, ws, args.out, frames=args.frames, fps=args.fps, pitch=math.radians(args.pitch),
                          delta=delta, batch_size=args.batch, key=args.kind,
                          neural_rendering_resolution=args.render_resolution, progress=not args.quiet)
    print(f"wrote {out} ({args.frames} frames at {args.fps:g} fps)")
    return 0


def run_mesh(args: argparse.Namespace) -> int:
    from ..export.mesh import MESH_FORMATS, build_head_mesh, read_photo, sample_density

    for out in args.out:
        check_output_file(out, tuple(MESH_FORMATS), "output mesh")
    if args.mrc:
        check_output_file(args.mrc, None, "output volume")
    if args.level == "auto":
        level = "auto"
    else:
        try:
            level = float(args.level)
        except ValueError:
            raise InputError(f"--level must be 'auto' or a number, got {args.level!r}") from None
    if args.no_colors and (args.texture_from_photo or args.texture_size is not None):
        raise InputError("--no-colors writes geometry only: it cannot go with --texture-from-photo or --texture-size")
    if args.photo is not None and not args.texture_from_photo:
        raise InputError("--photo is only used with --texture-from-photo")
    options = MeshOptions(resolution=args.resolution, level=level, crop=args.crop, keep_all=args.keep_all,
                          smoothing=args.smoothing, bake_views=args.bake_views, scale=args.scale,
                          colors=not args.no_colors, **mesh_flags(args))
    photo = None
    if args.texture_from_photo:
        if args.photo is None and args.latent is None:
            raise InputError("--texture-from-photo needs --photo (or a --latent from reconstruct, beside its crop.png)")
        photo = read_photo(args.photo if args.photo is not None else Path(args.latent).parent, latent=args.latent)
    G, ws, delta = _load(args)
    grid = sample_density(G, ws, args.resolution, progress=not args.quiet)
    if args.mrc:
        from ..export.volume import write_mrc

        write_mrc(grid.sigma, args.mrc, voxel_size=grid.voxel_size, origin=(grid.origin,) * 3)
        print(f"wrote {args.mrc} (raw density, {args.resolution}^3)")
    head = build_head_mesh(G, ws, options, delta=delta, photo=photo, grid=grid, progress=not args.quiet)
    info = head.info
    texture = f", {info['texture_size']}² texture" if info["texture_size"] else ""
    for out in args.out:
        for path in head.write(out):
            print(f"wrote {path}")
    print(f"mesh: {info['vertices']} vertices, {info['faces']} faces, iso-level {info['iso_level']:.3g}{texture}, "
          f"{head.scale:g} m per world unit")
    return 0
