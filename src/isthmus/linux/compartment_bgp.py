"""A gateway compartment's BGP with its sites: one FRR bgpd per compartment, supervised, driven over its vty.

    compartment netns: bgpd -Z (no zebra: it installs nothing) ── eBGP ── each BGP connection's site
        (GRE: over the tunnel's inner addresses; L3: on the link network; IPsec: through the tunnel, from the
         GatewaySubnet address)
    the agent: neighbours and networks set live over the vty, what bgpd learned read back as JSON, the best
    paths of each site installed by the agent itself (routes of protocol 80, at most BGP_LEARNED_ROUTES per site)

bgpd's start-up configuration is the instance alone (ASN, router id, graceful restart), so a neighbour added,
changed or removed is a live change that leaves the other sessions alone; a new ASN or router id restarts it.
Each neighbour carries a description with the digest of its own lines, so a pass tells what bgpd runs from
what it asks for by reading bgpd back (an agent that restarted adopts bgpd and changes nothing).
Graceful restart is on: a site that sees the gateway come back from another node (a failover) keeps its
routes to the VNet while the new session comes up.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from isthmus.linux import vty
from isthmus.linux.frr import frr_daemon
from isthmus.linux.routes import Route, ensure_routes
from isthmus.linux.supervisor import Daemon

ROUTE_PROTO = "80"  # learned routes, apart from the router's (77), GRE's (78) and the L3 links' (79)
KEEPALIVE_S, HOLD_S = 10, 30  # a site that stops answering is dropped in 30 s (FRR's default: 180)
DESCRIPTION = "isthmus-"
COMPLETE_MS = 3000


@dataclass(frozen=True, order=True)
class Neighbor:
    """One BGP connection's site, as the compartment's bgpd peers with it."""

    address: str  # the site's bgpPeeringAddress
    asn: int
    local: str  # the gateway's address for this session (update-source)
    connection: str  # the connection's id
    device: str | None  # where its learned routes go (a GRE or L3 device; None: routed as the peer is)
    multihop: bool = False  # behind an IPsec tunnel rather than on a link

    def lines(self) -> list[str]:
        """Its neighbour lines inside `router bgp`, without the description."""
        out = [
            f" neighbor {self.address} remote-as {self.asn}",
            f" neighbor {self.address} update-source {self.local}",
            f" neighbor {self.address} timers {KEEPALIVE_S} {HOLD_S}",
            f" neighbor {self.address} timers connect 1",
        ]
        if self.multihop:
            out.append(f" neighbor {self.address} ebgp-multihop 2")
        return out

    @property
    def tag(self) -> str:
        return DESCRIPTION + hashlib.sha256("\n".join(self.lines()).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Speaker:
    """What a compartment's bgpd should run."""

    asn: int
    router_id: str
    neighbors: tuple[Neighbor, ...]
    networks: tuple[str, ...]  # the VNet's address space, advertised to every site


def workdir(run_dir: Path) -> Path:
    return run_dir / "bgp"


def vty_socket(run_dir: Path) -> Path:
    return workdir(run_dir) / "run" / "bgpd.vty"


def bgpd_daemon(netns: str, run_dir: Path, asn: int, router_id: str) -> Daemon:
    """The compartment's bgpd: the instance alone; neighbours and networks come live (`ensure`)."""
    config = (
        f"frr defaults traditional\nhostname {netns}\n"
        f"router bgp {asn}\n bgp router-id {router_id}\n no bgp ebgp-requires-policy\n"
        " no bgp network import-check\n bgp graceful-restart\nexit\n"
    )
    return frr_daemon(netns, workdir(run_dir), "bgpd", config, extra=("-Z",))


def changes(speaker: Speaker, running: Mapping[str, str], networks: Iterable[str]) -> list[str]:
    """The configuration lines that take a bgpd running neighbours `running` (address -> description) and
    advertising `networks` to `speaker`; [] when it is there already."""
    wanted = {n.address: n for n in speaker.neighbors}
    lines: list[str] = []
    for address in sorted(set(running) - set(wanted)):
        lines.append(f" no neighbor {address}")
    for address, neighbor in sorted(wanted.items()):
        if running.get(address) == neighbor.tag:
            continue
        if address in running:  # changed: made anew (its session restarts, as any changed BGP peer's does)
            lines.append(f" no neighbor {address}")
        lines += [*neighbor.lines(), f" neighbor {address} description {neighbor.tag}"]
    have, want = set(networks), set(speaker.networks)
    family = [f"  no network {p}" for p in sorted(have - want)] + [f"  network {p}" for p in sorted(want - have)]
    if family:
        lines += [" address-family ipv4 unicast", *family, " exit-address-family"]
    return [f"router bgp {speaker.asn}", *lines] if lines else []


_NETWORK = re.compile(r"^  network (\S+)$", re.MULTILINE)


def ensure(run_dir: Path, speaker: Speaker) -> int:
    """Make bgpd run `speaker`'s neighbours and networks; the number of lines it took."""
    socket = vty_socket(run_dir)
    running = {address: str(n.get("nbrDesc", "")) for address, n in _neighbors(socket).items()}
    networks = _NETWORK.findall(vty.ask(socket, "enable", "show running-config")[1].output)
    lines = changes(speaker, running, networks)
    vty.configure(socket, lines)
    return len(lines)


def _neighbors(socket: Path) -> dict[str, dict[str, Any]]:
    data = json.loads(vty.show(socket, "show bgp neighbors json") or "{}")
    return {address: n for address, n in data.items() if isinstance(n, dict) and "remoteAs" in n}


