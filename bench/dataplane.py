"""Benchmark of the host data plane, on real namespaces (needs root).

Without a lab (a router namespace between a VM and a peer, loaded as the host agent loads it):
  - an NSG of 1,000 rules, one rule edited per load: compile + render + load (target < 100 ms), 20 loads
  - a never-seen NSG of 1,000 rules (cold caches) the same way, 20 loads
  - the kernel part alone of the edited loads: in place / loaded whole / by an `nft -f` process (baselines)
  - a program in the host document, as JSON and back to typed (the agent decoding its document; not part of
    a load)
  - VM-to-peer iperf3 through the router with those 1,000 rules vs none     (target ratio >= 0.9)
  - plain veth between two namespaces (the baseline of the VXLAN figure)
With a lab (controller, ToR, MUX and host agents; everything through the API):
  - VM-to-VM across hosts over VXLAN, iperf3, as a ratio to the veth baseline
  - securityRule PUT -> enforced in the kernel (the first SYN through) p50/p99  (target < 200 / < 500 ms)
  - N VMs on 2 hosts from empty to all reachable                           (200 in the full run)
Prints a table, then one JSON object as the last line. `--quick` is a small run under a minute.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from isthmus.compile import security_rules
from isthmus.compile.security_rules import compile_nsg
from isthmus.lab import fabric, probe, vms
from isthmus.lab.tenant import Tenant, rule
from isthmus.lab.testbed import router_between
from isthmus.lab.topology import Topology
from isthmus.linux import libnft, nft, nsg_nft
from isthmus.linux.nsg_nft import Port, render_filter
from isthmus.linux.run import NETNS_DIR, add_netns, delete_netns, in_netns, ip_batch
from isthmus.model.documents import SecurityProgram, to_json
from isthmus.model.nsg import NsgContext
from isthmus.model.snapshot import FabricSettings
from table import finish

CONTEXT = NsgContext((ip_network("100.64.0.0/16"),), FabricSettings().azure_load_balancer)
VM, PEER = "100.64.1.4", "198.51.100.200"
IPERF_PORT = 5201


LOADS = 20  # of each kind, in both modes


def thousand_rules(count: int = 1000, seed: int = 7) -> list[dict[str, Any]]:
    """count-1 deny rules that do not match the measured flow (other sources, other ports), then its allow."""
    rng = random.Random(seed)
    rules = []
    for index in range(count - 1):
        source = f"203.0.113.{rng.randrange(256)}/32" if index % 2 else f"192.0.2.{rng.randrange(0, 256, 8)}/29"
        low = rng.randrange(6000, 60000)
        rules.append(rule(f"deny-{index}", 100 + index, "Deny", protocol=rng.choice(["Tcp", "Udp", "*"]),
                          source=source, ports=f"{low}-{low + rng.randrange(100)}"))  # fmt: skip
    rules.append(rule("allow-iperf", 100 + count, protocol="Tcp", ports=str(IPERF_PORT), source=PEER))
    return rules


@contextmanager
def router_topology(tag: str) -> Iterator[dict[str, str]]:
    """The NSG test bed, plus two namespaces joined by a bare veth pair (the baseline)."""
    with router_between(tag, VM, [PEER]) as names:
        names.update(a=f"{tag}-a", b=f"{tag}-b")
        try:
            add_netns(names["a"])
            add_netns(names["b"])
            veth = f"link add eth0 type veth peer name eth0 netns {names['b']}"
            ip_batch(names["a"], [veth, "addr add 198.19.0.0/31 dev eth0", "link set eth0 up"])
            ip_batch(names["b"], ["addr add 198.19.0.1/31 dev eth0", "link set eth0 up"])
            yield names
        finally:
            delete_netns(names["a"])
            delete_netns(names["b"])


def load_nsg(router: str, rules: list[dict[str, Any]], *, in_place: bool = True) -> tuple[float, float]:
    """Seconds to compile + render the rules, and to load them into the kernel, as the agent does it."""
    started = time.perf_counter()
    program = compile_nsg(rules, CONTEXT)
    body = render_filter([Port("nvm", "nic", None)], {"nic": program})
    compiled = time.perf_counter()
    # as the agent's passes between full ones: the table is what this process loaded last
    nft.ensure_table(router, "inet", "isthmus", body, verify=False, in_place=in_place)
    return compiled - started, time.perf_counter() - compiled


def forget_compiled() -> None:
    """Nothing of an earlier NSG reused: compile, render and text caches emptied."""
    security_rules.clear_caches()
    nsg_nft.clear_caches()


def by_process(router: str, rules: list[dict[str, Any]]) -> float:
    """Seconds for an `nft -f` process to replace the whole table with the rules (the kernel part before)."""
    body = render_filter([Port("nvm", "nic", None)], {"nic": compile_nsg(rules, CONTEXT)})
    script = f"table inet isthmus\ndelete table inet isthmus\ntable inet isthmus {{\n{body}\n}}\n"
    started = time.perf_counter()
    subprocess.run(in_netns(router, ["nft", "-f", "-"]), input=script, text=True, check=True)
    return time.perf_counter() - started


WIRE = TypeAdapter(SecurityProgram)


def bridge(rules: list[dict[str, Any]]) -> float:
    """Seconds from a compiled program to the controller's JSON and back to typed, as the agent gets it
    (the JSON text itself, encoded and parsed with the whole document, not counted)."""
    program = compile_nsg(rules, CONTEXT)
    started = time.perf_counter()
    wire = to_json(SecurityProgram("nsg", "vnet", program))
    WIRE.validate_python(wire)
    return time.perf_counter() - started


def ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


def nsg_loads(router: str) -> dict[str, Any]:
    """The 1,000-rule NSG loads: never seen, edited (one rule each load), and the kernel baselines."""
    figures: dict[str, Any] = {"nsg1000_loads": LOADS}
    cold = []
    for index in range(LOADS):
        forget_compiled()
        cold.append(load_nsg(router, thousand_rules(seed=100 + index)))
    rules = thousand_rules()
    load_nsg(router, rules)  # the NSG the tenant then edits
    edited = []
    for index in range(LOADS):
        rules[0]["properties"]["destinationPortRange"] = str(7000 + index)  # a real reload every time
        edited.append(load_nsg(router, rules))
    whole = []
    for index in range(LOADS):
        rules[0]["properties"]["destinationPortRange"] = str(8000 + index)
        whole.append(load_nsg(router, rules, in_place=False)[1])
    process = []
    for index in range(LOADS):
        rules[0]["properties"]["destinationPortRange"] = str(9000 + index)
        process.append(by_process(router, rules))
    libnft.close(f"{NETNS_DIR}/{router}")  # the process replaced what this one loaded: forget it
    for name, loads in (("nsg1000", edited), ("nsg1000_cold", cold)):
        totals = [c + k for c, k in loads]
        figures[f"{name}_load_ms_p50"] = ms(totals)
        figures[f"{name}_load_ms_max"] = round(max(totals) * 1000, 1)
        figures[f"{name}_compile_ms_p50"] = ms([c for c, _k in loads])
        figures[f"{name}_kernel_ms_p50"] = ms([k for _c, k in loads])
    figures["nsg1000_whole_kernel_ms_p50"] = ms(whole)
    figures["nsg1000_nft_process_kernel_ms_p50"] = ms(process)
    figures["nsg1000_bridge_ms_p50"] = ms([bridge(rules) for _ in range(LOADS)])
    return figures


def without_lab(quick: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    seconds = 1.0 if quick else 3.0
    with router_topology(f"bd{os.getpid() % 10000}") as ns:
        figures.update(nsg_loads(ns["router"]))
        rules = thousand_rules()
        with_rules, without = [], []
        for _round in range(1 if quick else 2):  # alternate: the machine is shared and noisy
            load_nsg(ns["router"], rules)
            with_rules.append(probe.iperf_gbps(ns["vm"], VM, ns["peer"], seconds))
            load_nsg(ns["router"], [rule("allow-iperf", 100, protocol="Tcp", ports=str(IPERF_PORT), source=PEER)])
            without.append(probe.iperf_gbps(ns["vm"], VM, ns["peer"], seconds))
        figures["routed_gbps_1000_rules"] = round(statistics.median(with_rules), 2)
        figures["routed_gbps_1_rule"] = round(statistics.median(without), 2)
        figures["nsg_throughput_ratio"] = round(figures["routed_gbps_1000_rules"] / figures["routed_gbps_1_rule"], 3)
        figures["veth_gbps"] = round(probe.iperf_gbps(ns["b"], "198.19.0.1", ns["a"], seconds), 2)
    return figures


def wait_until(predicate: Callable[[], bool], timeout: float) -> float | None:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if predicate():
            return time.perf_counter() - started
    return None


def with_lab(quick: bool, workdir: Path, veth_gbps: float) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    prefix = f"bl{os.getpid() % 10000}-"
    lab = fabric.up(workdir, Topology(prefix, hosts=2, muxes=1, gateways=0), log_level="warning")
    try:
        tenant = Tenant(lab, "00000000-0000-0000-0000-0000000000be")
        tenant.nsg("web", [])
        tenant.vnet("vnet1", "100.64.0.0/16", {"front": "100.64.1.0/24", "back": "100.64.16.0/20"}, nsg="web")
        tenant.public_ip("pip")
        tenant.nic("a", "vnet1", "front", public_ip="pip")
        tenant.nic("b", "vnet1", "back")
        a = vms.create(lab, "a", tenant.id("networkInterfaces/a"), "h1")
        b = vms.create(lab, "b", tenant.id("networkInterfaces/b"), "h2")
        vxlan = probe.iperf_gbps(b.netns, b.addresses[0], a.netns, 1.0 if quick else 3.0)
        figures["vxlan_gbps"] = round(vxlan, 2)
        figures["vxlan_vs_veth_ratio"] = round(vxlan / veth_gbps, 3)

        vip = tenant.get("publicIPAddresses/pip")["properties"]["ipAddress"]
        inet = lab.topology.netns("inet")
        latencies = []
        with probe.server(a.netns, "0.0.0.0", 20000):
            for trial in range(20 if quick else 100):
                name = f"allow-{trial}"
                tenant.security_rule("web", rule(name, 200, protocol="Tcp", ports="20000", source="Internet"))
                took = wait_until(lambda: probe.tcp_open(inet, vip, 20000, timeout=0.005), 5.0)
                latencies.append(took if took is not None else 5.0)
                tenant.delete(f"networkSecurityGroups/web/securityRules/{name}")
                wait_until(lambda: not probe.tcp_open(inet, vip, 20000, timeout=0.05), 5.0)
        latencies.sort()
        figures["rule_to_kernel_ms_p50"] = round(statistics.median(latencies) * 1000, 1)
        figures["rule_to_kernel_ms_p99"] = round(
            latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 1
        )
        figures["rule_trials"] = len(latencies)
        figures["rule_to_kernel_ms_worst3"] = [round(x * 1000, 1) for x in latencies[-3:]]

        count = 40 if quick else 200
        started = time.perf_counter()
        made = []
        for index in range(count):
            tenant.nic(f"s{index}", "vnet1", "back")
            made.append(f"s{index}")
        api_done = time.perf_counter() - started
        with lab.operator() as http:
            for index, name in enumerate(made):
                body = {"properties": {"networkInterface": tenant.id(f"networkInterfaces/{name}"),
                                       "host": "h1" if index % 2 else "h2"}}  # fmt: skip
                http.put(f"/admin/portBindings/{name}", json=body).raise_for_status()
        pending = set(made)
        deadline = time.monotonic() + 300
        while pending and time.monotonic() < deadline:
            for name in sorted(pending):
                vm = vms.find(lab, name)
                if vm and vm.addresses and probe.ping(a.netns, vm.addresses[0], timeout=0.5):
                    pending.discard(name)
        figures["scale_vms"] = count
        figures["scale_seconds_to_all_reachable"] = round(time.perf_counter() - started, 1)
        figures["scale_seconds_api_only"] = round(api_done, 1)
        figures["scale_unreachable"] = len(pending)
    finally:
        fabric.down(workdir, prefix)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small run, under a minute")
    args = parser.parse_args()
    figures = without_lab(args.quick)
    with tempfile.TemporaryDirectory() as workdir:
        figures.update(with_lab(args.quick, Path(workdir), figures["veth_gbps"]))
    rows = [
        ("NSG 1,000 rules, 1 edited: compile + load, p50", f"{figures['nsg1000_load_ms_p50']} ms (compile "
         f"{figures['nsg1000_compile_ms_p50']}, kernel {figures['nsg1000_kernel_ms_p50']})", "< 100 ms",
         figures["nsg1000_load_ms_p50"] < 100),
        ("NSG 1,000 rules never seen: the same, p50", f"{figures['nsg1000_cold_load_ms_p50']} ms (compile "
         f"{figures['nsg1000_cold_compile_ms_p50']}, kernel {figures['nsg1000_cold_kernel_ms_p50']})", "-", None),
        ("kernel part: in place / whole / nft process", f"{figures['nsg1000_kernel_ms_p50']} / "
         f"{figures['nsg1000_whole_kernel_ms_p50']} / {figures['nsg1000_nft_process_kernel_ms_p50']} ms",
         "baseline", None),
        ("program to the wire and back to typed, p50", f"{figures['nsg1000_bridge_ms_p50']} ms", "-", None),
        ("routed TCP, 1,000 rules vs 1 rule", f"{figures['routed_gbps_1000_rules']} / {figures['routed_gbps_1_rule']} "
         f"Gbit/s = {figures['nsg_throughput_ratio']}", ">= 0.9", figures["nsg_throughput_ratio"] >= 0.9),
        ("VM-VM across hosts (VXLAN) vs veth", f"{figures['vxlan_gbps']} / {figures['veth_gbps']} Gbit/s = "
         f"{figures['vxlan_vs_veth_ratio']}", "ratio", None),
        ("securityRule PUT -> kernel, p50", f"{figures['rule_to_kernel_ms_p50']} ms", "< 200 ms",
         figures["rule_to_kernel_ms_p50"] < 200),
        ("securityRule PUT -> kernel, p99", f"{figures['rule_to_kernel_ms_p99']} ms ({figures['rule_trials']} trials)",
         "< 500 ms", figures["rule_to_kernel_ms_p99"] < 500),
        (f"{figures['scale_vms']} VMs on 2 hosts: empty -> all reachable",
         f"{figures['scale_seconds_to_all_reachable']} s (API alone {figures['scale_seconds_api_only']} s)", "-",
         figures["scale_unreachable"] == 0),
    ]  # fmt: skip
    finish("\nisthmus data plane benchmark" + (" (--quick)" if args.quick else ""), rows, figures, (46, 44, 9))


if __name__ == "__main__":
    main()
