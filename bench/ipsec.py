"""Benchmark of site-to-site IKEv2 through a gateway pool, on the lab (needs root).

N tenants (100 in the full run, 10 with --quick), each with a VNet, a VPN gateway on the lab's 2+1 pool, a
local network gateway and its own strongSwan site (configured from the swanctl.conf below, written here, not
by isthmus). Measured, all through the API and real packets:
  - tenants, all_connected_s: every tenant's connection PUT at once -> every one Connected
  - put_to_connected_ms_p50/_p95: one connection PUT -> Connected, one at a time   (target p50 <= 2,000 ms)
  - first_packet_ms: Connected (as the API first says it) -> the first datagram through the tunnel
  - tunnel_mbps, plain_mbps, tunnel_vs_plain_ratio: iperf3 TCP VM -> on-premises host through the tunnel (its
    gateway retiered to VpnGw2, 1 Gbit/s, so that the datapath is measured, not the tier),
    and VM -> the site's public address without it (the same host, ToR and site; no gateway, no ESP)
  - rekey_interruption_ms: the longest gap in a 10 ms UDP probe across a shared-key rotation (target <= 500)
Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import itertools
import socket
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from isthmus.lab import fabric, probe, sites, vms
from isthmus.lab.tenant import Tenant
from isthmus.lab.topology import Topology
from isthmus.linux.sockets import socket_in
from table import finish

PREFIX = "bip-"
ON_PREMISES = "192.0.2.0/26"
KEY = "Bench-Key-0"
ECHO_PORT = 7200

# Written here, not by isthmus (tests/lab/test_ipsec.py has its own): the sites must not depend on the code
# they measure, so the bench does not use vpndeviceconfigurationscript (the demo does).
SITE_CONF = """connections {{
  azure {{
    version = 2
    local_addrs = {me}
    remote_addrs = {vip}
    proposals = aes256-sha384-ecp384
    local {{
      auth = psk
      id = {me}
    }}
    remote {{
      auth = psk
      id = {vip}
    }}
    children {{
      azure {{
        local_ts = {prefix}
        remote_ts = 100.64.0.0/16
        esp_proposals = aes256gcm16-ecp384
      }}
    }}
  }}
}}
secrets {{
  ike-azure {{
    id-1 = {vip}
    id-2 = {me}
    secret = "{secret}"
  }}
}}
"""


def connect_all(sides: Sequence[Any], limit_s: float) -> dict[str, Any]:
    """PUT every side's connection at once, then poll their statuses: all_connected_s from the first PUT until
    every one is Connected, and not_connected, those that were not within `limit_s`."""
    first_put = time.monotonic()
    for side in sides:
        side.tenant.connection("to-onprem", "gw", "onprem", KEY)
    pending = {side.index: side for side in sides}
    deadline = time.monotonic() + limit_s
    while pending and time.monotonic() < deadline:
        for index, side in list(pending.items()):
            if side.status() == "Connected":
                del pending[index]
        time.sleep(0.05)
    return {"all_connected_s": round(time.monotonic() - first_put, 2), "not_connected": len(pending)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Side:
    """One tenant: its resources, its site, and (for some) a VM."""

    def __init__(self, lab: fabric.LabState, index: int, with_vm: bool) -> None:
        self.index = index
        self.tenant = Tenant(lab, f"00000000-0000-0000-0000-{0xB000 + index:012x}")
        t = self.tenant
        t.vnet("vnet1", "100.64.0.0/16", {"front": "100.64.1.0/24", "GatewaySubnet": "100.64.255.0/27"})
        self.vm: vms.Vm | None = None
        if with_vm:
            t.nic("vm1", "vnet1", "front")
            self.vm = vms.create(lab, f"t{index}vm", t.id("networkInterfaces/vm1"), "h1")
        self.vip = t.public_ip("gw-pip")
        t.vpn_gateway("gw", "vnet1", "gw-pip")
        self.address = f"198.51.100.{21 + index}"
        t.local_gateway("onprem", self.address, [ON_PREMISES])
        self.site = sites.create(lab, f"b{index}", self.address, ON_PREMISES, self.conf(KEY))

    def conf(self, secret: str) -> str:
        return SITE_CONF.format(me=self.address, vip=self.vip, prefix=ON_PREMISES, secret=secret)

    def status(self) -> str:
        return str(self.tenant.get("connections/to-onprem")["properties"]["connectionStatus"])


def first_datagram_s(netns: str, address: str, port: int, limit: float = 10.0) -> float:
    """Seconds until a datagram sent every millisecond is first echoed back."""
    sock = socket_in(netns, kind=socket.SOCK_DGRAM)
    sock.settimeout(0.001)
    started = time.monotonic()
    try:
        while time.monotonic() - started < limit:
            sock.sendto(b"first", (address, port))
            try:
                if sock.recv(16) == b"first":
                    return time.monotonic() - started
            except OSError:
                continue
        return limit
    finally:
        sock.close()


def longest_gap_ms(stream: probe.UdpStream, start: float, end: float) -> float:
    """The longest time without an answered datagram among those sent between `start` and `end`."""
    answered = sorted(t for seq, t in enumerate(stream.sent) if seq in stream.answered and start <= t <= end)
    times = [start, *answered, end]
    return round(max(b - a for a, b in itertools.pairwise(times)) * 1000, 1)


def run(quick: bool) -> dict[str, Any]:
    tenants = 10 if quick else 100
    samples = 5 if quick else 20
    seconds = 2.0 if quick else 5.0
    figures: dict[str, Any] = {"tenants": tenants}
    workdir = Path(tempfile.mkdtemp(prefix="isthmus-bench-ipsec-"))
    lab = fabric.up(workdir, Topology(PREFIX, hosts=1, muxes=1, gateways=3), log_level="warning")
    try:
        # A 2+1 pool with room for them all, also sold at VpnGw2's 1 Gbit/s: tenant 0 moves to it (in place) to
        # measure the datapath rather than the Standard tier's 100 Mbit/s.
        pool = {"type": "All", "redundantGatewayCount": 1, "tierBandwidthKbps": 100_000,
                "additionalTiersKbps": [1_000_000], "gatewayCapacityKbps": 100_000 * tenants + 1_000_000}  # fmt: skip
        with lab.operator() as http:
            http.put("/admin/gatewayPools/all", json={"properties": pool}).raise_for_status()
        started = time.monotonic()
        sides = [Side(lab, i, with_vm=i < samples) for i in range(tenants)]
        figures["setup_s"] = round(time.monotonic() - started, 1)

        # Every tenant's connection at once.
        figures.update(connect_all(sides, 60 if quick else 300))
        with lab.operator() as http:
            placed = http.get("/admin/placement").json()["placed"]
        figures["gateways_used"] = len({p["gateway"] for p in placed})

        # One at a time: delete a connection, then PUT it again and wait for Connected and the first packet.
        latencies, first_packets = [], []
        for side in sides[:samples]:
            assert side.vm is not None
            side.tenant.delete("connections/to-onprem")
            time.sleep(0.5)  # the gateway has unloaded it
            with probe.server(side.site.host_netns, side.site.host_address, ECHO_PORT):
                put = time.monotonic()
                side.tenant.connection("to-onprem", "gw", "onprem", KEY)
                done = side.tenant.wait_connection("to-onprem", timeout=30)
                connected = time.monotonic()
                if done["properties"]["connectionStatus"] != "Connected":
                    continue
                latencies.append((connected - put) * 1000)
                first_packets.append(first_datagram_s(side.vm.netns, side.site.host_address, ECHO_PORT) * 1000)
        figures["put_to_connected_ms_p50"] = round(statistics.median(latencies), 1) if latencies else None
        figures["put_to_connected_ms_p95"] = round(percentile(latencies, 0.95), 1) if latencies else None
        figures["first_packet_ms"] = round(statistics.median(first_packets), 1) if first_packets else None
        figures["samples"] = len(latencies)

        # Throughput through the tunnel and without it, tenant 0.
        zero = sides[0]
        assert zero.vm is not None
        zero.tenant.vpn_gateway("gw", "vnet1", "gw-pip", sku="VpnGw2")
        zero.tenant.wait_succeeded("connections/to-onprem")
        time.sleep(1.0)
        tunnel = probe.iperf_gbps(zero.site.host_netns, zero.site.host_address, zero.vm.netns, seconds)
        plain = probe.iperf_gbps(zero.site.netns, zero.site.address, zero.vm.netns, seconds)
        figures["tunnel_mbps"] = round(tunnel * 1000, 1)
        figures["plain_mbps"] = round(plain * 1000, 1)
        figures["tunnel_vs_plain_ratio"] = round(tunnel / plain, 3) if plain else None

        # A shared-key rotation under a 10 ms UDP probe: the site learns the new key, then the connection.
        with probe.server(zero.site.host_netns, zero.site.host_address, ECHO_PORT), \
             probe.UdpStream(zero.vm.netns, zero.site.host_address, ECHO_PORT, sources=1, interval=0.01,
                             limit=30) as stream:  # fmt: skip
            time.sleep(1.0)
            sites.load(zero.site, zero.conf("Bench-Key-1"))
            rotated = time.monotonic()
            key = zero.tenant.http.put(zero.tenant.id("connections/to-onprem/sharedkey"),
                                       params={"api-version": "2026-03-01"}, json={"value": "Bench-Key-1"})  # fmt: skip
            key.raise_for_status()
            time.sleep(4.0)
            figures["rekey_interruption_ms"] = longest_gap_ms(stream, rotated, time.monotonic() - 0.5)
        figures["connected_after_rekey"] = zero.status() == "Connected"
    finally:
        fabric.down(workdir, PREFIX)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 tenants, short runs: under a minute")
    args = parser.parse_args()
    figures = run(args.quick)

    def met(value: Any, limit: float) -> bool | None:
        return None if value is None else value <= limit

    rows = [
        (f"{figures['tenants']} tenants: PUTs -> all Connected", f"{figures['all_connected_s']} s "
         f"({figures['not_connected']} not connected, {figures['gateways_used']} gateways)", "-",
         figures["not_connected"] == 0),
        ("connection PUT -> Connected, p50", f"{figures['put_to_connected_ms_p50']} ms", "<= 2000 ms",
         met(figures["put_to_connected_ms_p50"], 2000)),
        ("connection PUT -> Connected, p95", f"{figures['put_to_connected_ms_p95']} ms ({figures['samples']} samples)",
         "-", None),
        ("Connected -> first datagram through", f"{figures['first_packet_ms']} ms", "-", None),
        ("iperf3 VM -> on-premises: tunnel / plain", f"{figures['tunnel_mbps']} / {figures['plain_mbps']} Mbit/s = "
         f"{figures['tunnel_vs_plain_ratio']}", "~150 Mbps", None),
        ("shared-key rotation: longest UDP gap (10 ms)", f"{figures['rekey_interruption_ms']} ms", "<= 500 ms",
         met(figures["rekey_interruption_ms"], 500)),
    ]  # fmt: skip
    finish(
        "\nisthmus IPsec benchmark" + (" (--quick)" if args.quick else "") + " (userspace ESP: kernel-libipsec)",
        rows,
        figures,
        (46, 48, 10),
    )


if __name__ == "__main__":
    main()
