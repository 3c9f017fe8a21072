"""Real-browser test helpers: Debian's Chromium driven by Playwright (never ``playwright install``).

WebGL runs on SwiftShader (software), so 3D viewers draw on machines without a GPU.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

CHROMIUM = Path(os.environ.get("PSOHEAD_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def is_local(url: str) -> bool:
    """True for what never leaves the machine: file:, data:, blob:, about: and loopback http(s)/ws."""
    parts = urlsplit(url)
    if parts.scheme in ("file", "data", "blob", "about"):
        return True
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname in LOCAL_HOSTS


class RecordedPage:
    """A Playwright page plus every URL it requested (HTTP, websockets, workers)."""

    def __init__(self, page):
        self.page = page
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("websocket", lambda ws: self.requests.append(ws.url))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def outside(self) -> list[str]:
        """Requests that went (or tried to go) anywhere but this machine."""
        return [u for u in self.requests if not is_local(u)]


def screenshot_array(locator) -> np.ndarray:
    """An element's screenshot as an [H,W,3] uint8 array."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB"))


def drawn_fraction(pixels: np.ndarray, background=None, tol: int = 12) -> float:
    """Share of pixels that differ from the background colour (the most common corner colour
    when not given) by more than ``tol`` in any channel: 0 for a blank canvas."""
    px = pixels.astype(np.int16)
    if background is None:
        corners = [tuple(px[y, x]) for y in (0, -1) for x in (0, -1)]
        background = max(set(corners), key=corners.count)
    return float((np.abs(px - np.asarray(background, np.int16)).max(-1) > tol).mean())
