"""The lab with host h2 as a kernel node (a qemu guest on Debian's kernel, its agent inside): the data plane
behaves as on namespace nodes — VXLAN between a VM there and one on h1, the NSG, outbound NAT, a public IP
reached from the internet through the MUX. One guest."""

from __future__ import annotations

import os
import shlex
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from isthmus.lab import fabric, probe, vms
from isthmus.lab.kernel.image import KernelImage
from isthmus.lab.tenant import Tenant, rule
from isthmus.lab.topology import INTERNET_HOST, Topology
from tests.support import wait_for

SUB = "00000000-0000-0000-0000-0000000000c1"
PORT = 7000
GUEST_VM_PORTS = (PORT, 80, 81)

# An echo server in a VM inside the guest (no probe.Server there: its sockets are made from this process), and
# a client using bash's /dev/tcp (a TCG guest pays ~1 s for a Python start, nothing for a builtin).
ECHO_SERVER = """
import signal, socket, sys, threading
signal.alarm(600)
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", port))
    s.listen(16)
    while True:
        c, _ = s.accept()
        with c:
            c.sendall(c.recv(64))
for port in map(int, sys.argv[1:]):
    threading.Thread(target=serve, args=(port,), daemon=True).start()
print("listening", flush=True)
signal.pause()
"""


def tcp_echo_from(lab: fabric.LabState, vm: vms.Vm, address: str, port: int) -> bool:
    script = f'exec 3<>/dev/tcp/{address}/{port} && echo isthmus >&3 && read -r -t 3 line <&3 && [ "$line" = isthmus ]'
    code, _ = vms.run(lab, vm, ["timeout", "5", "bash", "-c", script], timeout=20)
    return code == 0


@dataclass
class World:
    lab: fabric.LabState
    tenant: Tenant
    a1: vms.Vm  # on h1, a namespace node
    a2: vms.Vm  # on h2, the kernel node, with a public IP
    a3: vms.Vm  # on h2, without
    public: str  # a2's public IP

    @property
    def inet(self) -> str:
        return self.lab.topology.netns("inet")


