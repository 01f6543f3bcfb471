"""The capability probe on this host: its answers must be what the kernel really does (checked here by other
means: netlink through pyroute2, libnftables in-process, a different ESP transform), never assumed. Inside a
guest on Debian's kernel every feature is there: test_datapaths.py checks that in its one boot."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from pyroute2 import NetNS

from isthmus.linux import capabilities, libnft
from isthmus.linux.capabilities import Capabilities
from isthmus.linux.run import NETNS_DIR, add_netns, delete_netns, list_netns


def _tried(action: Callable[[], Any]) -> bool:
    try:
        action()
    except Exception:
        return False
    return True


def independently(netns: str) -> dict[str, bool]:
    """Each feature tried another way than the probe's, in `netns`."""
    esp = ["ip", "-n", netns, "xfrm", "state", "add", "src", "198.51.100.1", "dst", "198.51.100.2", "proto", "esp"]
    esp += ["spi", "0x200", "mode", "transport", "aead", "rfc4106(gcm(aes))", "0x" + "33" * 20, "128"]
    path = f"{NETNS_DIR}/{netns}"
    ns = NetNS(netns)
    try:
        ns.link("add", ifname="q0", kind="veth", peer="q1")
        (parent,) = ns.link_lookup(ifname="q0")
        (lo,) = ns.link_lookup(ifname="lo")
        return {
            "esp": subprocess.run(esp, capture_output=True, check=False).returncode == 0,
            "gre": _tried(
                lambda: ns.link("add", ifname="g9", kind="gre", gre_local="198.51.100.1", gre_remote="198.51.100.2")
            ),
            "vlan": _tried(lambda: ns.link("add", ifname="q0.20", kind="vlan", link=parent, vlan_id=20)),
            "vrf": _tried(lambda: ns.link("add", ifname="vrf9", kind="vrf", vrf_table=20)),
            "netem": _tried(lambda: ns.tc("add", "netem", lo, delay=2000)),
            "vxlan": _tried(lambda: ns.link("add", ifname="vx9", kind="vxlan", vxlan_id=9)),
            "nft": _tried(lambda: libnft.run(path, "add table ip other")),
            "nft_flowtable": _tried(
                lambda: libnft.run(
                    path, "add table ip other\nadd flowtable ip other f { hook ingress priority 0; devices = { q0 }; }"
                )
            ),
        }
    finally:
        ns.close()


@pytest.fixture
def netns() -> Any:
    name = f"ikc{os.getpid() % 100000}"
    add_netns(name)
    try:
        yield name
    finally:
        delete_netns(name)


def test_the_probe_says_what_this_kernel_does(netns: str) -> None:
    found = capabilities.probe()
    assert found.kernel == os.uname().release
    expected = independently(netns)
    answers = {name: value for name, value in found.to_json().items() if name != "kernel"}
    assert answers == expected, f"probe {answers} but the kernel does {expected}"


def test_the_probe_is_quick_and_leaves_no_namespace() -> None:
    before = list_netns()
    times = []
    for _ in range(3):
        started = time.monotonic()
        capabilities.probe()
        times.append(time.monotonic() - started)
    assert statistics.median(times) < 1.0, times
    assert list_netns() == before


def test_the_namespace_is_removed_when_a_trial_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    before = list_netns()

    def broken(netns: str) -> dict[str, bool]:
        raise RuntimeError(f"trial failed in {netns}")

    monkeypatch.setattr(capabilities, "_trials", broken)
    with pytest.raises(RuntimeError, match="trial failed in isthmus-caps-"):
        capabilities.probe()
    assert list_netns() == before


def test_the_command_prints_the_capabilities_as_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "isthmus.linux.capabilities"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    found = Capabilities.from_json(json.loads(done.stdout))
    assert found == Capabilities.from_json(found.to_json())
    assert found.kernel == os.uname().release
