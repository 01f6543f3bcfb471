"""BGP with sites, end to end, for all three connection types: the compartment's bgpd peers with the site's own FRR
(over the GRE tunnel, on the L3 link, through the IPsec tunnel), the VNet's space is advertised, what the site
advertises becomes routes in every host carrying the VNet (its local network gateway declares no prefix at all),
a site flooding routes is capped, a killed bgpd is restarted, and a failover keeps the hosts' routes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from isthmus.lab import fabric, faults, probe, sites, vms
from isthmus.lab.gre_site import GreEnd
from isthmus.lab.sites import L3End, SiteBgp
from isthmus.lab.tenant import Tenant
from isthmus.linux.run import ip_json, list_netns, netns_pids
from tests.support import KEY, ON_PREMISES, gateway_tenant, site_conf, wait_for

API = {"api-version": "2026-03-01"}
MORE = "192.0.2.64/26"  # a second prefix each site advertises and no local network gateway declares


@dataclass
class BgpSide:
    tenant: Tenant
    vm: vms.Vm
    site: sites.Site
    asn: int


def _side(lab: fabric.LabState, kind: str, subscription: str, tag: str, asn: int) -> BgpSide:
    """A tenant whose gateway (ASN 65515) speaks BGP with one site of `kind`, which advertises ON_PREMISES and
    MORE: the local network gateway declares none of them (only the site's BGP peer)."""
    t, vm, vip = gateway_tenant(lab, subscription, tag, "h1")
    t.vpn_gateway("gw", "vnet1", "gw-pip", bgp_asn=65515)
    name = f"b{tag}"
    if kind == "l3":
        link = ("198.19.1.9", "198.19.1.10")
        t.local_gateway("site", "198.51.100.90", [], bgp=(asn, link[1]))
        site = sites.create(lab, name, link[1], ON_PREMISES, l3=L3End(f"{link[1]}/30", link[0], ()),
                            bgp=SiteBgp(asn, link[0], 65515, (MORE,)))  # fmt: skip
        t.l3_connection("to-site", "gw", "site", enable_bgp=True, localAddress=f"{link[0]}/30", nextHop=link[1])
    elif kind == "gre":
        inner = ("198.19.0.9", "198.19.0.10")
        t.local_gateway("site", "198.51.100.91", [], bgp=(asn, inner[1]))
        site = sites.create(lab, name, "198.51.100.91", ON_PREMISES, gre=GreEnd(vip, 9, False, f"{inner[1]}/30"),
                            bgp=SiteBgp(asn, inner[0], 65515, (MORE,)))  # fmt: skip
        t.gre_connection("to-site", "gw", "site", enable_bgp=True, key=9, tunnelAddress=f"{inner[0]}/30",
                         remoteTunnelAddress=inner[1])  # fmt: skip
    else:
        peer = t.get("virtualNetworkGateways/gw")["properties"]["bgpSettings"]["bgpPeeringAddress"]
        lan = "192.0.2.1"  # the site's router on its LAN: its BGP address, declared as the /32 Azure asks for
        t.local_gateway("site", "198.51.100.92", [f"{lan}/32"], bgp=(asn, lan))
        site = sites.create(lab, name, "198.51.100.92", ON_PREMISES,
                            site_conf("198.51.100.92", vip, KEY, local="0.0.0.0/0", remote="100.64.0.0/16"),
                            bgp=SiteBgp(asn, peer, 65515, (MORE,)))  # fmt: skip
        t.connection("to-site", "gw", "site", KEY, enableBgp=True)
    return BgpSide(t, vm, site, asn)


@pytest.fixture(scope="module")
def bgp(gateway_lab: fabric.LabState) -> Iterator[dict[str, BgpSide]]:
    out = {
        "l3": _side(gateway_lab, "l3", "00000000-0000-0000-0000-0000000000e1", "l", 65050),
        "gre": _side(gateway_lab, "gre", "00000000-0000-0000-0000-0000000000e2", "g", 4_200_000_001),
        "ipsec": _side(gateway_lab, "ipsec", "00000000-0000-0000-0000-0000000000e3", "i", 65052),
    }
    for side in out.values():
        assert side.tenant.wait_connection("to-site", timeout=30)["properties"]["connectionStatus"] == "Connected"
    yield out


def _post(t: Tenant, action: str, **params: str) -> list[dict[str, Any]]:
    """An action of the VNet gateway, as the SDK calls it (an LRO done at once: 200 with the result)."""
    done = t.http.post(t.id(f"virtualNetworkGateways/gw/{action}"), params={**API, **params})
    assert done.status_code == 200, done.text
    return list(done.json()["value"])


def _host_routes(lab: fabric.LabState, host: str) -> set[str]:
    """Every prefix the host's VNet routers route (all tenants' on that host)."""
    routers = [n for n in list_netns() if n.startswith(lab.topology.netns(f"{host}-vnet"))]
    return {r["dst"] for netns in routers for r in ip_json(netns, "route", "show")}


@pytest.mark.parametrize("kind", ["l3", "gre", "ipsec"])
def test_what_a_site_advertises_is_learned_and_routed_from_the_vms(bgp: dict[str, BgpSide], kind: str) -> None:
    side = bgp[kind]
    t = side.tenant

    def learned() -> set[str]:
        return {r["network"] for r in _post(t, "getLearnedRoutes") if r["origin"] == "EBgp"}

    assert wait_for(lambda: {ON_PREMISES, MORE} <= learned(), 30), _post(t, "getLearnedRoutes")
    assert wait_for(lambda: probe.ping(side.vm.netns, side.site.host_address), 15)
    with probe.server(side.site.host_netns, side.site.host_address, 7400) as at_site:
        assert probe.tcp_echo(side.vm.netns, side.site.host_address, 7400)
        assert len(at_site.peers) == 1
    [peer] = _post(t, "getBgpPeerStatus")
    assert peer["state"] == "Connected" and peer["asn"] == side.asn, peer
    advertised = _post(t, "getAdvertisedRoutes", peer=peer["neighbor"])
    assert "100.64.0.0/16" in {r["network"] for r in advertised}, advertised


def test_every_host_of_the_vnet_holds_the_learned_routes_and_no_other_tenant_sees_them(
    gateway_lab: fabric.LabState, bgp: dict[str, BgpSide]
) -> None:
    assert wait_for(lambda: {ON_PREMISES, MORE} <= _host_routes(gateway_lab, "h1"), 15)
    other = bgp["gre"].tenant
    answer = other.http.post(bgp["l3"].tenant.id("virtualNetworkGateways/gw/getLearnedRoutes"), params=API)
    assert answer.status_code in (403, 404), answer.text


def test_a_site_flooding_routes_is_capped_and_told(gateway_lab: fabric.LabState, bgp: dict[str, BgpSide]) -> None:
    """A second site on the L3 tenant's gateway advertises 200 /32s besides its own prefix: 150 are taken (by the
    gateway and every host: the first by address), the other 51 dropped and told in an event."""
    t = bgp["l3"].tenant
    link = ("198.19.1.13", "198.19.1.14")
    flood = tuple(f"100.100.0.{i}/32" for i in range(200))
    t.local_gateway("flood", "198.51.100.93", [], bgp=(65053, link[1]))
    sites.create(gateway_lab, "fl", link[1], "192.0.2.128/26", l3=L3End(f"{link[1]}/30", link[0], ()),
                 bgp=SiteBgp(65053, link[0], 65515, flood))  # fmt: skip
    try:
        t.l3_connection("flood", "gw", "flood", enable_bgp=True, localAddress=f"{link[0]}/30", nextHop=link[1])

        def taken() -> list[dict[str, Any]]:
            return [r for r in _post(t, "getLearnedRoutes") if r.get("sourcePeer") == link[1]]

        assert wait_for(lambda: len(taken()) == 150, 40), len(taken())
        in_host = lambda: [r for r in _host_routes(gateway_lab, "h1") if r.startswith("100.100.0.")]  # noqa: E731
        assert wait_for(lambda: len(in_host()) == 150, 15), len(in_host())
        time.sleep(1.0)
        assert len(taken()) == 150 and len(in_host()) == 150
        with gateway_lab.operator() as http:
            assert wait_for(lambda: "routes; 51 dropped" in http.get("/admin/events", params={"limit": 200}).text, 10)
    finally:
        t.delete("connections/flood")
        sites.delete(gateway_lab, "fl")
    assert wait_for(lambda: not in_host(), 15)


def test_a_killed_bgpd_is_restarted_and_the_routes_come_back(gateway_lab: fabric.LabState,
                                                             bgp: dict[str, BgpSide]) -> None:  # fmt: skip
    side = bgp["gre"]
    compartments = [n for n in list_netns() if "-gw" in n.removeprefix(gateway_lab.prefix) and _bgpd(n)]
    assert compartments
    before = {netns: _bgpd(netns) for netns in compartments}
    for pids in before.values():
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: all(_bgpd(n) and _bgpd(n) != pids for n, pids in before.items()), 15)
    assert wait_for(lambda: probe.ping(side.vm.netns, side.site.host_address), 30)
    with gateway_lab.operator() as http:
        assert wait_for(lambda: "bgpd" in http.get("/admin/events", params={"limit": 100}).text, 15)


