"""The mesh flags ``psohead mesh`` and ``psohead reconstruct`` (and ``reconstruct-batch``) share
(not a verb module: the underscore keeps it out of the verb list)."""
from __future__ import annotations

import argparse

from ..errors import InputError
from ..export.mesh_options import MeshOptions


def add_mesh_flags(p: argparse.ArgumentParser) -> None:
    """``--mesh-faces``, ``--texture-size``, ``--texture-from-photo``, ``--no-texture``; unset
    flags leave the options as they are (:func:`mesh_flags`)."""
    p.add_argument("--mesh-faces", type=int, default=None,
                   help=f"target face count of the decimated mesh (default {MeshOptions.faces}; 0 = keep all)")
    p.add_argument("--texture-size", type=int, default=None,
                   help="texture side in texels, a power of two (default: 8x the network's image size, at most "
                        "2048: 1024 for the bundled model, 2048 for 512² checkpoints)")
    p.add_argument("--texture-from-photo", action=argparse.BooleanOptionalAction, default=None,
                   help="where the input photo sees the face squarely, take the texture from the photo crop "
                        "(reconstruct's fast and quality presets do; psohead mesh only when asked)")
    p.add_argument("--no-texture", action="store_true", help="vertex colours only: no UV atlas or texture")


def mesh_flags(args: argparse.Namespace) -> dict:
    """The :class:`MeshOptions` fields the flags of :func:`add_mesh_flags` set."""
    if args.no_texture and args.texture_from_photo:
        raise InputError("--texture-from-photo needs the texture: it cannot go with --no-texture")
    values = {"faces": args.mesh_faces, "texture_size": args.texture_size,
              "texture": False if args.no_texture else None,
              "texture_from_photo": args.texture_from_photo}
    return {name: value for name, value in values.items() if value is not None}
