"""Benchmark of BGP with sites (needs root), on the lab: a 1+1 pool, one tenant whose VNet has a VM on each of two
hosts, its gateway (ASN 65515) peering over an L3 link with a provider router (FRR, ASN 65050) whose local network
gateway declares no prefix: everything the hosts route to the site is learned. Measured:

  - learned_route_to_host_ms_p50 (p95): the site announces a new /24 (`network` on its bgpd's vty) -> the route is
    in both hosts' VNet routers (each sampled every 5 ms). Baseline, same run: declared_route_to_host_ms_p50, a
    prefix added to the local network gateway through the API -> the same two routers; and their ratio.
  - bgp_failover_routes_lost: kill -9 of every process of the active gateway node while the hosts' routers are
    sampled every 20 ms; the (host, learned prefix) pairs missing from any sample until the standby's session
    is up again and 5 s more (the new carrier's set replaces the held one 3 s after its session is up; target
    0). With it: bgp_failover_reestablished_ms
    (kill -> the site's bgpd counts a new established session). The data plane's outage on a failover is
    bench/gre.py's l3_failover_p50_ms (a namespace node's kernel goes on forwarding after a kill -9 of its
    processes, so a ping here would say nothing of it).
Prints a table, then one JSON object as the last line. `--quick`: 5 announcements, 5 declarations, 1 failover.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from failover import Bench  # the failover benchmark's helpers
from ipsec import percentile
from isthmus.lab import fabric, faults, sites, vms
from isthmus.lab.sites import L3End, SiteBgp
from isthmus.lab.tenant import Tenant
from isthmus.lab.topology import Topology
from isthmus.linux import vty
from isthmus.linux.run import ip_json, list_netns

PREFIX = "bbgp-"
ON_PREMISES = "192.0.2.0/26"
LINK = ("198.19.1.1", "198.19.1.2")
SITE_ASN = 65050


class Setup:
    def __init__(self, lab: fabric.LabState) -> None:
        self.lab = lab
        t = self.tenant = Tenant(lab, "00000000-0000-0000-0000-00000000b9b0")
        t.vnet("vnet1", "100.64.0.0/16", {"front": "100.64.1.0/24", "GatewaySubnet": "100.64.255.0/27"})
        self.vms = []
        for host in ("h1", "h2"):
            t.nic(f"vm-{host}", "vnet1", "front")
            self.vms.append(vms.create(lab, f"b{host}", t.id(f"networkInterfaces/vm-{host}"), host))
        t.public_ip("gw-pip")
        t.vpn_gateway("gw", "vnet1", "gw-pip", bgp_asn=65515)
        self.declared: list[str] = []
        t.local_gateway("provider", "198.51.100.60", [], bgp=(SITE_ASN, LINK[1]))
        self.site = sites.create(lab, "prov", LINK[1], ON_PREMISES, l3=L3End(f"{LINK[1]}/30", LINK[0], ()),
                                 bgp=SiteBgp(SITE_ASN, LINK[0], 65515))  # fmt: skip
        t.l3_connection("to-provider", "gw", "provider", enable_bgp=True, localAddress=f"{LINK[0]}/30",
                        nextHop=LINK[1])  # fmt: skip
        t.wait_connection("to-provider", timeout=40)

    def routers(self) -> list[str]:
        """The tenant's VNet router on each host."""
        out = [n for n in list_netns() for h in ("h1", "h2") if n.startswith(self.lab.topology.netns(f"{h}-vnet"))]
        assert len(out) == 2, out
        return out

    def announce(self, prefix: str, withdraw: bool = False) -> None:
        line = f"  {'no ' if withdraw else ''}network {prefix}"
        vty.configure(self.site.bgp_dir / "run" / "bgpd.vty",
                      [f"router bgp {SITE_ASN}", " address-family ipv4 unicast", line])  # fmt: skip

    def declare(self, prefix: str) -> None:
        self.declared.append(prefix)
        self.tenant.local_gateway("provider", "198.51.100.60", list(self.declared), bgp=(SITE_ASN, LINK[1]))

    def established(self) -> int:
        """How many sessions the site's bgpd has established so far."""
        answer = vty.show(self.site.bgp_dir / "run" / "bgpd.vty", f"show bgp neighbors {LINK[0]} json")
        return int(json.loads(answer).get(LINK[0], {}).get("connectionsEstablished", 0))


def _routes(netns: str) -> set[str]:
    return {r["dst"] for r in ip_json(netns, "route", "show")}


def until_in_hosts(routers: list[str], prefix: str, started: float, limit: float = 15.0) -> float | None:
    """ms from `started` until `prefix` is in every router (None: not within `limit` s)."""
    waiting = set(routers)
    while waiting and time.monotonic() - started < limit:
        waiting = {ns for ns in waiting if prefix not in _routes(ns)}
        if waiting:
            time.sleep(0.005)
    return None if waiting else (time.monotonic() - started) * 1000


