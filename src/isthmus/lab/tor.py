"""The top-of-rack router: FRR (zebra, staticd, bfdd, bgpd) in the ToR namespace. It learns every public
IP as a /32 from the MUXes over eBGP (ECMP across them, BFD 100 ms x 3 on every session) and sends
everything else towards the internet host."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from isthmus.lab.topology import INTERNET_HOST, MUX_ASN, TOR_ASN, TOR_UNDERLAY
from isthmus.linux.frr import BFD_PROFILE, bfd_profile, start_frr, vtysh
from isthmus.linux.gobgp import Peer
from isthmus.linux.run import add_netns, delete_netns, ip_batch, ip_json, sysctl
from isthmus.linux.speaker import Speaker
from isthmus.linux.speakers import mux_speaker
from isthmus.linux.supervisor import Supervisor


def run_dir(netns: str) -> Path:
    """Where the ToR's FRR files live: readable by the frr user (a pytest tmp dir is not)."""
    return Path("/run/isthmus") / netns


# zebra waits 10 ms by default before it processes its RIB queue; bgpd's own 50 ms queue hold is not
# configurable. Without the wait one route reaches the FIB in ~55 ms instead of ~65 ms.
TOR_ZEBRA = "hostname tor\nzebra work-queue 0\n"


def start_tor(netns: str, workdir: Path, mux_addresses: list[str]) -> list[int]:
    """The ToR's FRR: eBGP to every MUX (ECMP across them), a default route towards the internet host.
    Returns the daemons' PIDs."""
    sysctl(netns, {"net.ipv4.fib_multipath_hash_policy": "1"})  # ECMP on the 5-tuple, as switches hash
    bgpd = tor_bgpd(TOR_UNDERLAY, mux_addresses, bfd=True)
    staticd = f"hostname tor\nip route 0.0.0.0/0 {INTERNET_HOST}\n"
    bfdd = f"hostname tor\n{bfd_profile()}"
    daemons = start_frr(netns, workdir, {"zebra": TOR_ZEBRA, "staticd": staticd, "bfdd": bfdd, "bgpd": bgpd})
    return [pid for daemon in daemons if (pid := daemon.pid) is not None]


def tor_bgpd(router_id: str, mux_addresses: list[str], *, bfd: bool) -> str:
    """bgpd's config: eBGP to each MUX with fast timers (and BFD), ECMP across them."""
    neighbours = "".join(
        f" neighbor {address} remote-as {MUX_ASN}\n neighbor {address} timers 1 3\n"
        f" neighbor {address} timers connect 1\n" + (f" neighbor {address} bfd profile {BFD_PROFILE}\n" if bfd else "")
        for address in mux_addresses
    )
    return (
        f"hostname tor\nrouter bgp {TOR_ASN}\n bgp router-id {router_id}\n no bgp ebgp-requires-policy\n"
        f"{neighbours} address-family ipv4 unicast\n  maximum-paths 16\n exit-address-family\n"
    )


def established(workdir: Path) -> dict[str, bool]:
    """BGP neighbour -> Established?, as the ToR's bgpd reports it."""
    out = vtysh(workdir, "show bgp summary json")
    try:
        peers = json.loads(out).get("ipv4Unicast", {}).get("peers", {})
    except ValueError:
        return {}
    return {address: peer.get("state") == "Established" for address, peer in peers.items()}


def bfd_up(workdir: Path) -> dict[str, bool]:
    """BFD peer -> up?, as the ToR's bfdd reports it."""
    try:
        return {peer["peer"]: peer["status"] == "up" for peer in json.loads(vtysh(workdir, "show bfd peers json"))}
    except (ValueError, KeyError, TypeError):
        return {}


@contextmanager
def bgp_pair(tag: str, tor_address: str = "198.18.0.1", mux_address: str = "198.18.0.11",
             speaker: str = "gobgp") -> Iterator[BgpPair]:  # fmt: skip
    """A ToR namespace (FRR zebra + bgpd, ECMP) and a MUX namespace with the speaker ("gobgp": gobgpd on a unix
    socket, "bird": BIRD), linked by a veth; the speaker configured and peering. For tests and benchmarks of the
    speaker alone. Everything is removed on exit (processes by their supervisors' PIDs, namespaces by name)."""
    tor, mux = f"{tag}-tor", f"{tag}-mux"
    frr_dir = run_dir(tor)
    daemons: list[Supervisor] = []
    made, daemon = mux_speaker(speaker, run_dir(mux), mux)
    try:
        add_netns(tor)
        add_netns(mux)
        ip_batch(tor, [f"link add eth0 type veth peer name eth0 netns {mux}", f"addr add {tor_address}/24 dev eth0",
                       "link set eth0 up"])  # fmt: skip
        ip_batch(mux, [f"addr add {mux_address}/24 dev eth0", "link set eth0 up"])
        bgpd = tor_bgpd(tor_address, [mux_address], bfd=False)
        daemons += start_frr(tor, frr_dir, {"zebra": TOR_ZEBRA, "bgpd": bgpd})
        process = Supervisor(daemon)
        daemons.append(process)
        process.ensure()
        assert process.pid is not None
        made.configure(MUX_ASN, mux_address, [Peer(tor_address, TOR_ASN)])
        deadline = time.monotonic() + 20
        while not all(established(frr_dir).values()) or not established(frr_dir):
            if time.monotonic() > deadline:
                raise RuntimeError("the BGP session did not come up")
            time.sleep(0.05)
        yield BgpPair(tor, mux, frr_dir, made, process.pid)
    finally:
        made.close()
        for supervised in reversed(daemons):
            supervised.stop()
        delete_netns(tor)
        delete_netns(mux)
        shutil.rmtree(frr_dir, ignore_errors=True)
        shutil.rmtree(run_dir(mux), ignore_errors=True)


@dataclass(frozen=True)
class BgpPair:
    tor: str
    mux: str
    frr_dir: Path
    speaker: Speaker  # a GobgpSpeaker or a BirdSpeaker, as asked for
    speaker_pid: int


def next_hops(tor: str, address: str) -> list[str]:
    """Next hops of the BGP route to address/32 in the ToR's kernel FIB ([] if none): one route, not a dump."""
    routes = ip_json(tor, "route", "show", f"{address}/32", "proto", "bgp")
    if not routes:
        return []
    return sorted(h["gateway"] for h in routes[0].get("nexthops", [])) or [routes[0].get("gateway", "")]


def fib_routes(tor: str) -> dict[str, list[str]]:
    """Prefix -> next hops of the BGP routes in the ToR's kernel FIB."""
    out = {}
    for route in ip_json(tor, "route", "show", "proto", "bgp"):
        hops = [h["gateway"] for h in route.get("nexthops", [])] or [route.get("gateway", "")]
        out[route["dst"]] = sorted(hops)
    return out
