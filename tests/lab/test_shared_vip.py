"""One public IP for all pools, end to end: two pools (Standard on gw1+gw2, HighPerformance on gw3+gw4) share one
address; four tenants with the same VNet space connect through it: IPsec from two sites, GRE from one site
address with two keys (to two tenants in two pools). The MUX steers each site's packets to the node carrying
its connection, the node into the compartment; a failover of one pool's active moves only its tenants' steering
while the other pool's tenants' traffic flows on. Real charons, a scapy GRE site, real packets."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_address

import pytest

from isthmus.lab import fabric, faults, probe, sites, vms
from isthmus.lab.gre_site import GreEnd
from isthmus.lab.tenant import Tenant
from isthmus.linux.run import in_netns
from tests.lab.conftest import _lab
from tests.support import KEY, ON_PREMISES, site_conf, wait_for

SUBS = {tag: f"00000000-0000-0000-0000-0000000000{tag}9" for tag in ("a", "b", "c", "d")}
GRE_SITE = "198.51.100.43"
SKU = {"a": "Standard", "b": "HighPerformance", "c": "Standard", "d": "HighPerformance"}


@dataclass
class Side:
    tenant: Tenant
    vm: vms.Vm
    site: sites.Site | None


@dataclass
class World:
    lab: fabric.LabState
    shared: str
    sides: dict[str, Side]


@pytest.fixture(scope="module")
def shared_lab(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[fabric.LabState]:
    yield from _lab(tmp_path_factory, request, gateways=4)


def _pools(lab: fabric.LabState) -> str:
    """Pool all (gw1, gw2) shares an allocated address; pool hp (gw3, gw4), a tier above, names the same."""
    with lab.operator() as http:
        props = http.get("/admin/gatewayPools/all").json()["properties"]
        made = http.put(
            "/admin/gatewayPools/all",
            json={
                "properties": {
                    **{k: v for k, v in props.items() if k != "provisioningState"},
                    "publicIpAllocationMethod": "Dynamic",
                }
            },
        )
        assert made.status_code == 200, made.text
        shared: str = made.json()["properties"]["publicIpAddress"]
        hp = {"type": "All", "redundantGatewayCount": 1, "gatewayCapacityKbps": 1_000_000, "tierBandwidthKbps": 200_000,
              "publicIpAddress": shared}  # fmt: skip
        assert http.put("/admin/gatewayPools/hp", json={"properties": hp}).status_code == 201
        for gateway in ("gw3", "gw4"):
            moved = http.put(f"/admin/gateways/{gateway}", json={"properties": {"node": gateway, "pool": "hp"}})
            assert moved.status_code == 200, moved.text
    return shared


def _tenant(lab: fabric.LabState, tag: str, host: str) -> tuple[Tenant, vms.Vm]:
    t = Tenant(lab, SUBS[tag])
    t.vnet("vnet1", "100.64.0.0/16", {"front": "100.64.1.0/24", "GatewaySubnet": "100.64.255.0/27"})
    t.nic(f"{tag}1", "vnet1", "front")
    vm = vms.create(lab, f"{tag}1", t.id(f"networkInterfaces/{tag}1"), host)
    t.public_ip("gw-pip")
    t.vpn_gateway("gw", "vnet1", "gw-pip", sku=SKU[tag])
    return t, vm


@pytest.fixture(scope="module")
def world(shared_lab: fabric.LabState) -> World:
    lab = shared_lab
    shared = _pools(lab)
    sides = {}
    for tag, host, address in (("a", "h1", "198.51.100.21"), ("b", "h2", "198.51.100.22")):
        t, vm = _tenant(lab, tag, host)
        t.local_gateway("onprem", address, [ON_PREMISES])
        site = sites.create(lab, f"v{tag}", address, ON_PREMISES, site_conf(address, shared, KEY))
        t.connection("to-onprem", "gw", "onprem", KEY)
        sides[tag] = Side(t, vm, site)
    t, vm = _tenant(lab, "c", "h1")  # GRE, key 11, with the scapy site at GRE_SITE
    t.local_gateway("onprem", GRE_SITE, [ON_PREMISES])
    end = GreEnd(remote=shared, key=11, tunnel_address="198.19.0.2/30", routes=("100.64.0.0/16",))
    site = sites.create(lab, "gc", GRE_SITE, ON_PREMISES, gre=end)
    t.gre_connection("to-onprem", "gw", "onprem", key=11, tunnelAddress="198.19.0.1/30",
                     remoteTunnelAddress="198.19.0.2")  # fmt: skip
    sides["c"] = Side(t, vm, site)
    t, vm = _tenant(lab, "d", "h2")  # GRE from the same site address, key 12: packets injected below
    t.local_gateway("onprem", GRE_SITE, ["192.0.2.64/26"])
    t.gre_connection("to-onprem", "gw", "onprem", key=12, tunnelAddress="198.19.0.5/30",
                     remoteTunnelAddress="198.19.0.6")  # fmt: skip
    sides["d"] = Side(t, vm, None)
    for tag, side in sides.items():
        doc = side.tenant.wait_connection("to-onprem", timeout=40)
        assert doc["properties"]["connectionStatus"] == "Connected", (tag, doc)
    return World(lab, shared, sides)


def _placed(lab: fabric.LabState) -> dict[str, str]:
    """Subscription tag -> the gateway node carrying its VNet gateway."""
    with lab.operator() as http:
        placed = http.get("/admin/placement").json()["placed"]
    by_sub = {sub.lower(): tag for tag, sub in SUBS.items()}
    return {by_sub[p["virtualNetworkGateway"].split("/")[2].lower()]: p["node"] for p in placed}


def _mux_steering(lab: fabric.LabState) -> dict[str, int]:
    """The MUX's steering maps as `site . vip[ . key]` -> mark."""
    out = {}
    for table in ("ike", "gre", "grenokey"):
        command = ["nft", "list", "map", "ip", "isthmus_steer", table]
        listed = subprocess.run(in_netns(lab.topology.netns("mux1"), command), capture_output=True, text=True,
                                check=True).stdout  # fmt: skip
        for site, vip, key, mark in re.findall(r"([0-9.]+) \. ([0-9.]+)(?: \. (0x[0-9a-f]+))? : (0x[0-9a-f]+)", listed):
            out[f"{table} {site} . {vip}" + (f" . {int(key, 16)}" if key else "")] = int(mark, 16)
    return out


