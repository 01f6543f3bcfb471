"""Benchmark of public IPs over BGP (needs root). Two parts:

Speaker alone, side by side in one run: gobgpd over gRPC and BIRD learning kernel routes (linux/bird.py), each
behind the same announce(desired), into a real FRR ToR over one veth:
  - a MUX that starts with N /32s (announced, then the peer added) -> all in the ToR's FIB   (target <= 5 s)
  - N /32s withdrawn on an established session -> gone from the FIB                           (target <= 5 s)
  - N /32s announced on an established session -> the FIB (gobgpd 3.10 sends one UPDATE per path there; BIRD
    packs them: the target for the packing speaker, established_to_fib_s, is <= 3 s)
  - the speaker's memory with N routes; one more /32 on top of N: announce() call and -> FIB p50/p99

The lab (controller, ToR, two MUXes, a host, all real agents):
  - a public IP created through the tenant API -> its /32 in the ToR's kernel FIB, p50/p99 over the trials
    (target p50 <= 100 ms), split into the MUX side (desired document in hand -> changed routes handed to
    the speaker, as the MUX agent reports it; target <= 10 ms); the MUX agents run --lab-speaker
  - one MUX failing while UDP flows to a public IP (32 source ports, ECMP-spread, every 5 ms): the time
    until the ToR drops it from the ECMP set and until datagrams stop being lost, for its link silently
    dropping everything with BFD (target <= 0.5 s) and with the BGP hold timer alone (3 s), and for its
    processes killed (agent, speaker, bfdd)
A MUX agent carrying N VIPs (bench/mux_side.py): one public IP change as a delta -> routes in the kernel and
handed to the speaker, p50/p99 (mux_side_100k_ms_*, target p50 <= 10 ms), against the same change arriving as
the whole document.

Prints a table, then one JSON object as the last line. `--quick`: 10,000 routes, 20 trials.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from ipaddress import IPv4Network, ip_network
from pathlib import Path

import mux_side  # bench/mux_side.py: the MUX agent at scale
from isthmus.lab import fabric, probe, tor, vms
from isthmus.lab.faults import silence, unsilence
from isthmus.lab.tenant import Tenant, rule
from isthmus.lab.topology import TOR_ASN, Topology
from isthmus.linux.frr import BFD_PROFILE, vtysh
from isthmus.linux.run import in_netns, netns_pids, run
from isthmus.linux.speaker import DEFAULT_SPEAKER, SPEAKERS, Peer

MUX1, MUX2 = "198.18.0.11", "198.18.0.12"
UDP_PORT = 7300


def routes(count: int) -> list[IPv4Network]:
    base = int(ip_network("198.18.64.0/18").network_address)  # up to 114,688 /32s of 198.18.0.0/15
    return [ip_network(f"{(base + i) >> 24}.{((base + i) >> 16) & 255}.{((base + i) >> 8) & 255}.{(base + i) & 255}/32")
            for i in range(count)]  # fmt: skip


def zebra_fib_count(frr_dir: Path) -> int:
    """BGP routes zebra has installed in the kernel (cheap to ask; a full `ip route` dump of 100,000 routes
    every poll would compete for the CPU being measured). Checked against the kernel at the end."""
    try:
        summary = json.loads(vtysh(frr_dir, "show ip route summary json"))
    except ValueError:
        return -1
    return sum(r["fib"] for r in summary.get("routes", []) if r.get("type") == "ebgp")


def kernel_fib_count(netns: str) -> int:
    return run(in_netns(netns, ["ip", "-4", "route", "show", "proto", "bgp"])).count("\n")


def until(condition: Callable[[], bool], timeout: float, pause: float = 0.05) -> float | None:
    """Seconds until condition() holds, or None after timeout."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if condition():
            return time.perf_counter() - started
        time.sleep(pause)
    return None


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentiles(values: list[float], name: str, figures: dict[str, object]) -> None:
    values = sorted(values)
    figures[f"{name}_p50"] = round(statistics.median(values), 1)
    figures[f"{name}_p99"] = round(values[min(len(values) - 1, int(len(values) * 0.99))], 1)


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def speaker_alone(count: int, trials: int) -> dict[str, dict[str, object]]:
    """Each speaker ("gobgp", "bird") into its own real FRR ToR, both pairs up for the whole part and every phase
    run for one speaker right after the other (the single-route trials interleaved), so the load of a shared
    machine weighs on both alike: session start with the routes present, the speaker's memory, one more /32 at a
    time, withdraw all and announce all on the established session."""
    out: dict[str, dict[str, object]] = {kind: {} for kind in SPEAKERS_COMPARED}
    prefixes = routes(count + trials)
    bulk = set(prefixes[:count])
    tag = os.getpid() % 10000
    with tor.bgp_pair(f"bg{tag}s", speaker="gobgp") as gobgp, tor.bgp_pair(f"bb{tag}s", speaker="bird") as bird:
        pairs = {"gobgp": gobgp, "bird": bird}

        def bulk_phase(name: str, desired: set[IPv4Network], wanted: int, session_after: bool = False) -> None:
            for kind, pair in pairs.items():
                cpu = cpu_s(pair.speaker_pid)
                started = time.perf_counter()
                pair.speaker.announce(desired, verify=False)
                out[kind][f"{name}_call_s"] = round(time.perf_counter() - started, 2)
                if session_after:
                    pair.speaker.set_peers([Peer("198.18.0.1", TOR_ASN)])
                took = until(lambda p=pair: zebra_fib_count(p.frr_dir) == wanted, 120)
                out[kind][f"{name}_to_fib_s"] = rounded(took and time.perf_counter() - started)
                out[kind][f"{name}_cpu_s"] = round(cpu_s(pair.speaker_pid) - cpu, 2)

        for pair in pairs.values():
            pair.speaker.set_peers([])  # a MUX starting: every route first, then the session
        bulk_phase("start", bulk, count, session_after=True)
        for kind, pair in pairs.items():
            out[kind]["fib_checked_in_kernel"] = kernel_fib_count(pair.tor) == count
            out[kind]["rss_mb"] = round(rss_mb(pair.speaker_pid), 1)
        one_call: dict[str, list[float]] = {kind: [] for kind in pairs}
        one_fib: dict[str, list[float]] = {kind: [] for kind in pairs}
        current = {kind: set(bulk) for kind in pairs}
        for extra in prefixes[count:]:
            for kind, pair in pairs.items():
                current[kind].add(extra)
                started = time.perf_counter()
                pair.speaker.announce(current[kind], verify=False)
                one_call[kind].append((time.perf_counter() - started) * 1000)
                address = str(extra.network_address)
                until(lambda a=address, p=pair: bool(tor.next_hops(p.tor, a)), 10, 0.002)
                one_fib[kind].append((time.perf_counter() - started) * 1000)
        for kind in pairs:
            percentiles(one_call[kind], "one_announce_call_ms", out[kind])
            percentiles(one_fib[kind], "one_route_to_fib_ms", out[kind])
        bulk_phase("withdraw", set(), 0)
        bulk_phase("established", bulk, count)
    return out


