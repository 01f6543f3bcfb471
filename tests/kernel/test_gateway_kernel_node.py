"""The lab with gateway gw1 as a kernel node (a qemu guest on Debian's kernel, its gateway agent inside): its
compartment's charon keys kernel ESP (XFRM), not charon's userspace libipsec, and a VM on h1 (a namespace node)
talks to the host behind a strongSwan site (libipsec, configured from the swanctl.conf below, written by hand)
through it; a second tenant's GRE connection to a scapy site rides a kernel GRE device there (ip_gre), checked on
the wire. One guest; a second gateway, gw2 (a namespace node), is the pool's standby, which the last test needs:
it degrades gw1's links and gw2 takes over, where GRE is the userspace datapath's."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from isthmus.lab import fabric, faults, probe, sites, tor, vms
from isthmus.lab.gre_site import GreEnd
from isthmus.lab.kernel.image import KernelImage
from isthmus.lab.tenant import Tenant
from isthmus.lab.topology import Topology
from isthmus.linux.run import add_netns, delete_netns, in_netns, ip_batch
from tests.support import gateway_tenant, site_conf, wait_for

SUB = "00000000-0000-0000-0000-0000000000d1"
GRE_SUB = "00000000-0000-0000-0000-0000000000d2"
GRE_SITE_ADDRESS = "198.51.100.32"
GRE_KEY = 77
VLAN = 30
VLAN_LINK = ("198.19.2.1", "198.19.2.2")
VLAN_HOST = "192.0.2.200"
ON_PREMISES = "192.0.2.0/26"
BGP_SUB = "00000000-0000-0000-0000-0000000000d3"
BGP_SITE_ADDRESS = "198.51.100.33"
SITE_ADDRESS = "198.51.100.31"
KEY = "Sh4red-Key-for-the-kernel-lab"
PORT = 7200


@dataclass
class World:
    lab: fabric.LabState
    tenant: Tenant
    vm: vms.Vm
    vip: str
    site: sites.Site
    compartment: str  # the compartment's namespace inside gw1's guest
    connected_s: float  # from the connection's PUT to Connected


@pytest.fixture(scope="module")
def lab(kernel: KernelImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[fabric.LabState]:
    workdir = tmp_path_factory.mktemp("kgwlab")
    prefix = f"ik{os.getpid() % 10000}x{zlib.crc32(__name__.encode()) % 100:02d}-"
    try:
        yield fabric.up(workdir, Topology(prefix, hosts=1, muxes=1, gateways=2), kernel_nodes=["gw1"])
    finally:
        fabric.down(Path(workdir), prefix)
        assert not [n for n in os.listdir("/run/netns") if n.startswith(prefix)]
        assert not fabric.load_state(Path(workdir))


def guest(lab: fabric.LabState, script: str, timeout: float = 60.0) -> str:
    code, out = fabric.run_in_node(lab, "gw1", script, timeout)
    assert code == 0, out
    return out


def compartments(lab: fabric.LabState) -> list[str]:
    out = guest(lab, "ip netns list")
    return sorted(w for w in out.split() if w.startswith(lab.topology.netns("gw1-gw")))


@pytest.fixture(scope="module")
def world(lab: fabric.LabState) -> Iterator[World]:
    t, vm, vip = gateway_tenant(lab, SUB, "v", "h1")
    t.local_gateway("onprem", SITE_ADDRESS, [ON_PREMISES])
    conf = site_conf(SITE_ADDRESS, vip, KEY, local=ON_PREMISES)
    site = sites.create(lab, "sk", SITE_ADDRESS, ON_PREMISES, conf)
    started = time.monotonic()
    t.connection("to-onprem", "gw", "onprem", KEY)
    doc = t.wait_connection("to-onprem", timeout=120)
    connected_s = time.monotonic() - started
    assert doc["properties"]["connectionStatus"] == "Connected", doc
    found = compartments(lab)
    assert len(found) == 1, found
    print(f"\nconnected over kernel ESP {connected_s:.1f} s after the connection's PUT")
    yield World(lab, t, vm, vip, site, found[0], connected_s)


def test_the_gateway_node_in_the_guest_registered_with_kernel_esp(lab: fabric.LabState) -> None:
    code, out = fabric.run_in_node(lab, "gw1", "uname -r")
    assert code == 0 and out.strip() != os.uname().release  # Debian's kernel, not this machine's
    with lab.operator() as http:
        nodes = {n["name"]: n for n in http.get("/admin/nodes").json()["value"]}
    gw1 = nodes["gw1"]
    assert gw1["capabilities"]["esp"] and gw1["capabilities"]["kernel"] != os.uname().release
    assert gw1["datapath"]["ipsec"] == "xfrm"


def test_the_compartment_is_named_by_the_lab_prefix_and_its_vni(world: World) -> None:
    vni = world.compartment.rsplit("-gw", 1)[1]
    assert vni.isdigit() and world.compartment == world.lab.topology.netns(f"gw1-gw{vni}")


def test_a_vm_and_its_on_premises_host_talk_through_kernel_esp(world: World) -> None:
    on_prem = world.site.host_address
    assert wait_for(lambda: probe.ping(world.vm.netns, on_prem, timeout=2), 20)
    with probe.server(world.site.host_netns, on_prem, PORT):
        assert wait_for(lambda: probe.tcp_echo(world.vm.netns, on_prem, PORT, timeout=3), 15)
        assert wait_for(lambda: probe.udp_echo(world.vm.netns, on_prem, PORT, timeout=2), 15)
    with probe.server(world.vm.netns, world.vm.addresses[0], PORT + 1):  # the other way: the site opens the flow
        assert wait_for(lambda: probe.tcp_echo(world.site.host_netns, world.vm.addresses[0], PORT + 1, timeout=3), 15)
    assert probe.ping(world.site.host_netns, world.vm.addresses[0], timeout=2)


def test_the_compartment_holds_kernel_esp_sas_and_policies(world: World) -> None:
    """ESP in UDP (the libipsec site forces NAT-T), both directions, and tunnel policies for the prefixes."""
    states = guest(world.lab, f"ip netns exec {world.compartment} ip xfrm state")
    policies = guest(world.lab, f"ip netns exec {world.compartment} ip xfrm policy")
    assert states.count("proto esp") >= 2, states
    assert f"src {world.vip} dst {SITE_ADDRESS}" in states and f"src {SITE_ADDRESS} dst {world.vip}" in states
    assert "encap type espinudp sport 4500 dport 4500" in states, states
    assert "rfc4106(gcm(aes))" in states, states
    for direction in ("out", "in", "fwd"):
        assert f"dir {direction}" in policies, policies
    assert f"src 100.64.0.0/16 dst {ON_PREMISES}" in policies and f"src {ON_PREMISES} dst 100.64.0.0/16" in policies
    # and no userspace ESP: charon has no TUN device there
    links = guest(world.lab, f"ip netns exec {world.compartment} ip -br link")
    assert "ipsec" not in links, links


def test_the_connection_counts_the_traffic(world: World) -> None:
    def counters() -> tuple[int, int]:
        p = world.tenant.get("connections/to-onprem")["properties"]
        return int(p["ingressBytesTransferred"]), int(p["egressBytesTransferred"])

    before = counters()
    assert probe.ping(world.vm.netns, world.site.host_address, timeout=2, count=5)
    assert wait_for(lambda: all(a > b for a, b in zip(counters(), before, strict=True)), 30), (before, counters())


def test_ping_rtt_through_the_tunnel(world: World) -> None:
    """Not a bound on speed (TCG emulates the cipher), a figure for the record."""
    command = in_netns(
        world.vm.netns, ["ping", "-n", "-q", "-c", "10", "-i", "0.2", "-W", "2", world.site.host_address]
    )
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]  # rtt min/avg/max/mdev = …
    print(f"\nping through the tunnel: {summary}")


@dataclass
class GreWorld:
    tenant: Tenant
    vm: vms.Vm
    vip: str
    site: sites.Site


@pytest.fixture(scope="module")
def gre_world(world: World) -> GreWorld:
    lab = world.lab
    t, vm, vip = gateway_tenant(lab, GRE_SUB, "g", "h1")
    t.local_gateway("onprem", GRE_SITE_ADDRESS, [ON_PREMISES])
    end = GreEnd(remote=vip, key=GRE_KEY, checksum=True, routes=("100.64.0.0/16",))
    site = sites.create(lab, "gk", GRE_SITE_ADDRESS, ON_PREMISES, gre=end)
    t.gre_connection("to-onprem", "gw", "onprem", key=GRE_KEY, checksum=True)
    doc = t.wait_connection("to-onprem", timeout=90)
    assert doc["properties"]["connectionStatus"] == "Connected", doc
    return GreWorld(t, vm, vip, site)


def test_gre_rides_a_keyed_kernel_gre_device_in_the_guest(world: World, gre_world: GreWorld) -> None:
    assert wait_for(lambda: probe.ping(gre_world.vm.netns, gre_world.site.host_address, timeout=2), 30)
    with probe.server(gre_world.site.host_netns, gre_world.site.host_address, PORT + 2):
        assert wait_for(lambda: probe.tcp_echo(gre_world.vm.netns, gre_world.site.host_address, PORT + 2,
                                               timeout=3), 15)  # fmt: skip
    found = [c for c in compartments(world.lab) if c != world.compartment]
    assert len(found) == 1, found
    links = guest(world.lab, f"ip netns exec {found[0]} ip -d link show")
    assert f"gre remote {GRE_SITE_ADDRESS} local {gre_world.vip}" in links, links
    assert f"ikey 0.0.0.{GRE_KEY} okey 0.0.0.{GRE_KEY} icsum ocsum" in links, links
    assert "gre.supervisor.json" not in guest(world.lab, f"ls {tor.run_dir(world.lab.topology.netns('gw1'))}/*/")
    stats = gre_world.site.gre_stats
    assert stats["received"] > 0 and stats["bad_checksum"] == 0 and stats["wrong_key"] == 0, stats


def test_bgp_over_kernel_esp_is_route_based_and_its_routes_reach_the_vms(world: World) -> None:
    """A third tenant's IPsec connection with BGP on the kernel node: an any-to-any child SA in XFRM, the site's
    bgpd (from its LAN address, through the tunnel) advertising a prefix its local network gateway does not declare,
    learned by the compartment's bgpd and routed from the VM there."""
    lab = world.lab
    t, vm, vip = gateway_tenant(lab, BGP_SUB, "b", "h1", bgp_asn=65515)
    peer = t.get("virtualNetworkGateways/gw")["properties"]["bgpSettings"]["bgpPeeringAddress"]
    t.local_gateway("onprem", BGP_SITE_ADDRESS, ["192.0.2.1/32"], bgp=(65060, "192.0.2.1"))
    conf = site_conf(BGP_SITE_ADDRESS, vip, KEY, local="0.0.0.0/0")
    site = sites.create(lab, "bk", BGP_SITE_ADDRESS, ON_PREMISES, conf, bgp=sites.SiteBgp(65060, peer, 65515))
    t.connection("to-onprem", "gw", "onprem", KEY, enableBgp=True)
    assert t.wait_connection("to-onprem", timeout=120)["properties"]["connectionStatus"] == "Connected"

    def learned() -> set[str]:
        done = t.http.post(t.id("virtualNetworkGateways/gw/getLearnedRoutes"), params={"api-version": "2026-03-01"})
        return {r["network"] for r in done.json()["value"] if r["origin"] == "EBgp"}

    assert wait_for(lambda: ON_PREMISES in learned(), 90)
    assert wait_for(lambda: probe.ping(vm.netns, site.host_address, timeout=2), 30)
    policies = "".join(guest(lab, f"ip netns exec {c} ip xfrm policy") for c in compartments(lab))
    assert "src 100.64.0.0/16 dst 0.0.0.0/0" in policies, policies


