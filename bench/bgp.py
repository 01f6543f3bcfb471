"""Benchmark of the BGP speaker (gobgpd over gRPC) into a real FRR ToR (needs root). Partial: the issue's
end-to-end figure through the API and the BFD figures are not measured yet.

  - N /32s announced -> all in the ToR's kernel FIB       (target 100,000 in <= 5 s)
  - withdrawing them -> all gone from the FIB              (target <= 5 s)
  - gobgpd's memory with N routes
  - one more /32 on top of N: announce() call (the MUX side) and -> in the FIB, p50/p99
    (target: MUX side <= 10 ms; end to end <= 100 ms is measured through the API in a later version)
Prints a table, then one JSON object as the last line. `--quick`: 10,000 routes, 20 trials.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from ipaddress import IPv4Network, ip_network
from pathlib import Path

from isthmus.lab.tor import bgp_pair
from isthmus.linux.run import in_netns, run


def fib_count(tor: str) -> int:
    out = run(in_netns(tor, ["ip", "-4", "route", "show", "proto", "bgp"]))
    return out.count("\n")


def wait_count(tor: str, wanted: int, timeout: float) -> float | None:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if fib_count(tor) == wanted:
            return time.perf_counter() - started
        time.sleep(0.05)
    return None


def routes(count: int) -> list[IPv4Network]:
    base = int(ip_network("198.18.64.0/18").network_address)  # up to 114,688 /32s of 198.18.0.0/15
    return [ip_network(f"{(base + i) >> 24}.{((base + i) >> 16) & 255}.{((base + i) >> 8) & 255}.{(base + i) & 255}/32")
            for i in range(count)]  # fmt: skip


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count = 10_000 if args.quick else 100_000
    trials = 20 if args.quick else 100
    figures: dict[str, object] = {"routes": count}
    with bgp_pair(f"bb{os.getpid() % 10000}") as pair:
        prefixes = routes(count + trials)
        bulk = set(prefixes[:count])
        started = time.perf_counter()
        pair.speaker.announce(bulk, verify=False)
        sent = time.perf_counter() - started
        took = wait_count(pair.tor, count, 120)
        figures["announce_seconds_to_fib"] = round(sent + took, 2) if took is not None else None
        figures["announce_seconds_grpc"] = round(sent, 2)
        figures["gobgpd_rss_mb"] = round(rss_mb(pair.gobgpd_pid), 1)
        one_call, one_fib = [], []
        current = set(bulk)
        for extra in prefixes[count:]:
            current.add(extra)
            started = time.perf_counter()
            pair.speaker.announce(current, verify=False)
            called = time.perf_counter() - started
            address = str(extra.network_address)
            while address not in run(in_netns(pair.tor, ["ip", "route", "show", address + "/32"])):
                time.sleep(0.002)
            one_fib.append(time.perf_counter() - started)
            one_call.append(called)
        started = time.perf_counter()
        pair.speaker.announce(set(), verify=False)
        took = wait_count(pair.tor, 0, 120)
        figures["withdraw_seconds_to_fib"] = round(time.perf_counter() - started, 2) if took is not None else None
    for name, values in (("one_announce_call_ms", one_call), ("one_route_to_fib_ms", one_fib)):
        values.sort()
        figures[f"{name}_p50"] = round(statistics.median(values) * 1000, 1)
        figures[f"{name}_p99"] = round(values[min(len(values) - 1, int(len(values) * 0.99))] * 1000, 1)
    target = 5.0 if count == 100_000 else 0.5
    rows = [
        (f"{count:,} /32s announced -> ToR FIB", f"{figures['announce_seconds_to_fib']} s "
         f"(gRPC {figures['announce_seconds_grpc']} s)", f"<= {target} s"),
        (f"{count:,} withdrawn -> gone from the FIB", f"{figures['withdraw_seconds_to_fib']} s", f"<= {target} s"),
        (f"gobgpd memory with {count:,} routes", f"{figures['gobgpd_rss_mb']} MB", "-"),
        ("one more /32: announce() call p50/p99", f"{figures['one_announce_call_ms_p50']} / "
         f"{figures['one_announce_call_ms_p99']} ms", "<= 10 ms"),
        ("one more /32: -> ToR FIB p50/p99", f"{figures['one_route_to_fib_ms_p50']} / "
         f"{figures['one_route_to_fib_ms_p99']} ms", "-"),
    ]  # fmt: skip
    print("\nisthmus BGP speaker benchmark (gobgpd -> FRR)" + (" --quick" if args.quick else ""))
    for name, value, goal in rows:
        print(f"{name:<44} {value:>34}  {goal}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