SPEAKERS_COMPARED = ("gobgp", "bird")
# The gobgpd figures keep the names this bench always printed; established_to_fib_s and speaker_rss_mb are the
# packing speaker's (BIRD), every other BIRD figure is prefixed bird_.
GOBGPD_KEYS = {"start_call_s": "start_grpc_s", "rss_mb": "gobgpd_rss_mb", "withdraw_call_s": "withdraw_grpc_s",
               "established_call_s": "established_grpc_s", "established_to_fib_s": "gobgpd_established_to_fib_s",
               "established_cpu_s": "gobgpd_established_cpu_s", "start_cpu_s": "gobgpd_start_cpu_s",
               "withdraw_cpu_s": "gobgpd_withdraw_cpu_s"}  # fmt: skip
BIRD_KEYS = {"rss_mb": "speaker_rss_mb", "established_to_fib_s": "established_to_fib_s",
             "withdraw_to_fib_s": "bird_withdraw_s"}  # fmt: skip


def both_speakers(count: int, trials: int, figures: dict[str, object]) -> None:
    measured = speaker_alone(count, trials)
    for name, value in measured["gobgp"].items():
        figures[GOBGPD_KEYS.get(name, name)] = value
    for name, value in measured["bird"].items():
        figures[BIRD_KEYS.get(name, f"bird_{name}")] = value
    figures["bird_rss_mb"] = figures["speaker_rss_mb"]
    figures["bird_established_to_fib_s"] = figures["established_to_fib_s"]
    bird, gobgpd = figures["established_to_fib_s"], figures["gobgpd_established_to_fib_s"]
    if isinstance(bird, float) and isinstance(gobgpd, float) and gobgpd:
        figures["established_bird_vs_gobgpd_ratio"] = round(bird / gobgpd, 2)


def ratio(bird: object, gobgpd: object) -> str:
    if isinstance(bird, int | float) and isinstance(gobgpd, int | float) and gobgpd:
        return f"{bird / gobgpd:.2f}"
    return "-"


def next_hops(lab: fabric.LabState, address: str) -> list[str]:
    return tor.next_hops(lab.topology.netns("tor"), address)