# --- what bgpd says ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Learned:
    network: str
    next_hop: str
    as_path: str
    origin: str  # FRR's: IGP, EGP, incomplete


@dataclass(frozen=True)
class Session:
    """One neighbour as bgpd reports it, and the best paths it gave."""

    state: str  # FRR's bgpState: Idle, Connect, Active, OpenSent, OpenConfirm, Established
    up_ms: int
    messages_sent: int
    messages_received: int
    routes: tuple[Learned, ...]
    advertised: tuple[tuple[str, str], ...]  # (network, AS path beyond the gateway's own)

    @property
    def established(self) -> bool:
        return self.state == "Established"

    @property
    def complete(self) -> bool:
        """Its routes are the site's whole set: the session has been up for COMPLETE_MS. Not End-of-RIB: FRR
        sends it to a peer that restarted (a gateway that failed over) before the UPDATEs its coalescing timer
        holds back, so a set taken at End-of-RIB was seen empty."""
        return self.established and self.up_ms >= COMPLETE_MS


def sessions(run_dir: Path) -> dict[str, Session]:
    """Every neighbour's session (by address): state, counters, the best paths learned from it (each prefix
    once, sorted) and what is advertised to it."""
    socket = vty_socket(run_dir)
    neighbors = _neighbors(socket)
    table = json.loads(vty.show(socket, "show bgp ipv4 unicast json") or "{}").get("routes", {})
    by_peer: dict[str, list[Learned]] = {}
    for network, paths in table.items():
        for path in paths:
            peer = path.get("peerId", "")
            if path.get("bestpath") and peer in neighbors:
                hop = next((h.get("ip", "") for h in path.get("nexthops", ()) if h.get("used", True)), "")
                by_peer.setdefault(peer, []).append(Learned(network, hop, path.get("path", ""), path.get("origin", "")))
    out = {}
    for address, n in neighbors.items():
        stats = n.get("messageStats", {})
        advertised: tuple[tuple[str, str], ...] = ()
        if n.get("bgpState") == "Established":
            answer = vty.show(socket, f"show bgp ipv4 unicast neighbors {address} advertised-routes json")
            routes = json.loads(answer or "{}").get("advertisedRoutes", {})
            advertised = tuple(sorted((network, str(r.get("path", ""))) for network, r in routes.items()))
        out[address] = Session(
            state=str(n.get("bgpState", "Idle")),
            up_ms=int(n.get("bgpTimerUpMsec", 0)) if n.get("bgpState") == "Established" else 0,
            messages_sent=int(stats.get("totalSent", 0)),
            messages_received=int(stats.get("totalRecv", 0)),
            routes=tuple(sorted(by_peer.get(address, ()), key=lambda r: _order(r.network))),
            advertised=advertised,
        )
    return out


def _order(network: str) -> tuple[int, int, int]:
    net = ip_network(network, strict=False)
    return net.version, int(net.network_address), net.prefixlen


def acceptable(routes: Iterable[Learned], own: Iterable[str], limit: int) -> tuple[list[Learned], int]:
    """What the gateway takes from one site: never a default route or a prefix overlapping the VNet's own
    address space (a site cannot hijack the VNet), at most `limit` of the rest (the first by address); and how
    many were dropped over the limit."""
    spaces = [ip_network(p, strict=False) for p in own]
    taken = []
    for route in routes:
        network = ip_network(route.network, strict=False)
        if network.prefixlen == 0 or any(network.overlaps(s) for s in spaces if s.version == network.version):
            continue
        taken.append(route)
    return taken[:limit], max(0, len(taken) - limit)


def install(netns: str, routes: Iterable[Route]) -> int:
    """The learned routes in the compartment's kernel, exactly these (protocol 80)."""
    return ensure_routes(netns, routes, proto=ROUTE_PROTO)


# --- Azure's shapes ------------------------------------------------------------------------------------


def peer_state(session: Session | None) -> str:
    """Azure's BgpPeerState for a session (Unknown when bgpd does not know the neighbour)."""
    if session is None:
        return "Unknown"
    if session.established:
        return "Connected"
    return "Idle" if session.state == "Idle" else "Connecting"


def duration(ms: int) -> str:
    """A .NET TimeSpan as Azure writes connectedDuration: hh:mm:ss.fffffff (days folded into hours)."""
    seconds, rest = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{rest * 10_000:07d}"


def report(neighbor: Neighbor, session: Session | None, learned: list[Learned] | None, dropped: int,
           asn: int) -> dict[str, Any]:  # fmt: skip
    """The connection report's `bgp` part: Azure's BgpPeerStatus, and GatewayRoutes learned (None: not known
    yet, the controller keeps what it holds) and advertised."""
    peer = {
        "localAddress": neighbor.local,
        "neighbor": neighbor.address,
        "asn": neighbor.asn,
        "state": peer_state(session),
        "connectedDuration": duration(session.up_ms if session else 0),
        "routesReceived": len(session.routes) if session else 0,
        "messagesSent": session.messages_sent if session else 0,
        "messagesReceived": session.messages_received if session else 0,
    }
    common = {"localAddress": neighbor.local, "sourcePeer": neighbor.address, "weight": 0}
    return {
        "peer": peer,
        "learnedRoutes": None if learned is None else [
            {**common, "network": r.network, "nextHop": r.next_hop, "origin": "EBgp", "asPath": r.as_path}
            for r in learned
        ],
        "learnedRoutesDropped": dropped,
        "advertisedRoutes": [
            {**common, "sourcePeer": "", "network": network, "nextHop": neighbor.local, "origin": "Igp",
             "asPath": f"{asn} {path}".strip()}
            for network, path in (session.advertised if session else ())
        ],
    }  # fmt: skip