def _mark(lab: fabric.LabState, node: str) -> int:
    return int(ip_address(next(n.underlay for n in lab.topology.nodes() if n.name == node)))


def test_tenants_are_told_the_shared_address(world: World) -> None:
    for side in world.sides.values():
        gateway = side.tenant.get("virtualNetworkGateways/gw")
        [peering] = gateway["properties"]["bgpSettings"]["bgpPeeringAddresses"]
        assert peering["tunnelIpAddresses"] == [world.shared]


def test_each_site_reaches_only_its_own_vnet(world: World) -> None:
    """Four tenants, one VNet space and one public address: each VM reaches its own site's host, and a
    connection to a site reaches that site only."""
    a, b, c = (world.sides[t] for t in "abc")
    for side in (a, b, c):
        assert side.site is not None
        assert wait_for(lambda s=side: probe.ping(s.vm.netns, s.site.host_address), 15)  # type: ignore[union-attr,misc]
    assert a.site and b.site and c.site
    assert a.vm.addresses == b.vm.addresses == c.vm.addresses and a.site.host_address == b.site.host_address
    with probe.server(a.site.host_netns, a.site.host_address, 7300) as at_a, \
         probe.server(b.site.host_netns, b.site.host_address, 7300) as at_b, \
         probe.server(c.site.host_netns, c.site.host_address, 7300) as at_c:  # fmt: skip
        assert probe.tcp_echo(b.vm.netns, b.site.host_address, 7300)
        assert at_a.peers == [] and len(at_b.peers) == 1 and at_c.peers == []
        assert probe.tcp_echo(c.vm.netns, c.site.host_address, 7300)
        assert at_a.peers == [] and len(at_c.peers) == 1
        with probe.server(a.vm.netns, a.vm.addresses[0], 7301):  # a site opens a flow to its own VNet's VM
            assert probe.tcp_echo(a.site.host_netns, a.vm.addresses[0], 7301)


def test_the_mux_steers_each_site_to_the_node_carrying_it(world: World) -> None:
    placed = _placed(world.lab)
    steering = _mux_steering(world.lab)
    vip = world.shared
    assert steering == {
        f"ike 198.51.100.21 . {vip}": _mark(world.lab, placed["a"]),
        f"ike 198.51.100.22 . {vip}": _mark(world.lab, placed["b"]),
        f"gre {GRE_SITE} . {vip} . 11": _mark(world.lab, placed["c"]),
        f"gre {GRE_SITE} . {vip} . 12": _mark(world.lab, placed["d"]),
    }
    assert placed["a"] in ("gw1", "gw2") and placed["b"] in ("gw3", "gw4")


