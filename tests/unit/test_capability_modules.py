"""The capability probe loads the features' modules in one modprobe, and not at all once they are all loaded
(a kernel node's guest script loaded them before its agent probes)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from isthmus.linux import capabilities

LISTING = """esp4 20480 0 - Live 0x0000000000000000
xfrm_user 53248 1 - Loading 0x0000000000000000
8021q 45056 0 - Live 0x0000000000000000
nf_tables 315392 0 - Unloading 0x0000000000000000
"""


def test_only_initialised_modules_count_as_loaded(tmp_path: Path) -> None:
    listing = tmp_path / "modules"
    listing.write_text(LISTING)
    assert capabilities.live_modules(listing) == {"esp4", "8021q"}
    assert capabilities.live_modules(tmp_path / "absent") == set()


@pytest.mark.parametrize(("live", "modprobes"), [(set(), 1), (set(capabilities.MODULES) - {"vrf"}, 1),
                                                 (set(capabilities.MODULES) | {"bridge"}, 0)])  # fmt: skip
def test_modprobe_runs_while_a_module_is_not_live(
    monkeypatch: pytest.MonkeyPatch, live: set[str], modprobes: int
) -> None:
    ran: list[list[str]] = []

    def run(args: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        ran.append(args)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(capabilities.Path, "is_file", lambda self: True)  # a kernel with a modules directory
    monkeypatch.setattr(capabilities.shutil, "which", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(capabilities, "live_modules", lambda: live)
    monkeypatch.setattr(capabilities.subprocess, "run", run)
    capabilities.load_modules()
    assert ran == [["modprobe", "-q", "-a", *capabilities.MODULES]] * modprobes