def through_the_api(lab: fabric.LabState, t: Tenant, trials: int, figures: dict[str, object]) -> None:
    end_to_end, mux_side = [], []
    with lab.operator() as http:
        for i in range(trials):
            started = time.perf_counter()
            address = t.public_ip(f"bench{i}")
            until(lambda a=address: bool(next_hops(lab, a)), 10, 0.002)
            end_to_end.append((time.perf_counter() - started) * 1000)
            for _ in range(100):  # the MUX agent's own figure for this change, once it has reported it
                nodes = {n["name"]: n for n in http.get("/admin/nodes").json()["value"]}
                last = nodes["mux1"]["status"]["details"].get("lastAnnounce", {})
                if last.get("added") == 1 and last.get("revision") != figures.get("_last_revision"):
                    figures["_last_revision"] = last["revision"]
                    mux_side.append(last["ms"])
                    break
                time.sleep(0.05)
    figures.pop("_last_revision", None)
    percentiles(end_to_end, "api_to_fib_ms", figures)
    percentiles(mux_side, "mux_side_ms", figures)


def outage(lab: fabric.LabState, vip: str, fault: Callable[[], None], figures: dict[str, object], name: str) -> None:
    """Apply `fault` to mux1 while UDP flows to vip; figures: ToR drops mux1, last datagram lost."""
    inet = lab.topology.netns("inet")
    with probe.UdpStream(inet, vip, UDP_PORT) as stream:
        time.sleep(0.5)
        at = time.monotonic()
        started = time.perf_counter()
        fault()
        removed = until(lambda: next_hops(lab, vip) == [MUX2], 15, 0.005)
        figures[f"{name}_ecmp_s"] = rounded(removed and time.perf_counter() - started, 3)
        time.sleep(1.5)
        lost, window = stream.lost_after(at)
    figures[f"{name}_lost"] = lost
    figures[f"{name}_loss_s"] = round(window, 3)


def recover(lab: fabric.LabState, vip: str, bfd: bool = True) -> None:
    """Until both MUXes are in the ToR's ECMP set again (and, with bfd, both BFD sessions are up)."""
    tor_dir = tor.run_dir(lab.topology.netns("tor"))
    both = lambda: next_hops(lab, vip) == [MUX1, MUX2] and (not bfd or tor.bfd_up(tor_dir) == {MUX1: True, MUX2: True})  # noqa: E731
    if until(both, 60, 0.1) is None:
        raise RuntimeError("mux1 did not come back into the ToR's ECMP set")


