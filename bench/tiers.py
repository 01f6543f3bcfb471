"""Benchmark of throughput tiers (needs root): a compartment's shaping (linux/shaping.py, what the gateway agent
applies) on a namespace router between a VNet VM and a site's host, for each tier and path, TCP and UDP, both
directions. Paths: L3 (routed, no encapsulation) and GRE (the userspace datapath at both ends). Measured:

  - a row per (path, tier, protocol, direction): iperf3's received rate against the tier, and the error in %
    (TCP counts payload, so ~3.5 % of headers are part of what the tier allows)
  - worst_error_pct: the largest |error| of all rows (target <= 5)
  - retier_interruption_ms: the longest gap in a UDP stream (a datagram every 10 ms, both ways) while the tier is
    changed in place 5 times (tc class change)
IPsec (10 / 50 / 100): the lab's compartment of a real IPsec connection to a strongSwan site, the same trees.
Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from isthmus.lab import fabric
from isthmus.lab.outage import OutageProbe, Stream
from isthmus.lab.topology import Topology
from isthmus.linux import gre, shaping
from isthmus.linux.run import add_netns, delete_netns, in_netns, ip_batch, list_netns, sysctl
from isthmus.linux.supervisor import Supervisor

PREFIX = "btier-"
VM, ROUTER, SITE, HOST = (f"{PREFIX}{n}" for n in ("vm", "gw", "site", "host"))
VNI = 4096
ON_PREMISES = "192.0.2.0/26"


def _build(kind: str, run_root: Path) -> list[Supervisor]:
    """VM ── x4096 ── router ══ (L3 link | GRE over a veth) ══ site ── host."""
    for netns in (VM, ROUTER, SITE, HOST):
        add_netns(netns)
    for netns in (ROUTER, SITE):
        sysctl(netns, {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0"})
    ip_batch(None, [f"link add x{VNI} netns {ROUTER} type veth peer name eth0 netns {VM}",
                    f"link add wan0 netns {ROUTER} type veth peer name wan0 netns {SITE}",
                    f"link add lan0 netns {SITE} type veth peer name eth0 netns {HOST}"])  # fmt: skip
    ip_batch(VM, ["addr add 100.64.1.4/24 dev eth0", "link set eth0 up", "route add default via 100.64.1.1"])
    ip_batch(HOST, ["addr add 192.0.2.10/26 dev eth0", "link set eth0 up", "route add default via 192.0.2.1"])
    ip_batch(ROUTER, [f"addr add 100.64.1.1/24 dev x{VNI}", f"link set x{VNI} up", "addr add 198.19.1.1/30 dev wan0",
                      "link set wan0 up"])  # fmt: skip
    ip_batch(SITE, ["addr add 192.0.2.1/26 dev lan0", "link set lan0 up", "addr add 198.19.1.2/30 dev wan0",
                    "link set wan0 up"])  # fmt: skip
    if kind == "l3":
        ip_batch(ROUTER, [f"route add {ON_PREMISES} via 198.19.1.2"])
        ip_batch(SITE, ["route add 100.64.0.0/16 via 198.19.1.1"])
        return []
    datapaths = []
    for netns, local, remote, inner, routed in (
        (ROUTER, "198.19.1.1", "198.19.1.2", "198.19.0.1/30", ON_PREMISES),
        (SITE, "198.19.1.2", "198.19.1.1", "198.19.0.2/30", "100.64.0.0/16"),
    ):
        tunnel = gre.GreTunnel("gt0", remote, 7, False, inner, (routed,))
        gre.ensure_tunnels(netns, local, [tunnel], kernel=False)
        datapath = Supervisor(gre.datapath_daemon(netns, run_root / netns, local, [tunnel]))
        datapath.ensure()
        datapaths.append(datapath)
    return datapaths


def _teardown(datapaths: list[Supervisor]) -> None:
    for datapath in datapaths:
        datapath.stop()
    for netns in (VM, ROUTER, SITE, HOST):
        if netns in list_netns():
            delete_netns(netns)


def _iperf(server_ns: str, address: str, client_ns: str, seconds: float, port: int, udp_mbps: float | None) -> float:
    """Mbit/s received by the server."""
    server = subprocess.Popen(in_netns(server_ns, ["iperf3", "-s", "-1", "-B", address, "-p", str(port)]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(0.3)
        # 1,300 bytes fit every path's MTU (IPsec: 1400). The receiver's socket buffer (-w, both ends) holds
        # 4 MB: on two busy cores a 200 KB one overflows while iperf3 waits for a core, and what the tier passed
        # would be counted lost.
        udp = ["-u", "-b", f"{udp_mbps}M", "-l", "1300", "-w", "4M"] if udp_mbps else []
        done = subprocess.run(in_netns(client_ns, ["iperf3", "-c", address, "-p", str(port), "-t", str(seconds),
                                                   "-J", *udp]),
                              capture_output=True, text=True, timeout=seconds + 20, check=True)  # fmt: skip
        answer = json.loads(done.stdout)
        if "error" in answer:
            raise RuntimeError(f"iperf3 to {address}: {answer['error']}")
        end = answer["end"]
        if udp_mbps:  # the sender's rate, less what the server reported lost
            return float(end["sum"]["bits_per_second"]) * (1 - float(end["sum"]["lost_percent"]) / 100) / 1e6
        return float(end["sum_received"]["bits_per_second"]) / 1e6
    finally:
        server.kill()
        server.wait()


def measure(kind: str, tiers: list[int], seconds: float, rows: list[dict[str, Any]]) -> None:
    run_root = Path(tempfile.mkdtemp(prefix="isthmus-bench-tiers-"))
    datapaths = _build(kind, run_root)
    port = 7700
    try:
        applied: list[shaping.Limit] | None = None
        for mbps in tiers:
            limits = [shaping.Limit("c", mbps * 1000, (ON_PREMISES,))]
            shaping.ensure_shaping(ROUTER, VNI, limits, applied)
            applied = limits
            for protocol in ("tcp", "udp"):
                udp = mbps * 1.1 if protocol == "udp" else None  # offered above the tier, not far above
                for direction, (server, address, client) in (("to site", (HOST, "192.0.2.10", VM)),
                                                             ("from site", (VM, "100.64.1.4", HOST))):  # fmt: skip
                    port += 1
                    got = _iperf(server, address, client, seconds, port, udp)
                    rows.append({"path": kind, "tier_mbps": mbps, "protocol": protocol, "direction": direction,
                                 "mbps": round(got, 1), "error_pct": round((got - mbps) / mbps * 100, 2)})  # fmt: skip
    finally:
        _teardown(datapaths)


def measure_ipsec(tiers: list[int], seconds: float, rows: list[dict[str, Any]]) -> None:
    """IPsec: the lab (a 1+1 pool), a tenant's connection to a strongSwan site, the compartment's trees as the
    agent made them at its Standard tier (100), then set to each other rate in place by the bench: Azure's SKUs
    sell 100 and 200 Mbit/s only, and the trees are the same whatever set their rate."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ipsec import KEY, Side  # the IPsec benchmark's tenants and sites

    workdir = Path(tempfile.mkdtemp(prefix="isthmus-bench-tiers-lab-"))
    lab = fabric.up(workdir, Topology("btl-", hosts=1, muxes=1, gateways=2), log_level="warning")
    port = 7900
    try:
        side = Side(lab, 0, with_vm=True)
        side.tenant.connection("to-onprem", "gw", "onprem", KEY)
        side.tenant.wait_connection("to-onprem", timeout=40)
        assert side.vm is not None
        compartment = next(n for n in list_netns() if n.startswith(lab.topology.netns("gw")) and "-gw" in n[4:])
        vni = int(compartment.rsplit("-gw", 1)[1])
        connection = side.tenant.get("connections/to-onprem")["id"]
        applied = [shaping.Limit(connection, 100_000, (ON_PREMISES,))]
        for mbps in tiers:
            limits = [shaping.Limit(connection, mbps * 1000, (ON_PREMISES,))]
            shaping.ensure_shaping(compartment, vni, limits, applied)
            applied = limits
            for protocol in ("tcp", "udp"):
                udp = mbps * 1.1 if protocol == "udp" else None
                ends = (("to site", (side.site.host_netns, side.site.host_address, side.vm.netns)),
                        ("from site", (side.vm.netns, side.vm.addresses[0], side.site.host_netns)))  # fmt: skip
                for direction, (server, address, client) in ends:
                    port += 1
                    got = _iperf(server, address, client, seconds, port, udp)
                    rows.append({"path": "ipsec", "tier_mbps": mbps, "protocol": protocol, "direction": direction,
                                 "mbps": round(got, 1), "error_pct": round((got - mbps) / mbps * 100, 2)})  # fmt: skip
    finally:
        fabric.down(workdir, "btl-")


