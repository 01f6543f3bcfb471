"""Benchmark of one public IP for all pools, on the lab (needs root).

Two gateway pools share one public IP: "all" (Standard tier, gw1 active + gw2 standby) and "hp"
(HighPerformance, gw3 + gw4). N tenants (100 in the full run, 10 with --quick), alternately Standard and
HighPerformance (so half in each pool), each with a VNet, a VPN gateway, a local network gateway and its own
strongSwan site at its own address, configured (here, by hand) to peer with the one shared address. Measured:
  - tenants, all_connected_s: every tenant's connection PUT at once -> every one Connected, all on one address
  - failover_moved_only_own: kill -9 of pool all's active node -> the MUX's steering entries of exactly that
    node's tenants move (to the standby), every other entry stays as it was, and no tenant of the other pool
    leaves Connected meanwhile (its status sampled every 0.2 s); failover_first_ping_s: kill -> tenant 0's VM
    reaches its site again; failover_reconnected_s: kill -> every moved tenant's entry moved on the MUX and
    Connected; other_pool_lost_pings: a tenant of pool hp pinging its site every 20 ms meanwhile
  - steering_entries, steering_apply_ms: what the MUX agent applied, and what one steering change cost it
Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from ipaddress import ip_address
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ipsec import KEY, ON_PREMISES, SITE_CONF, connect_all  # the IPsec benchmark's site and its wait
from isthmus.lab import fabric, faults, probe, sites, vms
from isthmus.lab.tenant import Tenant
from isthmus.lab.topology import Topology
from isthmus.linux.run import in_netns
from table import finish

PREFIX = "bsv-"


class Side:
    def __init__(self, lab: fabric.LabState, index: int, shared: str, with_vm: bool) -> None:
        self.index = index
        self.sku = "Standard" if index % 2 == 0 else "HighPerformance"
        self.tenant = t = Tenant(lab, f"00000000-0000-0000-0000-{0xC000 + index:012x}")
        t.vnet("vnet1", "100.64.0.0/16", {"front": "100.64.1.0/24", "GatewaySubnet": "100.64.255.0/27"})
        self.vm: vms.Vm | None = None
        if with_vm:
            t.nic("vm1", "vnet1", "front")
            self.vm = vms.create(lab, f"s{index}vm", t.id("networkInterfaces/vm1"), "h1")
        t.public_ip("gw-pip")
        t.vpn_gateway("gw", "vnet1", "gw-pip", sku=self.sku)
        self.address = f"198.51.100.{21 + index}"
        t.local_gateway("onprem", self.address, [ON_PREMISES])
        conf = SITE_CONF.format(me=self.address, vip=shared, prefix=ON_PREMISES, secret=KEY)
        self.site = sites.create(lab, f"v{index}", self.address, ON_PREMISES, conf)

    def status(self) -> str:
        return str(self.tenant.get("connections/to-onprem")["properties"]["connectionStatus"])


def mux_steering(lab: fabric.LabState) -> dict[str, int]:
    """The MUX's IKE steering map: `site . shared address` -> mark (the gateway node's address)."""
    command = ["nft", "list", "map", "ip", "isthmus_steer", "ike"]
    listed = subprocess.run(in_netns(lab.topology.netns("mux1"), command), capture_output=True, text=True,
                            check=True).stdout  # fmt: skip
    return {f"{s} . {v}": int(m, 16) for s, v, m in re.findall(r"([0-9.]+) \. ([0-9.]+) : (0x[0-9a-f]+)", listed)}


def mux_details(lab: fabric.LabState) -> dict[str, Any]:
    with lab.operator() as http:
        nodes = http.get("/admin/nodes").json()["value"]
    mux = next(n for n in nodes if n["name"] == "mux1")
    return dict(mux["status"].get("details", {}))


def run(quick: bool) -> dict[str, Any]:
    tenants = 10 if quick else 100
    figures: dict[str, Any] = {"tenants": tenants}
    workdir = Path(tempfile.mkdtemp(prefix="isthmus-bench-shared-vip-"))
    lab = fabric.up(workdir, Topology(PREFIX, hosts=1, muxes=1, gateways=4), log_level="warning")
    try:
        half = (tenants + 1) // 2
        with lab.operator() as http:
            pool_all = {"type": "All", "redundantGatewayCount": 1, "tierBandwidthKbps": 100_000,
                        "gatewayCapacityKbps": 100_000 * half, "publicIpAllocationMethod": "Dynamic"}  # fmt: skip
            made = http.put("/admin/gatewayPools/all", json={"properties": pool_all})
            if made.status_code >= 300:
                raise SystemExit(f"PUT /admin/gatewayPools/all: {made.text}")
            shared = made.json()["properties"]["publicIpAddress"]
            pool_hp = {"type": "All", "redundantGatewayCount": 1, "tierBandwidthKbps": 200_000,
                       "gatewayCapacityKbps": 200_000 * half, "publicIpAddress": shared}  # fmt: skip
            http.put("/admin/gatewayPools/hp", json={"properties": pool_hp}).raise_for_status()
            for gateway in ("gw3", "gw4"):
                http.put(f"/admin/gateways/{gateway}", json={"properties": {"node": gateway, "pool": "hp"}}
                         ).raise_for_status()  # fmt: skip
        figures["shared_address"] = shared
        started = time.monotonic()
        sides = [Side(lab, i, shared, with_vm=i < 2) for i in range(tenants)]
        figures["setup_s"] = round(time.monotonic() - started, 1)

        figures.update(connect_all(sides, 60 if quick else 300))
        with lab.operator() as http:
            placed = http.get("/admin/placement").json()["placed"]
        figures["gateways_used"] = sorted({p["node"] for p in placed})
        details = mux_details(lab)
        figures["steering_entries"] = details.get("steering")

        # The failover of pool all's active, under watch: the steering map, the other pool's statuses, a ping.
        node_of = {p["virtualNetworkGateway"].split("/")[2].lower(): p["node"] for p in placed}
        victim = node_of[sides[0].tenant.subscription.lower()]
        mark = {n.name: int(ip_address(n.underlay)) for n in lab.topology.nodes()}
        before = mux_steering(lab)
        own = {k for k, m in before.items() if m == mark[victim]}
        others = [s for s in sides if node_of[s.tenant.subscription.lower()] != victim]
        left_connected: list[int] = []
        lost, sent, stop = [0], [0], threading.Event()
        watched = sides[1]
        assert watched.vm is not None and watched in others

        def watch() -> None:
            while not stop.is_set():
                left_connected.extend(s.index for s in others if s.status() != "Connected")
                time.sleep(0.2)

        def ping() -> None:
            assert watched.vm is not None
            while not stop.is_set():
                sent[0] += 1
                lost[0] += not probe.ping(watched.vm.netns, watched.site.host_address, timeout=0.5)
                time.sleep(0.02)

        threads = [threading.Thread(target=f, daemon=True) for f in (watch, ping)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        killed = time.monotonic()
        faults.kill_node(lab.topology.netns(victim))
        moved = [s for s in sides if s not in others]
        zero = sides[0]
        assert zero.vm is not None and zero in moved
        while time.monotonic() - killed < 60 and not probe.ping(zero.vm.netns, zero.site.host_address, timeout=0.2):
            pass
        figures["failover_first_ping_s"] = round(time.monotonic() - killed, 2)
        while time.monotonic() - killed < 60 and (
            any(mux_steering(lab).get(k) == mark[victim] for k in own) or any(s.status() != "Connected" for s in moved)
        ):
            time.sleep(0.1)
        figures["failover_reconnected_s"] = round(time.monotonic() - killed, 2)
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        after = mux_steering(lab)
        changed = {k for k in before if before[k] != after.get(k)} | (set(after) - set(before))
        figures["steering_moved"] = len(changed)
        figures["other_pool_left_connected"] = len(set(left_connected))
        figures["other_pool_lost_pings"] = f"{lost[0]}/{sent[0]}"
        figures["failover_moved_only_own"] = changed == own and not left_connected and lost[0] == 0
        figures["steering_apply_ms"] = mux_details(lab).get("lastSteering", {}).get("ms")
        fabric.restart_agent(lab, victim, log_level="warning")
    finally:
        fabric.down(workdir, PREFIX)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 tenants (the full run: 100): under a minute")
    args = parser.parse_args()
    figures = run(args.quick)
    rows = [
        (f"{figures['tenants']} tenants on one public IP, 2 pools", f"{figures['all_connected_s']} s "
         f"({figures['not_connected']} not connected; nodes {','.join(figures['gateways_used'])})", "all Connected",
         figures["not_connected"] == 0),
        ("MUX steering entries", f"{figures['steering_entries']}", f"= {figures['tenants']}",
         figures["steering_entries"] == figures["tenants"]),
        ("failover: kill -9 -> first ping through (tenant 0)", f"{figures['failover_first_ping_s']} s", "-", None),
        ("failover: kill -9 -> all moved steered and Connected", f"{figures['failover_reconnected_s']} s", "-", None),
        ("failover: steering entries moved", f"{figures['steering_moved']}", "its own only",
         figures["failover_moved_only_own"]),
        ("failover: other pool left Connected / lost pings",
         f"{figures['other_pool_left_connected']} / {figures['other_pool_lost_pings']}", "0 / 0", None),
        ("MUX: last steering change applied in", f"{figures['steering_apply_ms']} ms", "-", None),
    ]  # fmt: skip
    finish(
        "\nisthmus shared public IP benchmark" + (" (--quick: 10 tenants)" if args.quick else ""),
        rows,
        figures,
        (48, 52, 14),
    )


if __name__ == "__main__":
    main()
