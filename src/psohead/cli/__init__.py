"""``psohead <verb>``: thin argument parsing; each verb group lives in its own module here.

Every module in this package exposes ``register(subparsers)`` which adds its verbs and sets
``func`` on their parsers; the functions call the library and hold no logic of their own.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import sys
import warnings

from ..errors import PsoheadError


def verb_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="psohead", description="One photo to a 360-degree 3D head.")
    parser.add_argument("--version", action="version", version=f"psohead {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="show warnings in full and the log lines of the libraries psohead calls")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>")
    for name in verb_modules():
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


@contextlib.contextmanager
def _warnings_as_lines(verbose: bool):
    """Warnings print as one ``warning: ...`` line (with --verbose: Python's full form)."""
    with warnings.catch_warnings():
        if not verbose:
            warnings.showwarning = lambda message, *_a, **_k: print(f"warning: {message}", file=sys.stderr)
        yield


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.verbose:
        from ..preprocess.native import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"
    try:
        with _warnings_as_lines(args.verbose):
            return int(args.func(args) or 0)
    except PsoheadError as err:
        print(f"psohead {args.verb}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"psohead {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
