"""L3 forwarding connections through a gateway pool, end to end: a tenant's VNet routed, without encapsulation,
to a provider router (FRR, on the lab's provider segment) on a link network, and the network behind it; the
standby takes the link over when the active dies, with the same MAC, announced at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from isthmus.lab import fabric, faults, probe, sites, vms
from isthmus.lab.sites import L3End
from isthmus.lab.tenant import Tenant
from isthmus.linux import l3
from isthmus.linux.run import ip_json, list_netns
from tests.support import ON_PREMISES, capture, gateway_tenant, tshark_fields, wait_for

SUB = "00000000-0000-0000-0000-0000000000c3"
LINK = ("198.19.1.1", "198.19.1.2")


@dataclass
class L3Side:
    tenant: Tenant
    vm: vms.Vm
    site: sites.Site
    connection_id: str


def _placed(lab: fabric.LabState) -> list[str]:
    with lab.operator() as http:
        return [p["node"] for p in http.get("/admin/placement").json()["placed"]]


@pytest.fixture(scope="module")
def side(gateway_lab: fabric.LabState) -> Iterator[L3Side]:
    t, vm, _vip = gateway_tenant(gateway_lab, SUB, "c", "h1")
    t.local_gateway("provider", "198.51.100.60", [ON_PREMISES])
    site = sites.create(gateway_lab, "p1", LINK[1], ON_PREMISES,
                        l3=L3End(f"{LINK[1]}/30", LINK[0], ("100.64.0.0/16",)))  # fmt: skip
    doc = t.l3_connection("to-provider", "gw", "provider", localAddress=f"{LINK[0]}/30", nextHop=LINK[1])
    connected = t.wait_connection("to-provider", timeout=30)
    assert connected["properties"]["connectionStatus"] == "Connected", connected
    yield L3Side(t, vm, site, doc["id"])


def test_a_vm_and_the_providers_network_talk_both_ways(side: L3Side) -> None:
    host = side.site.host_address
    assert wait_for(lambda: probe.ping(side.vm.netns, host), 10)
    with probe.server(side.site.host_netns, host, 7300):
        assert probe.tcp_echo(side.vm.netns, host, 7300)
        assert probe.udp_echo(side.vm.netns, host, 7300)
    with probe.server(side.vm.netns, side.vm.addresses[0], 7301):  # the provider's side opens the flow
        assert probe.tcp_echo(side.site.host_netns, side.vm.addresses[0], 7301)


def test_the_link_carries_the_vnets_own_packets_unencapsulated(side: L3Side, tmp_path: Path) -> None:
    pcap = capture(side.site.netns, "icmp", tmp_path / "link.pcap",
                   lambda: probe.ping(side.vm.netns, side.site.host_address, count=5))  # fmt: skip
    packets = [[p["eth.src"], p["ip.src"], p["ip.dst"]] for p in tshark_fields(pcap, ["eth.src", "ip.src", "ip.dst"])]
    assert len(packets) >= 10, packets
    vm, host = side.vm.addresses[0], side.site.host_address
    assert {(p[1], p[2]) for p in packets} == {(vm, host), (host, vm)}  # the VNet's addresses, not a tunnel's
    assert {p[0] for p in packets if p[1] == vm} == {l3.link_mac(side.connection_id)}


def test_the_connection_reports_its_counters(side: L3Side) -> None:
    assert probe.ping(side.vm.netns, side.site.host_address, count=3)

    def counted() -> bool:
        p = side.tenant.get("connections/to-provider")["properties"]
        return p["ingressBytesTransferred"] > 0 and p["egressBytesTransferred"] > 0

    assert wait_for(counted, 10)


def test_a_vlan_on_a_node_without_8021q_is_failed_with_the_reason(side: L3Side) -> None:
    t = side.tenant
    t.local_gateway("provider2", "198.51.100.61", ["192.0.2.128/26"])
    t.l3_connection("vlan", "gw", "provider2", localAddress="198.19.1.5/30", nextHop="198.19.1.6", vlanId=30)

    def failed() -> bool:
        return t.get("connections/vlan")["properties"]["provisioningState"] == "Failed"

    try:
        assert wait_for(failed, 15)
    finally:
        t.delete("connections/vlan")
    assert wait_for(lambda: t.get("connections/to-provider")["properties"]["provisioningState"] == "Succeeded", 15)
    assert wait_for(lambda: probe.ping(side.vm.netns, side.site.host_address), 10)


def _ifindex(lab: fabric.LabState, connection_id: str) -> int | None:
    for netns in list_netns():
        if netns.startswith(lab.topology.netns("gw")) and "-gw" in netns.removeprefix(lab.prefix):
            found = [link for link in ip_json(netns, "link", "show") if link["ifname"] == l3.device_name(connection_id)]
            if found:
                return int(found[0]["ifindex"])
    return None


def test_the_tier_holds_both_ways_and_a_new_sku_applies_in_place(gateway_lab: fabric.LabState, side: L3Side) -> None:
    """Standard is sold at 100 Mbit/s; the pool also sells HighPerformance's 200: the SKU changed on the live
    connection, the same link (the same device) carries it at the new tier."""
    host = side.site.host_address
    up = probe.iperf_gbps(side.site.host_netns, host, side.vm.netns, 3.0, port=7310) * 1000
    down = probe.iperf_gbps(side.vm.netns, side.vm.addresses[0], side.site.host_netns, 3.0, port=7311) * 1000
    assert 60 < up < 110 and 60 < down < 110, (up, down)
    before = _ifindex(gateway_lab, side.connection_id)
    with gateway_lab.operator() as http:
        pool = http.get("/admin/gatewayPools/all").json()["properties"]
        changed = http.put("/admin/gatewayPools/all", json={"properties": {**pool, "additionalTiersKbps": [200_000]}})
        assert changed.status_code == 200, changed.text
    side.tenant.vpn_gateway("gw", "vnet1", "gw-pip", sku="HighPerformance")
    assert wait_for(lambda: side.tenant.get("connections/to-provider")["properties"]["provisioningState"]
                    == "Succeeded", 15)  # fmt: skip
    time.sleep(1.0)
    faster = probe.iperf_gbps(side.site.host_netns, host, side.vm.netns, 3.0, port=7312) * 1000
    assert 130 < faster < 220, faster
    assert _ifindex(gateway_lab, side.connection_id) == before  # not made anew: nothing reconnected
    assert side.tenant.get("connections/to-provider")["properties"]["shapingDroppedPackets"] >= 0


def test_the_standby_takes_the_link_over_with_the_same_mac(gateway_lab: fabric.LabState, side: L3Side) -> None:
    """Last: it moves the connection. kill -9 of the active node; the standby's compartment announces the link's
    MAC, so the provider router's ARP entry stays right and traffic resumes."""
    [before] = set(_placed(gateway_lab))
    faults.kill_node(gateway_lab.topology.netns(before))
    assert wait_for(lambda: set(_placed(gateway_lab)) - {before}, 15)
    assert wait_for(lambda: probe.ping(side.vm.netns, side.site.host_address), 15)
    neighbours = ip_json(side.site.netns, "neigh", "show", LINK[0])
    assert [n.get("lladdr") for n in neighbours] == [l3.link_mac(side.connection_id)], neighbours
    fabric.restart_agent(gateway_lab, before, log_level="info")
