"""Where the browser tests' screenshots go."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ARTIFACTS = Path(os.environ.get("ISTHMUS_TEST_ARTIFACTS", "var/test-artifacts")) / "ui"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Screenshots of each page land here (kept after the run, for a person to look at)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