def _gre_echo(site_netns: str, site: str, vip: str, key: int, inner_dst: str, inner_src: str) -> str | None:
    """From the GRE site's namespace: an echo request to `inner_dst` in GRE with `key`; the source of the echo
    reply that comes back in GRE with the same key (None if none within 3 s)."""
    script = f"""
import socket, sys
from scapy.layers.inet import IP, ICMP
from scapy.layers.l2 import GRE
rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47); rx.bind(("{site}", 0)); rx.settimeout(0.5)
tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
inner = IP(src="{inner_src}", dst="{inner_dst}") / ICMP(id=77)
probe = IP(src="{site}", dst="{vip}", proto=47) / GRE(key_present=1, key={key}, proto=0x0800) / inner
import time
end = time.monotonic() + 3
while time.monotonic() < end:
    tx.sendto(bytes(probe), ("{vip}", 0))
    try:
        data, _ = rx.recvfrom(65536)
    except socket.timeout:
        continue
    packet = IP(data)
    gre = packet[GRE] if GRE in packet else None
    if gre is not None and gre.key_present and gre.key == {key} and ICMP in gre and gre[ICMP].type == 0:
        print(gre[IP].src); sys.exit(0)
sys.exit(1)
"""
    done = subprocess.run(in_netns(site_netns, [sys.executable, "-c", script]), capture_output=True, text=True,
                          timeout=20)  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    return done.stdout.strip() or None


def test_gre_keys_steer_one_site_address_to_two_tenants(world: World) -> None:
    c = world.sides["c"]
    assert c.site is not None
    # key 12 reaches tenant d's compartment (its tunnel address answers), in the other pool's node
    assert _gre_echo(c.site.netns, GRE_SITE, world.shared, 12, "198.19.0.5", "198.19.0.6") == "198.19.0.5"
    # key 11 reaches tenant c's, not d's: d's tunnel address is not answered with key 11
    assert _gre_echo(c.site.netns, GRE_SITE, world.shared, 11, "198.19.0.1", "198.19.0.2") == "198.19.0.1"
    assert _gre_echo(c.site.netns, GRE_SITE, world.shared, 11, "198.19.0.5", "198.19.0.2") is None
    assert _gre_echo(c.site.netns, GRE_SITE, world.shared, 13, "198.19.0.5", "198.19.0.6") is None  # no such key


def test_nothing_else_reaches_the_shared_address(world: World) -> None:
    """An internet host with no connection gets nothing from the shared address (dropped at the MUX)."""
    sock_script = (
        f"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1); "
        f"s.sendto(b'x'*64, ('{world.shared}', 500))\ntry:\n s.recvfrom(100); print('answered')\nexcept OSError: pass"
    )
    inet = world.lab.topology.netns("inet")
    done = subprocess.run(in_netns(inet, [sys.executable, "-c", sock_script]), capture_output=True, text=True,
                          timeout=10)  # fmt: skip
    assert "answered" not in done.stdout
    assert not probe.ping(inet, world.shared, timeout=1)


def test_a_failover_moves_only_its_tenants_steering(world: World) -> None:
    """Last: kill -9 of the node carrying tenant a (and c). Their steering moves to the standby of their pool;
    b's and d's entries do not change, and b's traffic (ping every 20 ms) loses nothing meanwhile."""
    lab = world.lab
    placed = _placed(lab)
    before = _mux_steering(lab)
    victim = placed["a"]
    b = world.sides["b"]
    assert b.site is not None and placed["b"] != victim
    lost, sent, stop = [0], [0], threading.Event()

    def ping_b() -> None:
        while not stop.is_set():
            sent[0] += 1
            lost[0] += not probe.ping(b.vm.netns, b.site.host_address, timeout=0.5)  # type: ignore[union-attr]
            time.sleep(0.02)

    pinger = threading.Thread(target=ping_b, daemon=True)
    pinger.start()
    try:
        time.sleep(0.5)
        faults.kill_node(lab.topology.netns(victim))
        a = world.sides["a"]
        assert wait_for(lambda: probe.ping(a.vm.netns, a.site.host_address, timeout=0.5), 30)  # type: ignore[union-attr]
        time.sleep(0.5)
    finally:
        stop.set()
        pinger.join(timeout=5)
    after = _mux_steering(lab)
    moved = {k for k in before if before[k] != after.get(k)}
    assert moved == {k for k, mark in before.items() if mark == _mark(lab, victim)}
    assert len(moved) == 2 and all(after[k] == _mark(lab, _placed(lab)["a"]) for k in moved)
    assert lost[0] == 0, f"tenant b lost {lost[0]} of {sent[0]} pings during another pool's failover"
    c = world.sides["c"]
    assert wait_for(lambda: probe.ping(c.vm.netns, c.site.host_address, timeout=0.5), 20)  # type: ignore[union-attr]
    fabric.restart_agent(lab, victim, log_level="info")
