"""Helpers shared by the tests that drive real namespaces and daemons."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from isthmus.linux.run import netns_pids

SPEAKERS = (b"gobgpd", b"bird")  # the MUX's BGP speaker is one of these (isthmus agent mux --speaker)


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


def speaker_pids(netns: str) -> list[int]:
    """The BGP speaker processes (gobgpd or BIRD, whichever the MUX agent runs) in a namespace."""
    pids = []
    for pid in netns_pids(netns):
        try:
            program = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if os.path.basename(program) in SPEAKERS:
            pids.append(pid)
    return pids
