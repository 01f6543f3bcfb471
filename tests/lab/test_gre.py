"""GRE connections through a gateway pool, end to end: tenants build a VPN gateway, a local network gateway and
a GRE connection through the API; each site's GRE endpoint is scapy's (lab/gre_site.py), which shares no code
with the gateway's userspace datapath, and tshark reads the wire between them. Real packets, real kernels."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from isthmus.lab import fabric, probe, sites, vms
from isthmus.lab.gre_site import GreEnd
from isthmus.lab.tenant import Tenant
from isthmus.linux.run import in_netns
from tests.support import ON_PREMISES, capture, gateway_tenant, tshark_fields, wait_for

SUB_A = "00000000-0000-0000-0000-0000000000a7"
SUB_B = "00000000-0000-0000-0000-0000000000b7"
KEY = 4242
API = {"api-version": "2026-03-01"}


@dataclass
class GreSide:
    tenant: Tenant
    vm: vms.Vm
    vip: str
    site: sites.Site


def _side(lab: fabric.LabState, subscription: str, tag: str, host: str, site_address: str, *, checksum: bool,
          tunnel: tuple[str, str] | None) -> GreSide:  # fmt: skip
    t, vm, vip = gateway_tenant(lab, subscription, tag, host)
    t.local_gateway("onprem", site_address, [ON_PREMISES])
    end = GreEnd(remote=vip, key=KEY, checksum=checksum, tunnel_address=f"{tunnel[1]}/30" if tunnel else None,
                 routes=("100.64.0.0/16",))  # fmt: skip
    site = sites.create(lab, f"g{tag}", site_address, ON_PREMISES, gre=end)
    settings: dict[str, object] = {"key": KEY, "checksum": checksum}
    if tunnel:
        settings |= {"tunnelAddress": f"{tunnel[0]}/30", "remoteTunnelAddress": tunnel[1]}
    t.gre_connection("to-onprem", "gw", "onprem", **settings)
    return GreSide(t, vm, vip, site)


@pytest.fixture(scope="module")
def gre(gateway_lab: fabric.LabState) -> Iterator[dict[str, GreSide]]:
    sides = {
        "a": _side(gateway_lab, SUB_A, "a", "h1", "198.51.100.41", checksum=False,
                   tunnel=("198.19.0.1", "198.19.0.2")),
        "b": _side(gateway_lab, SUB_B, "b", "h2", "198.51.100.42", checksum=True, tunnel=None),
    }  # fmt: skip
    for side in sides.values():
        doc = side.tenant.wait_connection("to-onprem", timeout=30)
        assert doc["properties"]["connectionStatus"] == "Connected", doc
    yield sides


def test_a_vm_and_its_on_premises_host_talk_over_gre_both_ways(gre: dict[str, GreSide]) -> None:
    for side in gre.values():
        on_prem = side.site.host_address
        assert wait_for(lambda s=side, h=on_prem: probe.ping(s.vm.netns, h), 10)  # type: ignore[misc]
        with probe.server(side.site.host_netns, on_prem, 7200):
            assert probe.tcp_echo(side.vm.netns, on_prem, 7200)
            assert probe.udp_echo(side.vm.netns, on_prem, 7200)
        with probe.server(side.vm.netns, side.vm.addresses[0], 7201):  # the site opens the flow
            assert probe.tcp_echo(side.site.host_netns, side.vm.addresses[0], 7201)


def test_the_tunnel_addresses_answer_across_the_tunnel(gre: dict[str, GreSide]) -> None:
    assert probe.ping(gre["a"].site.netns, "198.19.0.1")


def test_each_tenant_reaches_only_its_own_site(gre: dict[str, GreSide]) -> None:
    """Same VNet space, same on-premises prefix, the same key, the same gateway node: still two worlds."""
    a, b = gre["a"], gre["b"]
    assert a.vm.addresses == b.vm.addresses and a.site.host_address == b.site.host_address
    with probe.server(a.site.host_netns, a.site.host_address, 7202) as at_a, \
         probe.server(b.site.host_netns, b.site.host_address, 7202) as at_b:  # fmt: skip
        assert probe.tcp_echo(a.vm.netns, a.site.host_address, 7202)
        assert len(at_a.peers) == 1 and at_b.peers == []
        assert probe.tcp_echo(b.vm.netns, b.site.host_address, 7202)
        assert len(at_a.peers) == 1 and len(at_b.peers) == 1


def _capture(side: GreSide, tmp_path: Path) -> list[dict[str, str]]:
    """tshark's reading of the GRE packets between the site and the VIP while the VM pings the site's host."""
    pcap = capture(side.site.netns, f"host {side.vip}", tmp_path / f"{side.site.name}.pcap",
                   lambda: probe.ping(side.vm.netns, side.site.host_address, count=5))  # fmt: skip
    return tshark_fields(pcap, ["ip.proto", "ip.src", "gre.flags.version", "gre.flags.checksum", "gre.flags.key",
                                "gre.proto", "gre.key", "gre.checksum.status", "icmp.type"])  # fmt: skip


def test_the_wire_is_valid_keyed_gre_version_0(gre: dict[str, GreSide], tmp_path: Path) -> None:
    side = gre["a"]
    packets = _capture(side, tmp_path)
    assert len(packets) >= 10, packets  # five echo requests out, five replies in
    for p in packets:
        assert p["ip.proto"] == "47" and p["gre.flags.version"] == "0" and p["gre.proto"] == "0x0800", p
        assert p["gre.flags.key"] in ("True", "1") and int(p["gre.key"], 16) == KEY, p
        assert p["gre.flags.checksum"] in ("False", "0"), p
    assert {p["ip.src"] for p in packets} == {side.vip, side.site.address}


def test_checksums_when_asked_are_right_both_ways(gre: dict[str, GreSide], tmp_path: Path) -> None:
    side = gre["b"]
    packets = _capture(side, tmp_path)
    assert len(packets) >= 10, packets
    for p in packets:
        assert p["gre.flags.checksum"] in ("True", "1") and p["gre.checksum.status"] == "1", p  # 1: Good
    assert {p["ip.src"] for p in packets} == {side.vip, side.site.address}
    assert side.site.gre_stats["bad_checksum"] == 0 and side.site.gre_stats["received"] >= 5


def test_the_connection_reports_its_status_and_counters(gre: dict[str, GreSide]) -> None:
    a = gre["a"]
    assert probe.ping(a.vm.netns, a.site.host_address, count=3)

    def counted() -> bool:
        p = a.tenant.get("connections/to-onprem")["properties"]
        return p["ingressBytesTransferred"] > 0 and p["egressBytesTransferred"] > 0

    assert wait_for(counted, 10)
    props = a.tenant.get("connections/to-onprem")["properties"]
    assert props["connectionStatus"] == "Connected" and props["connectionType"] == "GRE"
    assert props["greSettings"] == {"key": KEY, "checksum": False, "tunnelAddress": "198.19.0.1/30",
                                    "remoteTunnelAddress": "198.19.0.2"}  # fmt: skip


def _error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["target"]


def test_bad_gre_settings_are_refused_naming_the_field_and_change_nothing(gre: dict[str, GreSide]) -> None:
    t = gre["a"].tenant
    t.local_gateway("onprem2", "198.51.100.41", ["192.0.2.64/26"])  # the same endpoint as to-onprem's

    def put(settings: dict[str, object]) -> httpx.Response:
        body = {"location": "local", "properties": {
            "connectionType": "GRE", "virtualNetworkGateway1": {"id": t.id("virtualNetworkGateways/gw")},
            "localNetworkGateway2": {"id": t.id("localNetworkGateways/onprem2")}, "greSettings": settings}}  # fmt: skip
        return t.http.put(t.id("connections/second"), params=API, json=body)

    assert _error(put({"key": KEY})) == (400, "GreKeyInUse", "properties.greSettings.key")
    assert "to-onprem" in put({"key": KEY}).json()["error"]["message"]
    assert _error(put({"key": 7, "tunnelAddress": "198.19.200.1/30"})) == (
        400, "InvalidTunnelAddress", "properties.greSettings.tunnelAddress")  # fmt: skip
    assert _error(put({"key": 7, "tunnelAddress": "198.19.0.2/31"})) == (
        400, "TunnelAddressOverlaps", "properties.greSettings.tunnelAddress")  # fmt: skip
    assert _error(put({"key": 7, "tunnelAddress": "198.19.0.5/30", "remoteTunnelAddress": "198.19.0.9"})) == (
        400, "InvalidTunnelAddress", "properties.greSettings.remoteTunnelAddress")  # fmt: skip
    assert t.http.get(t.id("connections/second"), params=API).status_code == 404
    assert put({"key": 7}).status_code in (200, 201)  # another key: a second tunnel between the same endpoints
    t.delete("connections/second")


def _datapath_pid(lab: fabric.LabState, side: GreSide) -> int | None:
    """The pid its supervisor recorded for the GRE datapath of `side`'s compartment (None: none, or mid-restart)."""
    for record in Path("/run/isthmus").glob(f"{lab.prefix}gw*/*/gre.supervisor.json"):
        try:
            if json.loads((record.parent / "gre.json").read_text())["local"] == side.vip:
                return int(json.loads(record.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):  # being rewritten by a restart
            continue
    return None


def test_a_killed_datapath_is_restarted_the_connection_recovers_and_an_event_says_so(
    gateway_lab: fabric.LabState, gre: dict[str, GreSide]
) -> None:
    a, b = gre["a"], gre["b"]
    before = _datapath_pid(gateway_lab, a)
    assert before is not None
    os.kill(before, signal.SIGKILL)
    assert wait_for(lambda: _datapath_pid(gateway_lab, a) not in (None, before), 15)
    assert wait_for(lambda: probe.ping(a.vm.netns, a.site.host_address, count=1, timeout=1), 15)
    assert probe.ping(b.vm.netns, b.site.host_address)  # the other compartment's datapath never stopped

    def recorded() -> bool:
        with gateway_lab.operator() as http:
            events = http.get("/admin/events", params={"limit": 200}).json()["value"]
        return any(e["kind"] == "daemon.restarted" and e["message"].startswith("gre ") for e in events)

    assert wait_for(recorded, 15)
    assert a.tenant.wait_connection("to-onprem", timeout=10)["properties"]["connectionStatus"] == "Connected"


def test_the_gateway_agent_serves_its_connections_metrics(
    gateway_lab: fabric.LabState, gre: dict[str, GreSide]
) -> None:
    """Scraped from the management network, as a Prometheus server there would."""
    import sys

    node = next(n for n in gateway_lab.topology.nodes() if n.name == "gw1")
    url = f"http://{node.management}:{fabric.METRICS_PORT}/metrics"
    code = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
    done = subprocess.run(in_netns(gateway_lab.topology.netns("ctl"), [sys.executable, "-c", code]),
                          capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    text = done.stdout
    assert 'isthmus_connection_up{connection="to-onprem",status="Connected"} 1.0' in text, text[:2000]
    assert 'isthmus_connection_bytes_total{connection="to-onprem",direction="in"}' in text
    assert 'isthmus_connection_packets_total{connection="to-onprem",direction="out"}' in text
    assert 'isthmus_agent_detail{name="compartments",node="gw1",role="gateway"}' in text
    assert "isthmus_gateway_lease_epoch{" in text
