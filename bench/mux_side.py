"""The MUX side at scale: a real MUX agent (its reconciler, its BGP speaker, FRR bfdd, kernel routes)
carrying 100,000 VIPs, peering with a real FRR ToR, in namespaces made here (needs root).

Measured per public IP change: the answer of the agent protocol in hand (bytes) → decoded, applied to the
document held, reconciled → routes in the kernel and handed to the speaker (the agent's default, BIRD, or
--speaker). As a baseline in the same run: the same change arriving as the whole document (what every
change cost before deltas).

Used by bench/bgp.py (`measure`); runs alone too: `bench/mux_side.py [--quick]` prints a table and one
JSON object as its last line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from ipaddress import IPv4Address, ip_address

from isthmus.lab.topology import MUX_ASN, TOR_ASN
from isthmus.lab.tor import TOR_ZEBRA, run_dir, tor_bgpd
from isthmus.linux.frr import start_frr
from isthmus.linux.run import NETNS_DIR, add_netns, delete_netns, ip_batch, netns_pids
from isthmus.linux.speaker import DEFAULT_SPEAKER, SPEAKERS
from isthmus.model.addresses import Address
from isthmus.model.documents import BgpIdentity, BgpPeer, MuxDelta, MuxDocument, Vip, decode_document, encode, receive

TOR_ADDRESS, MUX_ADDRESS, BACKEND = "198.18.0.1", "198.18.0.11", "198.18.0.101"


def vip(index: int) -> IPv4Address:
    """The index-th address of 198.18.0.0/15 above the underlay (distinct, stable)."""
    return IPv4Address(int(IPv4Address("198.18.16.0")) + index)


def worker(count: int, trials: int, speaker: str) -> dict[str, float]:
    """Inside the MUX namespace: the agent's reconciler takes the whole table, then one change at a time."""
    from isthmus.agents.mux import MuxReconciler

    reconciler = MuxReconciler("mux-bench", run_dir(f"mux-bench-{os.getpid()}"), speaker)
    hop = ip_address(BACKEND)
    bgp = BgpIdentity(MUX_ASN, IPv4Address(MUX_ADDRESS), (BgpPeer(ip_address(TOR_ADDRESS), TOR_ASN),))
    vips: dict[Address, Vip] = {vip(i): Vip(hop, f"pip{i}") for i in range(count)}
    document = MuxDocument("mux-bench", 1, bgp, vips)
    started = time.perf_counter()
    held = decode_document(encode(document))
    decoded = time.perf_counter()
    reconciler.reconcile(held, full=True)
    figures = {
        "mux_full_decode_s": round(decoded - started, 2),
        "mux_full_pass_s": round(time.perf_counter() - decoded, 2),
    }
    delta_ms, whole_ms, delta_bytes = [], [], []
    revision = 1
    for trial in range(trials):
        prefix = vip(count + trial)
        delta = MuxDelta(revision, revision + 1, bgp, {prefix: Vip(hop, f"new{trial}")}, ())
        if trial % 2:  # every other change withdraws the VIP the change before added
            delta = MuxDelta(revision, revision + 1, bgp, {}, (vip(count + trial - 1),))
        payload = b'{"revision":%d,"deltas":[%s]}' % (revision + 1, encode(delta))
        delta_bytes.append(len(payload))
        started = time.perf_counter()
        held, deltas = receive(held, json.loads(payload))
        reconciler.reconcile(held, full=False, deltas=deltas)
        delta_ms.append((time.perf_counter() - started) * 1000)
        revision += 1
    for trial in range(max(3, trials // 10)):  # the baseline: the same kind of change as a whole document
        assert isinstance(held, MuxDocument)
        changed = dict(held.vips)
        changed[vip(count + trials + trial)] = Vip(hop, f"whole{trial}")
        payload = b'{"revision":%d,"document":%s}' % (
            revision + 1,
            encode(MuxDocument("mux-bench", revision + 1, bgp, changed)),
        )
        started = time.perf_counter()
        held, _none = receive(held, json.loads(payload))
        reconciler.reconcile(held, full=False)
        whole_ms.append((time.perf_counter() - started) * 1000)
        revision += 1
    ordered = sorted(delta_ms)
    figures.update(
        mux_side_100k_ms_p50=round(statistics.median(delta_ms), 2),
        mux_side_100k_ms_p99=round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
        mux_side_whole_document_ms_p50=round(statistics.median(whole_ms), 1),
        mux_side_delta_bytes_p50=statistics.median(delta_bytes),
        mux_side_vips=count,
    )
    figures["mux_side_whole_vs_delta"] = round(
        figures["mux_side_whole_document_ms_p50"] / figures["mux_side_100k_ms_p50"], 1
    )
    return figures


def measure(count: int, trials: int, speaker: str = DEFAULT_SPEAKER) -> dict[str, float]:
    """A ToR and a MUX namespace, the worker run inside the MUX's; everything removed afterwards."""
    tag = f"ms{os.getpid() % 10000}"
    tor, mux = f"{tag}-tor", f"{tag}-mux"
    frr_dir = run_dir(tor)
    try:
        add_netns(tor)
        add_netns(mux)
        ip_batch(
            tor,
            [
                f"link add eth0 type veth peer name eth0 netns {mux}",
                f"addr add {TOR_ADDRESS}/24 dev eth0",
                f"addr add {BACKEND}/24 dev eth0",
                "link set eth0 up",
            ],
        )  # fmt: skip (the backend: a host)
        ip_batch(mux, [f"addr add {MUX_ADDRESS}/24 dev eth0", "link set eth0 up"])
        start_frr(tor, frr_dir, {"zebra": TOR_ZEBRA, "bgpd": tor_bgpd(TOR_ADDRESS, [MUX_ADDRESS], bfd=False)})
        command = ["nsenter", f"--net={NETNS_DIR}/{mux}", sys.executable, __file__, "--worker",
                   "--count", str(count), "--trials", str(trials), "--speaker", speaker]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the MUX-side worker failed: {done.stderr[-2000:]}")
        figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        return figures
    finally:
        for netns in (mux, tor):  # the daemons the worker's agent and this bench started, by namespace
            for pid in netns_pids(netns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            delete_netns(netns)
        for directory in (frr_dir, *frr_dir.parent.glob("mux-bench-*")):
            shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 VIPs, 20 changes: under a minute")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--speaker", choices=SPEAKERS, default=DEFAULT_SPEAKER)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.count, args.trials, args.speaker)))
        return
    count, trials = (10_000, 20) if args.quick else (args.count, args.trials)
    figures = measure(count, trials, args.speaker)
    print(f"\nMUX side with {count} VIPs (real agent reconciler, {args.speaker}, FRR ToR)")
    print(f"  one change as a delta → kernel + gobgpd: p50 {figures['mux_side_100k_ms_p50']} ms, "
          f"p99 {figures['mux_side_100k_ms_p99']} ms   (target p50 ≤ 10 ms)")  # fmt: skip
    print(f"  the same as a whole document (before deltas): p50 {figures['mux_side_whole_document_ms_p50']} ms "
          f"({figures['mux_side_whole_vs_delta']}x)")  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