@pytest.fixture(scope="module")
def lab(kernel: KernelImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[fabric.LabState]:
    workdir = tmp_path_factory.mktemp("klab")
    prefix = f"ik{os.getpid() % 10000}x{zlib.crc32(__name__.encode()) % 100:02d}-"
    try:
        yield fabric.up(workdir, Topology(prefix, hosts=2, muxes=1, gateways=0), kernel_nodes=["h2"])
    finally:
        fabric.down(Path(workdir), prefix)
        assert not [n for n in os.listdir("/run/netns") if n.startswith(prefix)]
        assert not fabric.load_state(Path(workdir))


@pytest.fixture(scope="module")
def world(lab: fabric.LabState) -> Iterator[World]:
    t = Tenant(lab, SUB)
    t.nsg("web", [rule("allow-web", 100, protocol="Tcp", ports="80", source="Internet")])
    t.vnet("vnet1", "100.64.0.0/16", {"front": "100.64.1.0/24", "back": "100.64.2.0/24"}, nsg="web")
    t.public_ip("a2-pip")
    t.nic("a1", "vnet1", "front")
    t.nic("a2", "vnet1", "back", public_ip="a2-pip")
    t.nic("a3", "vnet1", "front")
    a1 = vms.create(lab, "a1", t.id("networkInterfaces/a1"), "h1")
    a2 = vms.create(lab, "a2", t.id("networkInterfaces/a2"), "h2", timeout=60)
    a3 = vms.create(lab, "a3", t.id("networkInterfaces/a3"), "h2", timeout=60)
    public = t.get("publicIPAddresses/a2-pip")["properties"]["ipAddress"]
    ports = " ".join(map(str, GUEST_VM_PORTS))
    start = f"ip netns exec {a2.netns} nohup {sys.executable} -c {shlex.quote(ECHO_SERVER)} {ports} > echo.log 2>&1 &"
    code, out = fabric.run_in_node(lab, "h2", start)
    assert code == 0, out
    assert wait_for(lambda: fabric.run_in_node(lab, "h2", "grep -q listening echo.log")[0] == 0, 30)
    with probe.server(a1.netns, "0.0.0.0", PORT), probe.server(lab.topology.netns("inet"), INTERNET_HOST, PORT):
        yield World(lab, t, a1, a2, a3, public)


def test_the_agent_inside_the_guest_registered_and_plugged_its_vm(world: World) -> None:
    assert world.a2.host == "h2" and world.a2.addresses == ("100.64.2.4",)
    code, out = fabric.run_in_node(world.lab, "h2", "uname -r")
    assert code == 0 and out.strip() != os.uname().release  # Debian's kernel, not this machine's
    report = fabric.status(Path(world.lab.workdir))
    assert not report["dead"], report["dead"]
    assert report["processes"]["vm-h2"]["kind"] == "kernel node"


def test_each_node_reports_its_kernel_s_capabilities_and_datapath(world: World) -> None:
    with world.lab.operator() as http:
        nodes = {n["name"]: n for n in http.get("/admin/nodes").json()["value"]}
    guest, namespace = nodes["h2"], nodes["h1"]
    assert guest["capabilities"]["kernel"] != os.uname().release
    assert all(guest["capabilities"][f] for f in ("esp", "gre", "vlan", "vrf", "netem", "vxlan", "nft"))
    assert guest["datapath"]["ipsec"] == "xfrm" and guest["datapath"]["gre"] == "ip_gre"
    assert namespace["capabilities"]["kernel"] == os.uname().release
    assert namespace["datapath"]["ipsec"] == ("xfrm" if namespace["capabilities"]["esp"] else "libipsec")


def test_vxlan_east_west_both_ways(world: World) -> None:
    code, out = vms.run(world.lab, world.a2, ["ping", "-c", "1", "-W", "2", world.a1.addresses[0]])
    assert code == 0, out
    assert tcp_echo_from(world.lab, world.a2, world.a1.addresses[0], PORT)
    assert probe.ping(world.a1.netns, world.a2.addresses[0], timeout=2)
    assert probe.tcp_echo(world.a1.netns, world.a2.addresses[0], PORT, timeout=3)


def test_outbound_nat_from_the_kernel_node(world: World) -> None:
    """A VM without a public IP leaves as the host's outbound address; one with a public IP as that (Azure's
    instance-level public IP is also its outbound address)."""
    outbound = world.lab.operator().get("/admin/hosts/h2").json()["properties"]["outboundNatAddress"]
    for vm, expected in ((world.a3, outbound), (world.a2, world.public)):
        seen = probe.Server(world.inet, INTERNET_HOST, PORT + 2).start()
        try:
            assert tcp_echo_from(world.lab, vm, INTERNET_HOST, PORT + 2)
            assert {peer[0] for peer in seen.peers} == {expected}, vm.name
        finally:
            seen.close()
    assert not probe.tcp_open(world.inet, outbound, PORT, timeout=0.5)  # outbound only


def test_public_ip_on_the_kernel_node_and_its_nsg(world: World) -> None:
    assert probe.tcp_echo(world.inet, world.public, 80, timeout=3)
    assert not probe.tcp_open(world.inet, world.public, 81, timeout=0.5)  # listening, but the NSG drops it
    world.tenant.security_rule("web", rule("allow-81", 110, protocol="Tcp", ports="81"))
    world.tenant.wait_succeeded("networkSecurityGroups/web")
    assert wait_for(lambda: probe.tcp_open(world.inet, world.public, 81, timeout=0.5), 20)
    world.tenant.delete("networkSecurityGroups/web/securityRules/allow-81")
    assert wait_for(lambda: not probe.tcp_open(world.inet, world.public, 81, timeout=0.5), 20)