def retier_interruption_ms() -> float | None:
    datapaths = _build("l3", Path(tempfile.mkdtemp(prefix="isthmus-bench-tiers-")))
    try:
        limits = [shaping.Limit("c", 50_000, (ON_PREMISES,))]
        shaping.ensure_shaping(ROUTER, VNI, limits, None)
        stream = Stream("c", VM, "100.64.1.4", HOST, "192.0.2.10", 7800, reverse=True)
        probe = OutageProbe([stream], 0.01, limit=120).start()
        try:
            time.sleep(1.0)
            for mbps in (100, 10, 500, 50, 100):
                new = [shaping.Limit("c", mbps * 1000, (ON_PREMISES,))]
                assert shaping.ensure_shaping(ROUTER, VNI, new, limits) == 4  # in place: a class and its queue per tree
                limits = new
                time.sleep(0.5)
            time.sleep(1.0)
        finally:
            probe.stop()
        report = probe.report()
        gaps = [g.duration_ms or 0.0 for name in ("c",) for g in report.get(name).gaps]
        gaps += [g.duration_ms or 0.0 for g in report.get("c", "reverse").gaps]
        return round(max(gaps), 1) if gaps else 0.0
    finally:
        _teardown(datapaths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two tiers per path, 2 s per run: under a minute")
    args = parser.parse_args()
    tiers = [10, 100] if args.quick else [10, 50, 100, 500]
    seconds = 2.0 if args.quick else 5.0
    rows: list[dict[str, Any]] = []
    for kind in ("l3", "gre"):
        measure(kind, tiers, seconds, rows)
    measure_ipsec([10, 100] if args.quick else [10, 50, 100], seconds, rows)
    figures: dict[str, Any] = {"worst_error_pct": max((abs(r["error_pct"]) for r in rows), default=None),
                               "retier_interruption_ms": retier_interruption_ms(), "cases": rows,
                               "ipsec_measured": True}  # fmt: skip
    print("\nisthmus tiers benchmark" + (" (--quick)" if args.quick else ""))
    print(f"{'path':<5} {'tier':>6} {'proto':<5} {'direction':<10} {'Mbit/s':>8} {'error %':>8}")
    for r in rows:
        print(f"{r['path']:<5} {r['tier_mbps']:>6} {r['protocol']:<5} {r['direction']:<10} {r['mbps']:>8} "
              f"{r['error_pct']:>8}")  # fmt: skip
    ok = figures["worst_error_pct"] is not None and figures["worst_error_pct"] <= 5
    print(
        f"worst |error|: {figures['worst_error_pct']} % (target <= 5: {'yes' if ok else 'NO'}); "
        f"longest gap during 5 live tier changes: {figures['retier_interruption_ms']} ms"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    sys.exit(main())
