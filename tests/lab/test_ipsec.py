"""Site-to-site IKEv2 through a gateway pool, end to end: tenants build a VPN gateway, a local network gateway
and a connection through the API; independent strongSwan sites (configured from the swanctl.conf written
below, by hand) sit on the internet segment with a host behind them. Real charons, real packets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from isthmus.lab import fabric, probe, sites
from isthmus.lab.tenant import rule
from isthmus.linux.run import in_netns, ip_json, list_netns
from isthmus.store import tokens
from isthmus.store.db import make_engine
from tests.support import KEY, ON_PREMISES, Side, capture, site_conf, vpn_side, wait_for

SUB_A = "00000000-0000-0000-0000-0000000000a1"
SUB_B = "00000000-0000-0000-0000-0000000000b1"
SUB_C = "00000000-0000-0000-0000-0000000000c1"


@pytest.fixture(scope="module")
def vpn(gateway_lab: fabric.LabState) -> Iterator[dict[str, Side]]:
    sides = {
        "a": vpn_side(gateway_lab, SUB_A, "a", "h1", "198.51.100.21"),
        "b": vpn_side(gateway_lab, SUB_B, "b", "h2", "198.51.100.22"),
    }
    for side in sides.values():
        doc = side.tenant.wait_connection("to-onprem", timeout=30)
        assert doc["properties"]["connectionStatus"] == "Connected", doc
    yield sides


def _compartments(lab: fabric.LabState) -> list[str]:
    return sorted(n for n in list_netns() if n.startswith(lab.topology.netns("gw1-gw")))


def test_a_vm_and_its_on_premises_host_talk_through_the_tunnel(vpn: dict[str, Side]) -> None:
    a = vpn["a"]
    on_prem = a.site.host_address
    assert wait_for(lambda: probe.ping(a.vm.netns, on_prem), 10)
    with probe.server(a.site.host_netns, on_prem, 7100):
        assert probe.tcp_echo(a.vm.netns, on_prem, 7100)
        assert probe.udp_echo(a.vm.netns, on_prem, 7100)
    with probe.server(a.vm.netns, a.vm.addresses[0], 7101):  # and the other way: the site opens the flow
        assert probe.tcp_echo(a.site.host_netns, a.vm.addresses[0], 7101)


def test_path_mtu_discovery_works_through_the_tunnel(vpn: dict[str, Side]) -> None:
    """A datagram too big for the tunnel is answered by the gateway's own VNet address, not a subnet gateway's
    (which the host's router holds too and would never deliver): TCP through the tunnel finds its MSS."""
    a = vpn["a"]
    config = a.tenant.get("virtualNetworkGateways/gw")["properties"]["ipConfigurations"][0]["properties"]
    ping = ["ping", "-c", "1", "-s", "1450", "-M", "do", "-W", "2", a.site.host_address]
    done = subprocess.run(in_netns(a.vm.netns, ping), capture_output=True, text=True, timeout=10)
    assert f"From {config['privateIPAddress']}" in done.stdout and "Frag needed" in done.stdout, done.stdout
    with probe.server(a.site.host_netns, a.site.host_address, 7103) as at_site:
        assert probe.tcp_echo(a.vm.netns, a.site.host_address, 7103)
        assert len(at_site.peers) == 1


def test_each_tenant_reaches_only_its_own_site(vpn: dict[str, Side]) -> None:
    """Same VNet space, same on-premises prefix, the same pool and gateway node: still two worlds."""
    a, b = vpn["a"], vpn["b"]
    assert a.vm.addresses == b.vm.addresses and a.site.host_address == b.site.host_address
    with probe.server(a.site.host_netns, a.site.host_address, 7102) as at_a, \
         probe.server(b.site.host_netns, b.site.host_address, 7102) as at_b:  # fmt: skip
        assert probe.tcp_echo(a.vm.netns, a.site.host_address, 7102)
        assert len(at_a.peers) == 1 and at_b.peers == []
        assert probe.tcp_echo(b.vm.netns, b.site.host_address, 7102)
        assert len(at_a.peers) == 1 and len(at_b.peers) == 1


def test_the_wire_between_site_and_vip_carries_only_esp_in_udp(vpn: dict[str, Side], tmp_path: Path) -> None:
    a = vpn["a"]
    pcap = capture(a.site.netns, f"host {a.vip}", tmp_path / "site.pcap",
                   lambda: probe.ping(a.vm.netns, a.site.host_address, count=5))  # fmt: skip

    def count(display_filter: str) -> int:
        done = subprocess.run(["tshark", "-r", str(pcap), "-Y", display_filter], capture_output=True, text=True,
                              timeout=30, check=True)  # fmt: skip
        return len(done.stdout.splitlines())

    assert count("esp && udp.port == 4500") >= 10  # five echo requests out, five replies in
    assert count("icmp") == 0 and count("!(udp.port == 4500 || udp.port == 500)") == 0


def test_the_connection_reports_its_status_counters_and_never_its_key(vpn: dict[str, Side]) -> None:
    """Both byte counters grow with what goes through, in inner packets: in, what came from the site (here
    the site's own pings), on libipsec's path as on XFRM's."""
    a = vpn["a"]

    def counters() -> tuple[int, int, int, int]:
        p = a.tenant.get("connections/to-onprem")["properties"]
        child = p["tunnelConnectionStatus"][0]
        return (p["ingressBytesTransferred"], p["egressBytesTransferred"], child["ingressBytesTransferred"],
                child["egressBytesTransferred"])  # fmt: skip

    before = counters()
    assert probe.ping(a.site.host_netns, a.vm.addresses[0], count=5)  # 5 x 84 B in from the site, 5 x 84 B back
    assert probe.ping(a.vm.netns, a.site.host_address, count=3)
    doc = a.tenant.get("connections/to-onprem")
    props = doc["properties"]

    def counted() -> bool:  # the connection's and its child SA's, both ways (reported with the 5 s heartbeat)
        return all(now - then >= 8 * 84 for now, then in zip(counters(), before, strict=True))

    assert wait_for(counted, 10)
    assert props["connectionStatus"] == "Connected" and props["lastConnectionEstablishedUtcTime"].endswith("Z")
    assert props["tunnelConnectionStatus"][0]["tunnel"] == f"100.64.0.0/16=={ON_PREMISES}"
    listing = a.tenant.http.get(a.tenant.id("connections"), params={"api-version": "2026-03-01"}).text
    assert KEY not in str(doc) and KEY not in listing
    key = a.tenant.http.get(a.tenant.id("connections/to-onprem/sharedkey"), params={"api-version": "2026-03-01"})
    assert key.json() == {"value": KEY}
    other = vpn["b"].tenant.http.get(a.tenant.id("connections/to-onprem/sharedkey"),
                                     params={"api-version": "2026-03-01"})  # fmt: skip
    assert other.status_code in (403, 404)


def test_a_wrong_key_is_not_connected_with_its_reason_without_a_storm_and_a_rotation_fixes_it(
    gateway_lab: fabric.LabState, vpn: dict[str, Side]
) -> None:
    """Then a site offering nothing the connection allows; then deleting removes everything it made. The
    other tenants' tunnels are untouched throughout."""
    untouched = sites.swanctl(vpn["a"].site, "--list-sas").split("\n")[0]  # its IKE SA: name, number, SPIs
    held = set(_compartments(gateway_lab))
    # This site initiates too, proposing narrower selectors than the connection's (one subnet, a /28).
    c = vpn_side(gateway_lab, SUB_C, "c", "h1", "198.51.100.23", secret="not-the-same-key", local="192.0.2.0/28",
              remote="100.64.1.0/24", start="start")  # fmt: skip
    try:
        compartment = wait_for(lambda: set(_compartments(gateway_lab)) - held, 15).pop()
        log = Path("/run/isthmus") / gateway_lab.topology.netns("gw1") / compartment / "charon.log"

        def reason() -> str:
            return str(c.tenant.get("connections/to-onprem")["properties"].get("connectionStatusReason", ""))

        assert wait_for(lambda: "authentication failed" in reason(), 20), reason()
        assert c.tenant.get("connections/to-onprem")["properties"]["connectionStatus"] == "NotConnected"
        tries = log.read_text().count("initiating IKE_SA")
        time.sleep(8)
        assert log.read_text().count("initiating IKE_SA") - tries <= 3  # backed off: 2 s, 4 s, 8 s, … 60 s
        # The site's key becomes the connection's: the tunnel is keyed again with it.
        put = c.tenant.http.put(c.tenant.id("connections/to-onprem/sharedkey"), params={"api-version": "2026-03-01"},
                                json={"value": "not-the-same-key"})  # fmt: skip
        assert put.status_code == 200
        connected = c.tenant.wait_connection("to-onprem", timeout=30)["properties"]
        assert connected["connectionStatus"] == "Connected"
        tunnels = [t["tunnel"] for t in connected["tunnelConnectionStatus"]]
        assert "100.64.1.0/24==192.0.2.0/28" in tunnels, tunnels  # narrowed to what the site asked for
        policy = {"saLifeTimeSeconds": 3600, "saDataSizeKilobytes": 102400000, "ipsecEncryption": "AES128",
                  "ipsecIntegrity": "SHA1", "ikeEncryption": "AES128", "ikeIntegrity": "SHA1",
                  "dhGroup": "DHGroup14", "pfsGroup": "None"}  # fmt: skip
        c.tenant.connection("to-onprem", "gw", "onprem", "not-the-same-key", ipsecPolicies=[policy])
        assert wait_for(lambda: "no proposal chosen" in reason(), 30), reason()
        assert c.tenant.get("connections/to-onprem")["properties"]["connectionStatus"] == "NotConnected"
        vni = compartment.rsplit("-gw", 1)[1]
        router = gateway_lab.topology.netns(f"h1-vnet{vni}")
        assert ON_PREMISES in [r.get("dst") for r in ip_json(router, "route", "show")]
        c.tenant.delete("connections/to-onprem")
        c.tenant.delete("virtualNetworkGateways/gw")
        assert wait_for(lambda: compartment not in _compartments(gateway_lab), 15)
        assert wait_for(lambda: ON_PREMISES not in [r.get("dst") for r in ip_json(router, "route", "show")], 10)
        node_routes = [r["dst"] for r in ip_json(gateway_lab.topology.netns("gw1"), "route", "show", "proto", "77")]
        assert c.vip not in node_routes and not (log.parent).exists()
        assert sites.swanctl(vpn["a"].site, "--list-sas").split("\n")[0] == untouched
    finally:  # whatever failed, the later tests find the pool as the fixture made it
        for leftover in ("connections/to-onprem", "virtualNetworkGateways/gw"):
            if c.tenant.http.get(c.tenant.id(leftover), params={"api-version": "2026-03-01"}).status_code == 200:
                c.tenant.delete(leftover)
        sites.delete(gateway_lab, "sc")


def test_charon_killed_is_restarted_and_the_tunnel_comes_back(gateway_lab: fabric.LabState,
                                                              vpn: dict[str, Side]) -> None:  # fmt: skip
    run = Path("/run/isthmus") / gateway_lab.topology.netns("gw1")
    pids = {d.name: int((d / "charon.pid").read_text()) for d in run.iterdir() if (d / "charon.pid").exists()}
    assert len(pids) == 2
    victim = sorted(pids)[0]
    os.kill(pids[victim], signal.SIGKILL)
    assert wait_for(lambda: (run / victim / "charon.pid").exists() and
                    (run / victim / "charon.pid").read_text().strip() not in ("", str(pids[victim])), 20)  # fmt: skip
    for side in vpn.values():
        assert side.tenant.wait_connection("to-onprem", timeout=30)["properties"]["connectionStatus"] == "Connected"
        assert wait_for(lambda s=side: probe.ping(s.vm.netns, s.site.host_address), 15)

    def restarted() -> bool:  # reported with the pass that restarted it: it may trail the first ping by a moment
        with gateway_lab.operator() as http:
            events = http.get("/admin/events", params={"scope": "admin", "limit": 500}).json()["value"]
        return any(e["kind"] == "daemon.restarted" and victim in e["message"] for e in events)

    assert wait_for(restarted, 15)


def test_the_vnets_nsg_applies_to_the_site_and_its_virtualnetwork_tag_covers_it(vpn: dict[str, Side]) -> None:
    """As Azure's: traffic from the site is VirtualNetwork traffic (AllowVnetInBound lets it in), and a rule
    on the tag filters it like any VNet source."""
    a = vpn["a"]
    vm = a.vm.addresses[0]
    a.tenant.nsg("guard", [rule("deny-vnet-7103", 100, "Deny", protocol="Tcp", ports="7103", source="VirtualNetwork")])
    a.tenant.vnet("vnet1", "100.64.0.0/16", {"front": "100.64.1.0/24", "GatewaySubnet": "100.64.255.0/27"},
                  nsg="guard")  # fmt: skip
    try:
        a.tenant.wait_succeeded("virtualNetworks/vnet1")
        with probe.server(a.vm.netns, vm, 7103), probe.server(a.vm.netns, vm, 7104):
            assert wait_for(lambda: not probe.tcp_open(a.site.host_netns, vm, 7103, 0.5), 10)
            assert probe.tcp_echo(a.site.host_netns, vm, 7104)
    finally:
        a.tenant.vnet("vnet1", "100.64.0.0/16", {"front": "100.64.1.0/24", "GatewaySubnet": "100.64.255.0/27"})


def test_lab_site_commands(gateway_lab: fabric.LabState, tmp_path: Path) -> None:
    conf = tmp_path / "swanctl.conf"
    conf.write_text(site_conf("198.51.100.30", "203.0.113.250", KEY))

    def isthmus(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "isthmus", "lab", "site", *args, "--workdir", gateway_lab.workdir],
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip

    made = isthmus("create", "t1", "--address", "198.51.100.30", "--prefix", "192.0.2.64/26", "--swanctl", str(conf))
    assert made.returncode == 0, made.stderr
    assert "192.0.2.74" in made.stdout
    assert "t1" in isthmus("list").stdout
    outside = isthmus("create", "t2", "--address", "203.0.113.9", "--prefix", "192.0.2.128/26", "--swanctl", str(conf))
    assert outside.returncode == 1 and "internet segment" in outside.stderr
    assert not [n for n in list_netns() if n.startswith(gateway_lab.topology.netns("site-t2"))]
    assert isthmus("delete", "t1").returncode == 0
    assert not [n for n in list_netns() if n.startswith(gateway_lab.topology.netns("site-t1"))]


def test_the_shared_key_is_in_no_log_and_no_other_nodes_document(gateway_lab: fabric.LabState,
                                                                    vpn: dict[str, Side]) -> None:  # fmt: skip
    """Only the carrying gateway's document and getSharedKey hold it; the sites' own swanctl.conf are theirs."""
    logs = [*Path(gateway_lab.workdir, "logs").glob("*.log"),
            *(Path("/run/isthmus") / gateway_lab.topology.netns("gw1")).glob("*/charon.log")]  # fmt: skip
    assert len(logs) > 5
    for path in logs:
        assert KEY not in path.read_text(errors="replace"), path
    engine = make_engine(gateway_lab.db)
    try:
        as_node = {node: tokens.create(engine, "node", node) for node in ("gw1", "gw2", "h1", "h2", "mux1")}
    finally:
        engine.dispose()
    with httpx.Client(base_url=gateway_lab.controller, verify=gateway_lab.ca) as http:
        for node, token in as_node.items():
            document = http.get(f"/v1/nodes/{node}/desired", headers={"Authorization": f"Bearer {token}"})
            assert document.status_code == 200, document.text
            assert (KEY in document.text) == (node == "gw1"), node  # the carrying node's alone
    with gateway_lab.operator() as http:
        events = http.get("/admin/events", params={"limit": 1000}).text
    assert KEY not in events
