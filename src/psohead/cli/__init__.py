"""``psohead <verb>``: thin argument parsing; each verb group lives in its own module here.

Every module in this package exposes ``register(subparsers)`` which adds its verbs and sets
``func`` on their parsers; the functions call the library and hold no logic of their own.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import pkgutil
import signal
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
    _finite_floats(parser)
    return parser


def finite_float(text: str) -> float:
    """A number option: float() would also take nan and inf, which only make black renders."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _finite_floats(parser: argparse.ArgumentParser) -> None:
    """Every ``type=float`` option of every verb takes finite numbers only (one place, so a new
    verb cannot forget it)."""
    for action in parser._actions:
        if action.type is float:
            action.type = finite_float
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _finite_floats(sub)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what ``kill`` and ``timeout`` send), raised like Ctrl-C so every clean-up runs."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not break the clean-up
        raise Terminated()

    try:
        old = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (main() called from a worker thread): leave it alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


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
        with _sigterm_as_interrupt(), _warnings_as_lines(args.verbose):
            return int(args.func(args) or 0)
    except PsoheadError as err:
        print(f"psohead {args.verb}: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`psohead info ... | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        return 128 + signal.SIGPIPE
    except Terminated:
        print(f"psohead {args.verb}: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"psohead {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