@pytest.fixture(scope="module")
def vlan_peer(lab: fabric.LabState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The provider's side of VLAN 30 on br-prov: tests/kernel/vlan_peer.py in a namespace of its own."""
    netns = lab.topology.netns("vlanpeer")
    fabric_ns = lab.topology.netns("fabric")
    count = tmp_path_factory.mktemp("vlan") / "answered"
    add_netns(netns)
    process = None
    try:
        ip_batch(fabric_ns, [f"link add p-vlanpeer type veth peer name eth0 netns {netns}",
                             "link set p-vlanpeer master br-prov up"])  # fmt: skip
        ip_batch(netns, ["link set eth0 up"])
        peer = Path(__file__).with_name("vlan_peer.py")
        process = subprocess.Popen(in_netns(netns, [sys.executable, str(peer), "eth0", str(VLAN), VLAN_LINK[1],
                                                    VLAN_HOST, str(count)]))  # fmt: skip
        assert wait_for(count.exists, 20)
        yield count
    finally:
        if process is not None:
            process.kill()
            process.wait()
        delete_netns(netns)


def test_an_l3_connection_on_a_vlan_rides_an_8021q_sub_interface_in_the_guest(world: World, vlan_peer: Path) -> None:
    lab, t = world.lab, world.tenant
    t.local_gateway("provider", "198.51.100.70", [f"{VLAN_HOST.rsplit('.', 1)[0]}.192/26"])
    t.l3_connection(
        "to-provider", "gw", "provider", localAddress=f"{VLAN_LINK[0]}/30", nextHop=VLAN_LINK[1], vlanId=VLAN
    )
    doc = t.wait_connection("to-provider", timeout=90)
    assert doc["properties"]["connectionStatus"] == "Connected", doc
    assert wait_for(lambda: probe.ping(world.vm.netns, VLAN_HOST, timeout=2), 30)
    assert int(vlan_peer.read_text() or 0) >= 1
    links = guest(lab, f"ip netns exec {world.compartment} ip -d link show")
    assert f"vlan protocol 802.1Q id {VLAN}" in links, links
    t.delete("connections/to-provider")


def _placed(lab: fabric.LabState) -> list[str]:
    with lab.operator() as http:
        return [p["node"] for p in http.get("/admin/placement").json()["placed"]]


def _state(lab: fabric.LabState, node: str) -> tuple[str, str]:
    with lab.operator() as http:
        pools = http.get("/admin/placement").json()["pools"]
    found = next(g for pool in pools for g in pool["gateways"] if g["node"] == node)
    return found["role"], found["liveness"]


def test_degraded_links_fail_the_kernel_node_over_and_it_returns_as_the_standby(
    world: World, gre_world: GreWorld
) -> None:
    """Last (it moves the tunnel away): everything gw1 sends, on both its links, 1.5 s late (netem, which only a
    kernel node has). Its renewals cannot complete: the controller fails it, gw2 takes over, gw1's watchdog
    fences it; the links restored, gw1 comes back as the standby and takes nothing back."""
    lab = world.lab
    assert set(_placed(lab)) == {"gw1"}
    guest(lab, "; ".join(" ".join(faults.netem_command(device, delay_ms=1500)) for device in ("eth0", "eth1")))
    try:
        assert wait_for(lambda: set(_placed(lab)) == {"gw2"}, 30)
        assert wait_for(lambda: probe.ping(world.vm.netns, world.site.host_address, timeout=2), 60)
        # on gw2, a namespace node, the userspace GRE datapath carries the GRE connection
        assert wait_for(lambda: probe.ping(gre_world.vm.netns, gre_world.site.host_address, timeout=2), 30)
        # Fenced: it answers for nothing (a charon that a pass under way when the fence fell started again is
        # stopped by the agent's next pass, which the fence itself asks for).
        charons = lambda: guest(lab, "pgrep -c -x charon || true").strip()  # noqa: E731
        assert wait_for(lambda: charons() == "0", 20), guest(lab, "tail -n 40 /mnt/share/agent.log")
        log = guest(lab, f"cat {tor.run_dir(lab.topology.netns('gw1'))}/watchdog.log")
        assert "fenced: lease ending without a renewal" in log, log
    finally:
        guest(lab, "tc qdisc del dev eth0 root; tc qdisc del dev eth1 root")
    assert wait_for(lambda: _state(lab, "gw1") == ("standby", "Up"), 60)
    time.sleep(2)
    assert set(_placed(lab)) == {"gw2"}
    assert probe.ping(world.vm.netns, world.site.host_address, timeout=2)
