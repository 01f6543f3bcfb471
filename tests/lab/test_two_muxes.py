"""Two MUXes: the ToR spreads every public IP over both (ECMP); when one MUX dies, traffic to public IPs
continues through the other."""

from __future__ import annotations

import os
import signal
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from isthmus.lab import fabric, probe, vms
from isthmus.lab.tenant import Tenant, rule
from isthmus.lab.topology import Topology
from isthmus.lab.tor import fib_routes
from isthmus.linux.run import netns_pids
from tests.support import require_root, wait_for

require_root()


@pytest.fixture(scope="module")
def lab2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fabric.LabState]:
    workdir = tmp_path_factory.mktemp("lab2")
    prefix = f"it{os.getpid() % 10000}y{zlib.crc32(b'two') % 100:02d}-"
    state = fabric.up(workdir, Topology(prefix, hosts=1, muxes=2, gateways=0))
    try:
        yield state
    finally:
        fabric.down(Path(workdir), prefix)


def next_hops(lab: fabric.LabState, address: str) -> list[str]:
    return fib_routes(lab.topology.netns("tor")).get(address, [])


def test_ecmp_and_a_dead_mux(lab2: fabric.LabState) -> None:
    t = Tenant(lab2, "00000000-0000-0000-0000-0000000000f1")
    t.nsg("web", [rule("web", 100, protocol="Tcp", ports="80", source="Internet")])
    t.vnet("vnet1", "100.64.0.0/16", {"s": "100.64.1.0/24"}, nsg="web")
    vip = t.public_ip("pip")
    t.nic("n1", "vnet1", "s", public_ip="pip")
    vm = vms.create(lab2, "v1", t.id("networkInterfaces/n1"), "h1")
    assert wait_for(lambda: next_hops(lab2, vip) == ["198.18.0.11", "198.18.0.12"], 15)
    inet = lab2.topology.netns("inet")
    with probe.server(vm.netns, "0.0.0.0", 80):
        assert wait_for(lambda: probe.tcp_echo(inet, vip, 80, timeout=0.3), 15)
        for pid in netns_pids(lab2.topology.netns("mux1")):  # the whole MUX node dies: agent, gobgpd, bfdd
            os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: next_hops(lab2, vip) == ["198.18.0.12"], 15)
        for _ in range(20):  # every new flow goes through the MUX that is left
            assert probe.tcp_echo(inet, vip, 80, timeout=1.0)
