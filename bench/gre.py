"""Benchmark of GRE connections (needs root). Measured:

  - gre_gbps: iperf3 TCP through the userspace GRE datapath (linux/gre_datapath.py) between two namespaces, one
    datapath at each end, over a veth pair; veth_gbps: iperf3 over the same veth pair without it, in the same
    run; gre_vs_veth_ratio their ratio (target gre_gbps >= 1)
  - gre_failover_p50_ms, l3_failover_p50_ms: on the lab (a 1+1 pool), one tenant's GRE connection to a scapy
    site (lab/gre_site.py) and another's L3 connection to a provider router (FRR) on the same active, each
    carrying a sequence-numbered UDP datagram every 10 ms both ways (lab/outage.py); kill -9 of every process of
    the active node -> the first datagram through again (the failover benchmark's method; target <= 1,000)
Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from failover import Bench, outage_ms  # the failover benchmark's helpers
from ipsec import percentile
from isthmus.lab import fabric, faults, probe, sites, vms
from isthmus.lab.gre_site import GreEnd
from isthmus.lab.outage import OutageProbe, Stream
from isthmus.lab.sites import L3End
from isthmus.lab.tenant import Tenant
from isthmus.lab.topology import Topology
from isthmus.linux import gre
from isthmus.linux.run import add_netns, delete_netns, ip_batch, list_netns
from isthmus.linux.supervisor import Supervisor

PREFIX = "bgre-"
ON_PREMISES = "192.0.2.0/26"


def throughput(seconds: float) -> dict[str, Any]:
    a, b = f"{PREFIX}a", f"{PREFIX}b"
    run_root = Path(tempfile.mkdtemp(prefix="isthmus-bench-gre-"))
    datapaths: list[Supervisor] = []
    try:
        for netns in (a, b):
            add_netns(netns)
        ip_batch(None, [f"link add {PREFIX}v0 netns {a} type veth peer name {PREFIX}v1 netns {b}"])
        ends = {a: ("198.51.100.1", "198.51.100.2", "198.19.0.1/30", f"{PREFIX}v0"),
                b: ("198.51.100.2", "198.51.100.1", "198.19.0.2/30", f"{PREFIX}v1")}  # fmt: skip
        for netns, (local, remote, inner, device) in ends.items():
            ip_batch(netns, [f"addr add {local}/24 dev {device}", f"link set {device} up", "link set lo up"])
            tunnel = gre.GreTunnel("gt0", remote, 7, False, inner, ())
            gre.ensure_tunnels(netns, local, [tunnel], kernel=False)
            datapath = Supervisor(gre.datapath_daemon(netns, run_root / netns, local, [tunnel]))
            datapath.ensure()
            datapaths.append(datapath)
        veth = probe.iperf_gbps(b, "198.51.100.2", a, seconds, port=5311)
        tunnelled = probe.iperf_gbps(b, "198.19.0.2", a, seconds, port=5312)
        return {"veth_gbps": round(veth, 2), "gre_gbps": round(tunnelled, 2),
                "gre_vs_veth_ratio": round(tunnelled / veth, 3) if veth else None}  # fmt: skip
    finally:
        for datapath in datapaths:
            datapath.stop()
        for netns in (a, b):
            if netns in list_netns():
                delete_netns(netns)


def _tenant(lab: fabric.LabState, index: int) -> tuple[Tenant, vms.Vm]:
    t = Tenant(lab, f"00000000-0000-0000-0000-{0xC0DE + index:012x}")
    t.vnet("vnet1", "100.64.0.0/16", {"front": "100.64.1.0/24", "GatewaySubnet": "100.64.255.0/27"})
    t.nic("vm1", "vnet1", "front")
    vm = vms.create(lab, f"g{index}vm", t.id("networkInterfaces/vm1"), "h1")
    t.public_ip("gw-pip")
    t.vpn_gateway("gw", "vnet1", "gw-pip")
    return t, vm


def failover(trials: int) -> dict[str, Any]:
    """A GRE tenant and an L3 tenant on the same active; each trial kills it and measures both outages."""
    workdir = Path(tempfile.mkdtemp(prefix="isthmus-bench-gre-lab-"))
    lab = fabric.up(workdir, Topology(PREFIX, hosts=1, muxes=1, gateways=2), log_level="warning")
    bench = Bench(lab)
    outage_probe = None
    figures: dict[str, Any] = {}
    try:
        gre_tenant, gre_vm = _tenant(lab, 0)
        vip = gre_tenant.get("publicIPAddresses/gw-pip")["properties"]["ipAddress"]
        gre_tenant.local_gateway("onprem", "198.51.100.51", [ON_PREMISES])
        gre_site = sites.create(lab, "gre", "198.51.100.51", ON_PREMISES,
                                gre=GreEnd(remote=vip, key=11, routes=("100.64.0.0/16",)))  # fmt: skip
        gre_tenant.gre_connection("to-onprem", "gw", "onprem", key=11)
        l3_tenant, l3_vm = _tenant(lab, 1)
        l3_tenant.local_gateway("provider", "198.51.100.52", [ON_PREMISES])
        l3_site = sites.create(lab, "prov", "198.19.1.2", ON_PREMISES,
                               l3=L3End("198.19.1.2/30", "198.19.1.1", ("100.64.0.0/16",)))  # fmt: skip
        l3_tenant.l3_connection("to-provider", "gw", "provider", localAddress="198.19.1.1/30", nextHop="198.19.1.2")
        gre_tenant.wait_connection("to-onprem", timeout=40)
        l3_tenant.wait_connection("to-provider", timeout=40)
        streams = [Stream("gre", gre_vm.netns, gre_vm.addresses[0], gre_site.host_netns, gre_site.host_address,
                          7600, reverse=True),
                   Stream("l3", l3_vm.netns, l3_vm.addresses[0], l3_site.host_netns, l3_site.host_address, 7601,
                          reverse=True)]  # fmt: skip
        outage_probe = OutageProbe(streams, 0.01, limit=3600).start()
        time.sleep(1.0)
        outages: dict[str, list[float]] = {"gre": [], "l3": []}
        for _ in range(trials):
            victim = bench.node_of_gateway(gre_tenant.id("virtualNetworkGateways/gw"))
            if victim is None:
                break
            at = outage_probe.mark(f"kill {victim}")
            faults.kill_node(lab.topology.netns(victim))
            for name in outages:
                outage = outage_ms(outage_probe, name, at)
                if outage is not None:
                    outages[name].append(outage)
            bench.back_up(victim)
        for name, values in outages.items():
            figures[f"{name}_failover_trials"] = len(values)
            figures[f"{name}_failover_p50_ms"] = round(statistics.median(values), 1) if values else None
            figures[f"{name}_failover_p95_ms"] = round(percentile(values, 0.95), 1) if values else None
    finally:
        if outage_probe is not None:
            outage_probe.stop()
        fabric.down(workdir, PREFIX)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short iperf3 runs, 3 failovers: under a minute")
    args = parser.parse_args()
    figures = throughput(3.0 if args.quick else 10.0)
    figures.update(failover(3 if args.quick else 10))

    def met(value: Any, limit: float, above: bool = False) -> str:
        return "" if value is None else ("yes" if (value >= limit if above else value <= limit) else "NO")

    f = figures.get
    rows = [
        ("TCP through the userspace GRE datapath", f("gre_gbps"), "Gbit/s", ">= 1", met(f("gre_gbps"), 1, True)),
        ("TCP over the bare veth pair", f("veth_gbps"), "Gbit/s", "-", ""),
        ("  GRE / veth", f("gre_vs_veth_ratio"), "", "-", ""),
        ("GRE failover (kill -9 of the node), p50", f("gre_failover_p50_ms"), "ms", "<= 1000",
         met(f("gre_failover_p50_ms"), 1000)),
        ("  p95, trials", f"{f('gre_failover_p95_ms')} / {f('gre_failover_trials')}", "ms / n", "-", ""),
        ("L3 failover (the same kill), p50", f("l3_failover_p50_ms"), "ms", "<= 1000",
         met(f("l3_failover_p50_ms"), 1000)),
        ("  p95, trials", f"{f('l3_failover_p95_ms')} / {f('l3_failover_trials')}", "ms / n", "-", ""),
    ]  # fmt: skip
    print("\nisthmus GRE benchmark" + (" (--quick)" if args.quick else ""))
    print(f"{'measure':<44} {'value':>20}  {'target':<10} met")
    for name, value, unit, target, ok in rows:
        print(f"{name:<44} {str(value) + (' ' + unit if unit else ''):>20}  {target:<10} {ok}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
