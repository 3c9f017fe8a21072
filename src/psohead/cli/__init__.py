"""``psohead <verb>``: thin argument parsing; each verb group lives in its own module here.

Every module in this package exposes ``register(subparsers)`` which adds its verbs and sets
``func`` on their parsers; the functions call the library and hold no logic of their own.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ..errors import PsoheadError


def verb_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="psohead", description="One photo to a 360-degree 3D head.")
    parser.add_argument("--version", action="version", version=f"psohead {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>")
    for name in verb_modules():
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PsoheadError as err:
        print(f"psohead {args.verb}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"psohead {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
