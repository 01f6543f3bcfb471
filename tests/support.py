"""Helpers shared by the tests that drive real namespaces and daemons."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest


def require_root() -> None:
    """Namespaces need root. Without it a developer's run skips these modules; CI runs as root, so there a
    missing root is a failure, never a silent skip."""
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        pytest.fail("CI must run as root: these tests build network namespaces", pytrace=False)
    pytest.skip("needs root (network namespaces)", allow_module_level=True)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """The first truthy value of `predicate`, polled every 50 ms; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")