def _bgpd(netns: str) -> list[int]:
    out = []
    for pid in netns_pids(netns):
        try:
            with open(f"/proc/{pid}/comm") as comm:
                if comm.read().strip() == "bgpd":
                    out.append(pid)
        except OSError:
            continue
    return out


def test_a_failover_keeps_the_hosts_routes(gateway_lab: fabric.LabState, bgp: dict[str, BgpSide]) -> None:
    """Last: kill -9 of the active node. Sampled every 50 ms, the hosts never lose a learned route; the standby's
    bgpd peers with every site again and the VMs reach them."""
    with gateway_lab.operator() as http:
        [before] = {p["node"] for p in http.get("/admin/placement").json()["placed"]}
    wanted = {ON_PREMISES, MORE}
    faults.kill_node(gateway_lab.topology.netns(before))
    lost = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        lost += not wanted <= _host_routes(gateway_lab, "h1")
        if all(probe.ping(s.vm.netns, s.site.host_address, timeout=0.3) for s in bgp.values()):
            break
        time.sleep(0.05)
    assert lost == 0
    for side in bgp.values():
        assert wait_for(lambda s=side: probe.ping(s.vm.netns, s.site.host_address), 20)  # type: ignore[misc]
        [peer] = _post(side.tenant, "getBgpPeerStatus")
        assert peer["state"] == "Connected"
    fabric.restart_agent(gateway_lab, before, log_level="info")
