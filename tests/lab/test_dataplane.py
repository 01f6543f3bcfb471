"""A tenant builds networks through the API and uses the VMs: east-west, the internet, public IPs, NSGs,
isolation between tenants with identical address spaces. Real namespaces, real packets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from isthmus.lab import fabric, probe, vms
from isthmus.lab.tenant import Tenant, rule
from isthmus.lab.topology import INTERNET_HOST
from tests.support import wait_for

SUB_A = "00000000-0000-0000-0000-0000000000a1"
SUB_B = "00000000-0000-0000-0000-0000000000b1"
PORT = 7000


@dataclass
class World:
    lab: fabric.LabState
    a: Tenant
    b: Tenant
    vms: dict[str, vms.Vm]  # a1, a2, a3 (tenant A), b1, b2 (tenant B)
    public: dict[str, str]  # VM -> its public IP

    def ns(self, vm: str) -> str:
        return self.vms[vm].netns

    def ip(self, vm: str) -> str:
        return self.vms[vm].addresses[0]

    @property
    def inet(self) -> str:
        return self.lab.topology.netns("inet")


def _tenant(lab: fabric.LabState, subscription: str, tag: str, hosts: list[str]) -> tuple[Tenant, dict[str, vms.Vm]]:
    t = Tenant(lab, subscription)
    t.nsg("web", [rule("allow-web", 100, protocol="Tcp", ports="80", source="Internet")])
    t.vnet("vnet1", "100.64.0.0/16", {"front": "100.64.1.0/24", "back": "100.64.2.0/24"}, nsg="web")
    t.public_ip(f"{tag}1-pip")
    made = {}
    for i, (subnet, host) in enumerate(zip(["front", "back", "front"], hosts, strict=False), start=1):
        t.nic(f"{tag}{i}", "vnet1", subnet, public_ip=f"{tag}1-pip" if i == 1 else None)
        made[f"{tag}{i}"] = vms.create(lab, f"{tag}{i}", t.id(f"networkInterfaces/{tag}{i}"), host)
    return t, made


@pytest.fixture(scope="module")
def world(lab: fabric.LabState) -> Iterator[World]:
    a, a_vms = _tenant(lab, SUB_A, "a", ["h1", "h2", "h1"])
    b, b_vms = _tenant(lab, SUB_B, "b", ["h1", "h2"])
    public = {
        "a1": a.get("publicIPAddresses/a1-pip")["properties"]["ipAddress"],
        "b1": b.get("publicIPAddresses/b1-pip")["properties"]["ipAddress"],
    }
    w = World(lab, a, b, {**a_vms, **b_vms}, public)
    servers = [probe.Server(w.ns(vm), "0.0.0.0", PORT).start() for vm in w.vms]
    servers.append(probe.Server(w.inet, INTERNET_HOST, PORT).start())
    try:
        yield w
    finally:
        for server in servers:
            server.close()


def test_tenants_overlap_on_purpose(world: World) -> None:
    assert world.ip("a1") == world.ip("b1") == "100.64.1.4"
    assert world.vms["a1"].host == world.vms["b1"].host == "h1"


@pytest.mark.parametrize(("src", "dst"), [("a1", "a3"), ("a1", "a2"), ("a2", "a3"), ("b1", "b2")])
def test_vm_to_vm_same_and_across_hosts(world: World, src: str, dst: str) -> None:
    assert probe.ping(world.ns(src), world.ip(dst))
    assert probe.tcp_echo(world.ns(src), world.ip(dst), PORT)
    assert probe.udp_echo(world.ns(src), world.ip(dst), PORT)
    assert probe.ping(world.ns(src), "100.64.1.1")  # the subnet gateway, on every host


def test_cross_tenant_isolation_matrix(world: World) -> None:
    """From every VM, every other tenant's private address either answers from the VM's own tenant
    (identical address spaces) or not at all; B's servers only ever see B's addresses."""
    b_servers = {vm: probe.Server(world.ns(vm), "0.0.0.0", PORT + 1).start() for vm in ("b1", "b2")}
    try:
        for src in ("a1", "a2", "a3"):
            for dst in ("b1", "b2"):
                probe.tcp_open(world.ns(src), world.ip(dst), PORT + 1, timeout=0.3)
                probe.udp_echo(world.ns(src), world.ip(dst), PORT + 1, timeout=0.3)
        assert all(not server.peers for server in b_servers.values())
        for src in ("b1", "b2"):  # B itself gets through, so the silence above is isolation, not breakage
            for dst in ("b1", "b2"):
                if src != dst:
                    assert probe.tcp_open(world.ns(src), world.ip(dst), PORT + 1)
    finally:
        for server in b_servers.values():
            server.close()


def test_outbound_nat_seen_by_the_internet(world: World) -> None:
    host = world.lab.operator().get("/admin/hosts/h2").json()
    outbound = host["properties"]["outboundNatAddress"]
    internet = probe.Server(world.inet, INTERNET_HOST, PORT + 2).start()
    try:
        assert probe.tcp_echo(world.ns("a2"), INTERNET_HOST, PORT + 2)
        assert probe.udp_echo(world.ns("a2"), INTERNET_HOST, PORT + 2)
        assert probe.ping(world.ns("a2"), INTERNET_HOST)
        assert {peer[0] for peer in internet.peers} == {outbound}
    finally:
        internet.close()


def test_nothing_from_the_internet_reaches_a_vm_without_public_ip(world: World) -> None:
    outbound = world.lab.operator().get("/admin/hosts/h2").json()["properties"]["outboundNatAddress"]
    for target in (outbound, world.ip("a2")):
        assert not probe.tcp_open(world.inet, target, PORT, timeout=0.5)
        assert not probe.udp_echo(world.inet, target, PORT, timeout=0.5)
        assert not probe.ping(world.inet, target, timeout=0.5)


def test_public_ip_every_port_unless_the_nsg_filters(world: World) -> None:
    a, vip = world.a, world.public["a1"]
    with probe.server(world.ns("a1"), "0.0.0.0", 80), probe.server(world.ns("a1"), "0.0.0.0", 81):
        assert probe.tcp_echo(world.inet, vip, 80)
        assert not probe.tcp_open(world.inet, vip, 81, timeout=0.5)  # listening, but the NSG drops it
        a.security_rule("web", rule("allow-81", 110, protocol="Tcp", ports="81"))
        a.wait_succeeded("networkSecurityGroups/web")
        assert wait_for(lambda: probe.tcp_open(world.inet, vip, 81, timeout=0.3), 5)
        a.delete("networkSecurityGroups/web/securityRules/allow-81")
        assert wait_for(lambda: not probe.tcp_open(world.inet, vip, 81, timeout=0.3), 5)
        # Replies leave the host straight to the ToR (direct server return), from the public IP.
        assert probe.tcp_echo(world.inet, vip, 80)


def test_dissociating_the_public_ip(world: World) -> None:
    a, vip = world.a, world.public["a1"]
    with probe.server(world.ns("a1"), "0.0.0.0", 80):
        assert probe.tcp_echo(world.inet, vip, 80)
        a.nic("a1", "vnet1", "front")
        a.wait_succeeded("networkInterfaces/a1")
        assert wait_for(lambda: not probe.tcp_open(world.inet, vip, 80, timeout=0.3), 5)
        a.nic("a1", "vnet1", "front", public_ip="a1-pip")
        a.wait_succeeded("networkInterfaces/a1")
        assert wait_for(lambda: probe.tcp_echo(world.inet, vip, 80, timeout=0.3), 5)


def test_a_vm_with_a_public_ip_goes_out_from_it(world: World) -> None:
    internet = probe.Server(world.inet, INTERNET_HOST, PORT + 3).start()
    try:
        assert probe.tcp_echo(world.ns("a1"), INTERNET_HOST, PORT + 3)
        assert {peer[0] for peer in internet.peers} == {world.public["a1"]}
    finally:
        internet.close()
