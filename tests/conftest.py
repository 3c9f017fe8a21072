"""Shared test helpers: where ../shared lives, and skip-vs-fail when it is missing."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PSOHEAD_SHARED", REPO.parent / "shared"))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_shared(*parts: str) -> Path:
    """Path inside ../shared; skip if absent on a dev machine, fail if absent in CI."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        msg = f"{path} not found (set PSOHEAD_SHARED)"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture
def shared():
    return require_shared()


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium under Playwright; skipped off-CI when either is missing, failed in CI."""
    from browser import CHROMIUM, CHROMIUM_ARGS

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        msg = "the playwright package is not installed (pip install -e '.[dev]')"
        pytest.fail(msg) if in_ci() else pytest.skip(msg)
    if not CHROMIUM.is_file():
        msg = f"{CHROMIUM} not found (apt-get install chromium; scripts/install.sh does it)"
        pytest.fail(msg) if in_ci() else pytest.skip(msg)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium):
    """A fresh page (own context) that records every request it makes: ``.page``, ``.requests``,
    ``.outside()``."""
    from browser import RecordedPage

    context = chromium.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    yield RecordedPage(context.new_page())
    context.close()
