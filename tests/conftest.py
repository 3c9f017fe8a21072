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