def propagation(setup: Setup, trials: int) -> dict[str, Any]:
    routers = setup.routers()
    learned, declared = [], []
    for i in range(trials):
        prefix = f"100.101.{i}.0/24"
        started = time.monotonic()
        setup.announce(prefix)
        if (ms := until_in_hosts(routers, prefix, started)) is not None:
            learned.append(ms)
        prefix = f"100.102.{i}.0/24"
        started = time.monotonic()
        setup.declare(prefix)
        if (ms := until_in_hosts(routers, prefix, started)) is not None:
            declared.append(ms)
    p50 = round(statistics.median(learned), 1) if learned else None
    base = round(statistics.median(declared), 1) if declared else None
    return {"learned_route_to_host_ms_p50": p50,
            "learned_route_to_host_ms_p95": round(percentile(learned, 0.95), 1) if learned else None,
            "learned_trials": len(learned), "declared_route_to_host_ms_p50": base,
            "learned_vs_declared_ratio": round(p50 / base, 2) if p50 and base else None}  # fmt: skip


class Sampler(threading.Thread):
    """Both hosts' routers every 20 ms: the (router, prefix) pairs of `wanted` missing from any sample."""

    def __init__(self, routers: list[str], wanted: set[str]) -> None:
        super().__init__(daemon=True)
        self.routers, self.wanted = routers, wanted
        self.missing: set[tuple[str, str]] = set()
        self.samples = 0
        self.done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 120  # bounded whatever happens
        while not self.done.is_set() and time.monotonic() < deadline:
            for netns in self.routers:
                self.missing |= {(netns, p) for p in self.wanted - _routes(netns)}
            self.samples += 1
            time.sleep(0.02)


def failovers(setup: Setup, trials: int) -> dict[str, Any]:
    bench = Bench(setup.lab)
    routers = setup.routers()
    wanted = {ON_PREMISES, *(f"100.101.{i}.0/24" for i in range(3))}
    for prefix in sorted(wanted - {ON_PREMISES}):
        setup.announce(prefix)
    for prefix in wanted:
        until_in_hosts(routers, prefix, time.monotonic())
    lost, samples, trials_done = 0, 0, 0
    again: list[float] = []
    for _ in range(trials):
        victim = bench.node_of_gateway(setup.tenant.id("virtualNetworkGateways/gw"))
        if victim is None:
            break
        sessions = setup.established()
        sampler = Sampler(routers, wanted)
        sampler.start()
        time.sleep(0.2)
        killed = time.monotonic()
        faults.kill_node(setup.lab.topology.netns(victim))
        session = None
        while time.monotonic() - killed < 30 and session is None:
            if setup.established() > sessions:
                session = (time.monotonic() - killed) * 1000
            time.sleep(0.01)
        again += [session] if session is not None else []
        time.sleep(5.0)  # the new carrier's set, authoritative 3 s after its session is up, has replaced the held one
        sampler.done.set()
        sampler.join()
        lost += len(sampler.missing)
        samples += sampler.samples
        trials_done += 1
        bench.back_up(victim)
    return {"bgp_failover_routes_lost": lost, "bgp_failover_samples": samples, "bgp_failover_trials": trials_done,
            "bgp_failover_reestablished_ms": round(statistics.median(again), 1) if again else None}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 announcements, 1 failover: under a minute")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="isthmus-bench-bgp-"))
    lab = fabric.up(workdir, Topology(PREFIX, hosts=2, muxes=1, gateways=2), log_level="warning")
    try:
        setup = Setup(lab)
        time.sleep(2.0)  # the first passes are over: the gateway's observations are not skipped
        figures = propagation(setup, 5 if args.quick else 20)
        figures.update(failovers(setup, 1 if args.quick else 3))
    finally:
        fabric.down(workdir, PREFIX)

    def met(value: Any, limit: float) -> str:
        return "" if value is None else ("yes" if value <= limit else "NO")

    f = figures.get
    rows = [
        ("site announces -> route in both hosts, p50", f("learned_route_to_host_ms_p50"), "ms", "-", ""),
        ("  p95, trials", f"{f('learned_route_to_host_ms_p95')} / {f('learned_trials')}", "ms / n", "-", ""),
        ("baseline: API declares -> both hosts, p50", f("declared_route_to_host_ms_p50"), "ms", "-", ""),
        ("  learned / declared", f("learned_vs_declared_ratio"), "", "-", ""),
        ("failover: learned routes missing on hosts", f("bgp_failover_routes_lost"), "", "0",
         met(f("bgp_failover_routes_lost"), 0)),
        ("  samples, failovers", f"{f('bgp_failover_samples')} / {f('bgp_failover_trials')}", "n / n", "-", ""),
        ("failover: kill -> site's session again, p50", f("bgp_failover_reestablished_ms"), "ms", "-", ""),
    ]  # fmt: skip
    print("\nisthmus BGP-with-sites benchmark" + (" (--quick)" if args.quick else ""))
    print(f"{'measure':<46} {'value':>18}  {'target':<8} met")
    for name, value, unit, target, ok in rows:
        print(f"{name:<46} {str(value) + (' ' + unit if unit else ''):>18}  {target:<8} {ok}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
