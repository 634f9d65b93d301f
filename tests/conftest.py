"""Shared test fixtures: where the reference data lives."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def reference_dir() -> Path:
    """`../shared/reference` beside the checkout, or UNIANIMATE_REFERENCE_DIR."""
    env = os.environ.get("UNIANIMATE_REFERENCE_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference() -> Path:
    path = reference_dir()
    if not path.is_dir():
        pytest.fail(f"reference data not found at {path}; set UNIANIMATE_REFERENCE_DIR")
    return path
