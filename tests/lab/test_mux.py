"""Public IPs over BGP: created → a /32 on the ToR learned from the MUX; a backend that moves changes the
MUX's route, not the announcement; released → withdrawn."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from isthmus.lab import fabric, probe, tor, vms
from isthmus.lab.faults import silence, unsilence
from isthmus.lab.mux_routes import mux_speaker
from isthmus.lab.tenant import Tenant, rule
from isthmus.lab.topology import TOR_UNDERLAY
from isthmus.linux.frr import vtysh
from isthmus.linux.run import ip_json
from tests.support import speaker_pids, wait_for

SUB = "00000000-0000-0000-0000-0000000000e1"
SPEAKER_PROGRAMS = {"bird": "bird", "gobgp": "gobgpd"}

# Every test here runs once with each speaker the MUX agent can run (the lab fixture is module-scoped: two labs).
pytestmark = pytest.mark.parametrize("lab", sorted(SPEAKER_PROGRAMS), indirect=True, scope="module")


def tor_route(lab: fabric.LabState, address: str) -> list[str]:
    """Next hops of the ToR's BGP route to address/32 ([] if none)."""
    return tor.next_hops(lab.topology.netns("tor"), address)


def mux_route(lab: fabric.LabState, address: str) -> str | None:
    for route in ip_json(lab.topology.netns("mux1"), "route", "show", "proto", "77"):
        if route["dst"] == address:
            return str(route["gateway"])
    return None


def reported_sessions(lab: fabric.LabState) -> dict[str, str]:
    """The BGP sessions mux1 last reported (/admin/nodes)."""
    with lab.operator() as http:
        node = {n["name"]: n for n in http.get("/admin/nodes").json()["value"]}["mux1"]
    return dict((node.get("status") or {}).get("sessions") or {})


def test_public_ip_announced_moved_and_withdrawn(lab: fabric.LabState) -> None:
    t = Tenant(lab, SUB)
    t.nsg("web", [rule("web", 100, protocol="Tcp", ports="80", source="Internet")])
    t.vnet("vnet1", "100.64.0.0/16", {"s": "100.64.1.0/24"}, nsg="web")
    vip = t.public_ip("pip")
    mux = lab.topology.nodes()[0]
    assert mux.role == "mux"
    assert wait_for(lambda: tor_route(lab, vip)) == [mux.underlay]  # announced before it is attached

    t.nic("n1", "vnet1", "s", public_ip="pip")
    vm = vms.create(lab, "m1", t.id("networkInterfaces/n1"), "h1")
    wait_for(lambda: mux_route(lab, vip) == "198.18.0.101")
    speaker = mux_speaker(tor.run_dir(lab.topology.netns("mux1")))
    try:
        before = speaker.announced()
        with probe.server(vm.netns, "0.0.0.0", 80):
            assert wait_for(lambda: probe.tcp_echo(lab.topology.netns("inet"), vip, 80, timeout=0.3))
        # The VM moves to h2: the MUX's route follows; the announcement does not change.
        vms.delete(lab, "m1")
        moved = vms.create(lab, "m1", t.id("networkInterfaces/n1"), "h2")
        wait_for(lambda: mux_route(lab, vip) == "198.18.0.102")
        assert speaker.announced() == before
        assert tor_route(lab, vip) == [mux.underlay]
        with probe.server(moved.netns, "0.0.0.0", 80):
            assert wait_for(lambda: probe.tcp_echo(lab.topology.netns("inet"), vip, 80, timeout=0.3))
    finally:
        speaker.close()

    vms.delete(lab, "m1")
    t.nic("n1", "vnet1", "s")
    t.delete("publicIPAddresses/pip")
    wait_for(lambda: not tor_route(lab, vip))
    assert not probe.tcp_open(lab.topology.netns("inet"), vip, 80, timeout=0.3)


def test_speaker_killed_is_restarted_and_reannounces(lab: fabric.LabState) -> None:
    t = Tenant(lab, SUB)
    vip = t.public_ip("pip-restart")
    assert wait_for(lambda: tor_route(lab, vip))
    assert wait_for(lambda: reported_sessions(lab) == {TOR_UNDERLAY: "Established"})
    [speaker] = speaker_pids(lab.topology.netns("mux1"))  # gobgpd or BIRD
    chosen = os.environ["ISTHMUS_MUX_SPEAKER"]  # set by the parametrised lab fixture
    assert Path(f"/proc/{speaker}/cmdline").read_bytes().split(b"\0")[0].endswith(SPEAKER_PROGRAMS[chosen].encode())
    os.kill(speaker, signal.SIGKILL)
    assert wait_for(lambda: reported_sessions(lab)[TOR_UNDERLAY] != "Established", 10)  # observed, reported at once
    wait_for(lambda: not tor_route(lab, vip), 10)  # one MUX in this lab: its routes go with it
    assert wait_for(lambda: tor_route(lab, vip), 20)  # the agent notices on a heartbeat, restarts, re-announces
    assert wait_for(lambda: reported_sessions(lab) == {TOR_UNDERLAY: "Established"})
    with lab.operator() as http:
        details = {n["name"]: n for n in http.get("/admin/nodes").json()["value"]}["mux1"]["status"]["details"]
    assert details["gobgpdRestarts"] >= 1
    t.delete("publicIPAddresses/pip-restart")


def test_a_silently_dead_link_is_caught_by_bfd(lab: fabric.LabState) -> None:
    """The MUX's link drops everything (no FIN, no carrier loss): BFD, not the hold timer, ends the session."""
    t = Tenant(lab, SUB)
    vip = t.public_ip("pip-bfd")
    assert wait_for(lambda: tor_route(lab, vip))
    tor_dir = tor.run_dir(lab.topology.netns("tor"))
    # The ToR's bgpd makes its BFD session with the BGP session: after a speaker restart (the previous test's,
    # repaired within a second now that the agent observes its sessions) BFD comes up ~2 s after BGP.
    assert wait_for(lambda: "up" in vtysh(tor_dir, "show bfd peers brief"), 10)
    mux = lab.topology.netns("mux1")
    silence(mux, "under0")
    try:
        wait_for(lambda: not tor_route(lab, vip), 10)
        peer = json.loads(vtysh(tor_dir, "show bfd peers json"))[0]
        assert peer["status"] == "down" and peer["diagnostic"] == "control detection time expired"
    finally:
        unsilence(mux)
    assert wait_for(lambda: tor_route(lab, vip), 30)  # the session comes back by itself
    t.delete("publicIPAddresses/pip-bfd")