def lab_part(trials: int, speaker: str, figures: dict[str, object]) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="isthmus-bench-bgp-"))
    prefix = f"bg{os.getpid() % 10000}-"
    os.environ["ISTHMUS_MUX_SPEAKER"] = figures["lab_speaker"] = speaker  # the agents inherit it
    lab = fabric.up(workdir, Topology(prefix, hosts=1, muxes=2, gateways=0), log_level="warning")
    try:
        t = Tenant(lab, "00000000-0000-0000-0000-0000000000b9")
        t.nsg("udp", [rule("udp", 100, protocol="Udp", ports=str(UDP_PORT), source="Internet")])
        t.vnet("vnet1", "100.64.0.0/16", {"s": "100.64.1.0/24"}, nsg="udp")
        vip = t.public_ip("svc")
        t.nic("n1", "vnet1", "s", public_ip="svc")
        vm = vms.create(lab, "v1", t.id("networkInterfaces/n1"), "h1")
        recover(lab, vip)
        through_the_api(lab, t, trials, figures)
        mux1 = lab.topology.netns("mux1")
        tor_dir = tor.run_dir(lab.topology.netns("tor"))
        with probe.server(vm.netns, "0.0.0.0", UDP_PORT):
            if not probe.udp_echo(lab.topology.netns("inet"), vip, UDP_PORT, timeout=2.0):
                raise RuntimeError("the public IP does not answer before the faults")
            outage(lab, vip, lambda: silence(mux1, "under0"), figures, "silent_bfd")
            unsilence(mux1)
            recover(lab, vip)
            vtysh(tor_dir, "configure", f"router bgp {TOR_ASN}", f"no neighbor {MUX1} bfd")
            outage(lab, vip, lambda: silence(mux1, "under0"), figures, "silent_hold")
            unsilence(mux1)
            vtysh(tor_dir, "configure", f"router bgp {TOR_ASN}", f"neighbor {MUX1} bfd profile {BFD_PROFILE}")
            recover(lab, vip)

            def kill_mux1() -> None:
                for pid in netns_pids(mux1):
                    os.kill(pid, signal.SIGKILL)

            outage(lab, vip, kill_mux1, figures, "killed")
            fabric.restart_agent(lab, "mux1")
            recover(lab, vip)
    finally:
        fabric.down(workdir, prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--lab-speaker", choices=SPEAKERS, default=DEFAULT_SPEAKER, help="the MUX agents' speaker")
    args = parser.parse_args()
    count = 10_000 if args.quick else 100_000
    trials = 20 if args.quick else 100
    figures: dict[str, object] = {"routes": count, "trials": trials}
    both_speakers(count, trials, figures)
    figures.update(mux_side.measure(count, trials, args.lab_speaker))
    lab_part(trials, args.lab_speaker, figures)
    f = figures
    bulk_goal = "<= 5 s" if count == 100_000 else "(<= 5 s at 100,000)"
    packed_goal = "<= 3 s" if count == 100_000 else "(<= 3 s at 100,000)"
    compared = [  # (what, gobgpd, BIRD, goal): the speaker alone, same run
        (f"MUX starts with {count:,} /32s -> ToR FIB", f["start_to_fib_s"], f["bird_start_to_fib_s"], "s", bulk_goal),
        (f"{count:,} announced, session up -> FIB", f["gobgpd_established_to_fib_s"], f["established_to_fib_s"],
         "s", packed_goal),
        (f"{count:,} withdrawn, session up -> FIB empty", f["withdraw_to_fib_s"], f["bird_withdraw_s"], "s",
         bulk_goal),
        ("  announce() call for those", f["established_grpc_s"], f["bird_established_call_s"], "s", "-"),
        ("  speaker CPU for the live announce", f["gobgpd_established_cpu_s"], f["bird_established_cpu_s"], "s", "-"),
        (f"speaker memory with {count:,} routes", f["gobgpd_rss_mb"], f["speaker_rss_mb"], "MB", "-"),
        (f"one more /32 on {count:,}: announce() p50", f["one_announce_call_ms_p50"],
         f["bird_one_announce_call_ms_p50"], "ms", "<= 10 ms"),
        ("one more /32 -> ToR FIB p50", f["one_route_to_fib_ms_p50"], f["bird_one_route_to_fib_ms_p50"], "ms", "-"),
        ("one more /32 -> ToR FIB p99", f["one_route_to_fib_ms_p99"], f["bird_one_route_to_fib_ms_p99"], "ms", "-"),
    ]  # fmt: skip
    print("\nisthmus BGP benchmark: the speaker alone, gobgpd and BIRD into the same FRR ToR" +
          (" --quick" if args.quick else ""))  # fmt: skip
    print(f"{'':<46} {'gobgpd':>10} {'BIRD':>10} {'BIRD/gobgpd':>12}  target")
    for name, gobgpd, bird, unit, goal in compared:
        print(f"{name:<46} {f'{gobgpd} {unit}':>10} {f'{bird} {unit}':>10} {ratio(bird, gobgpd):>12}  {goal}")
    rows = [
        ("lab: public IP PUT -> ToR FIB p50/p99", f"{f['api_to_fib_ms_p50']} / {f['api_to_fib_ms_p99']} ms",
         "p50 <= 100 ms"),
        ("lab: MUX side (document -> speaker) p50/p99", f"{f['mux_side_ms_p50']} / {f['mux_side_ms_p99']} ms",
         "<= 10 ms"),
        (f"MUX agent at {count:,} VIPs: delta -> kernel + speaker p50/p99",
         f"{f['mux_side_100k_ms_p50']} / {f['mux_side_100k_ms_p99']} ms", "p50 <= 10 ms"),
        ("  the same change as a whole document (before deltas) p50", f"{f['mux_side_whole_document_ms_p50']} ms "
         f"({f['mux_side_whole_vs_delta']}x)", "baseline"),
    ]  # fmt: skip
    for name, what in (("silent_bfd", "link silently dead, BFD"), ("silent_hold", "link silently dead, hold timer"),
                       ("killed", "MUX processes killed")):  # fmt: skip
        goal = "<= 0.5 s" if name == "silent_bfd" else ("baseline" if name == "silent_hold" else "-")
        rows.append((f"lab: {what}: out of ECMP / loss", f"{f[name + '_ecmp_s']} s / {f[name + '_loss_s']} s "
                     f"({f[name + '_lost']} lost)", goal))  # fmt: skip
    bfd, hold = f.get("silent_bfd_ecmp_s"), f.get("silent_hold_ecmp_s")
    if isinstance(bfd, float) and isinstance(hold, float) and bfd > 0:
        f["bfd_vs_hold_ratio"] = round(hold / bfd, 1)
        rows.append(("hold timer / BFD detection", f"{f['bfd_vs_hold_ratio']}x", "-"))
    print(f"\nthe lab: two MUXes with their agents (speaker: {f['lab_speaker']})")
    for name, value, goal in rows:
        print(f"{name:<46} {value:>36}  {goal}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
