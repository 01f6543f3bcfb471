"""The kernel paths the gateway will use, inside ONE guest on Debian's kernel (a boot costs seconds): strongSwan
installing XFRM SAs and policies through kernel-netlink between two namespaces, a keyed GRE tunnel, a VLAN
sub-interface, the guest's tap on a host bridge, and the capability probe. datapaths.sh runs them (after
guest_lib.sh's functions); each test
reads its check's result from the share folder."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import isthmus
from isthmus.lab.kernel.guest import Guest, Tap, boot_guest
from isthmus.lab.kernel.image import KernelImage
from isthmus.linux.capabilities import Capabilities

HERE = Path(__file__).parent
SCRIPT = (HERE / "guest_lib.sh").read_text() + (HERE / "datapaths.sh").read_text()


@pytest.fixture(scope="module")
def guest(kernel: KernelImage, bridge_netns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    """The guest, once it has run every check (bounded), with its share folder."""
    src = str(Path(isthmus.__file__).resolve().parents[1])
    env = {"ISTHMUS_PYTHON": sys.executable, "PYTHONPATH": src}
    tap = Tap(f"ik{os.getpid() % 100000}-dp", "br0", bridge_netns)
    with boot_guest("datapaths", tmp_path_factory.mktemp("guest"), script=SCRIPT, taps=[tap], env=env) as g:
        result = g.wait(timeout=180)
        assert result.exit_code == 0, result.output
        yield g


def passed(guest: Guest, check: str) -> str:
    """The check's log, after asserting it passed (the log is the failure message)."""
    log = (guest.share / f"{check}.log").read_text(errors="replace")
    rc = (guest.share / f"{check}.rc").read_text().strip()
    assert rc == "0", f"{check} failed in the guest (exit {rc}):\n{log[-4000:]}"
    return log


def test_the_guest_has_every_capability(guest: Guest) -> None:
    passed(guest, "capabilities")
    found = Capabilities.from_json(json.loads((guest.share / "capabilities.json").read_text()))
    assert found.kernel.endswith("-amd64"), found
    missing = [name for name, value in found.to_json().items() if value is False]
    assert not missing, f"Debian's kernel in the guest lacks {missing}: {found}"


def test_the_guest_reaches_the_host_bridge_through_its_tap(guest: Guest) -> None:
    assert "3 received" in passed(guest, "network")


def test_strongswan_installs_kernel_esp_sas_and_policies(guest: Guest) -> None:
    log = passed(guest, "ipsec")
    assert "3 received" in log, log
    states = (guest.share / "ipsec-states.txt").read_text()
    assert states.count("proto esp") == 2, f"expected an inbound and an outbound ESP SA:\n{states}"
    assert "mode tunnel" in states, states
    assert "198.51.100.1 dst 198.51.100.2" in states and "198.51.100.2 dst 198.51.100.1" in states, states
    packets = [int(n) for n in re.findall(r"(\d+)\(packets\)", states)]  # "lifetime current: 252(bytes), 3(packets)"
    assert packets and all(p >= 3 for p in packets), f"the pings did not go through the SAs:\n{states}"
    policies = (guest.share / "ipsec-policies.txt").read_text()
    for selector in ("src 192.0.2.0/26 dst 192.0.2.64/26", "src 192.0.2.64/26 dst 192.0.2.0/26"):
        assert selector in policies, f"no policy {selector}:\n{policies}"
    charon = (guest.share / "ipsec-charon-a.log").read_text(errors="replace")
    assert "CHILD_SA c{1} established" in charon, charon[-3000:]


def test_a_keyed_gre_tunnel_carries_a_ping(guest: Guest) -> None:
    assert "3 received" in passed(guest, "gre")
    link = (guest.share / "gre-link.txt").read_text()
    assert "ikey 0.0.0.5" in link and "okey 0.0.0.5" in link, link
    (stats,) = json.loads((guest.share / "gre-stats.json").read_text())
    assert stats["stats64"]["tx"]["packets"] >= 3 and stats["stats64"]["rx"]["packets"] >= 3, stats


def test_a_vlan_sub_interface_carries_a_ping(guest: Guest) -> None:
    assert "3 received" in passed(guest, "vlan")
    link = (guest.share / "vlan-link.txt").read_text()
    assert "vlan protocol 802.1Q id 10" in link, link
