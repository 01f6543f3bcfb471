"""The MUX agent: announces every VIP of the MUX document over BGP (BIRD or gobgpd, supervised here) and
forwards each to its backend with a plain /32 route; a public IP gateway pools share is steered by the site's
address (and GRE key) to the gateway node carrying that site's connection (linux/steering.py).

Stateless and identical on every MUX (ECMP-safe): a backend that moves changes the route here, never the
announcement. The speaker (--speaker: BIRD over its control socket, linux/bird.py, or gobgpd over gRPC on a
unix socket) runs in this node's namespace and is restarted (then re-configured and re-announced by the same
pass) if it dies; an agent that restarts adopts the speaker and bfdd it left running (linux/supervisor.py).
It observes its BGP sessions (each peer's state, sampled every quarter second by the agent shell) and reports
them as the status report's `sessions`.
"""

from __future__ import annotations

import logging
import time
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from isthmus.agents.loop import Outcome
from isthmus.linux.frr import BFD_PROFILE, bfd_profile, frr_daemon
from isthmus.linux.routes import Route, ensure_routes
from isthmus.linux.run import LinuxError, ip_json, sysctl
from isthmus.linux.speaker import DEFAULT_SPEAKER, DOWN, Peer
from isthmus.linux.speakers import mux_speaker
from isthmus.linux.steering import Entry, Target, ensure_steering
from isthmus.linux.supervisor import Daemon, Supervisor
from isthmus.model import limits
from isthmus.model.addresses import Address, Network
from isthmus.model.documents import Delta, MuxDelta, MuxDocument, Steer, Vip
from isthmus.model.steering import SteerKey

log = logging.getLogger("isthmus.agent.mux")


def mux_bfdd(run_dir: Path, local: str, peers: list[str]) -> Daemon:
    """FRR bfdd on the MUX, one session per BGP peer with the ToR's profile (lab/tor.py). bfdd daemonises,
    so it outlives an agent killed with -9; the next agent's supervisor adopts it if its configuration is
    the same (and replaces it when the peers change)."""
    session = " peer {} local-address {}\n  profile {}\n !\n"
    sessions = "".join(session.format(peer, local, BFD_PROFILE) for peer in sorted(peers))
    return frr_daemon(None, run_dir / "bfdd", "bfdd", f"hostname mux\n{bfd_profile()}{sessions}")


class MuxReconciler:
    def __init__(self, node: str, run_dir: Path, speaker: str = DEFAULT_SPEAKER) -> None:
        self.node = node
        self.devices: dict[str, str] = {}  # next hop -> the device it is reached on
        self.run_dir = run_dir
        self.speaker, daemon = mux_speaker(speaker, run_dir)  # ValueError for a speaker there is none of
        self.gobgpd = Supervisor(daemon)  # the speaker's daemon: BIRD or gobgpd (the status keys say gobgpd)
        self.bfdd = Supervisor()  # its sessions come with the first document that has BGP
        self.last_announce: dict[str, Any] = {}
        self.routes: dict[Address, Route] | None = None  # the forwarding routes this agent last left in the kernel
        self.networks: dict[Address, Network] = {}  # each VIP's /32 (/128), made once: what the speaker takes
        self.announcing: set[Network] = set()  # the networks of the document's VIPs
        self.session: tuple[int, str, tuple[Peer, ...]] | None = None
        self.steered: tuple[Steer, ...] | None = None  # the steering this agent last applied (None: unknown)
        self.last_steering: dict[str, Any] = {}
        self.sessions: dict[str, str] = {}  # the last sample of the speaker's sessions: peer address -> state
        sysctl(None, {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0"})

    def routes_via(self, next_hop: str) -> list[str]:
        """The VIPs this MUX now forwards to `next_hop` (what it tells a gateway that asks: agents/witness.py)."""
        routed = {str(address) for address, route in (self.routes or {}).items() if route.via == next_hop}
        routed |= {str(s.vip) for s in self.steered or () if str(s.next_hop) == next_hop}  # shared addresses
        return sorted(routed)

    def healthy(self) -> bool:
        bfd_ok = self.bfdd.daemon is None or self.bfdd.alive()
        return self.gobgpd.healthy() and bfd_ok

    def observe(self) -> bool:
        """Sample the speaker's sessions; True if a state changed. A speaker that does not answer has every
        session Down (its peers have lost it too); one that answers too slowly (busy with a large table, say)
        keeps the last sample rather than flapping to Down: its sessions are up for all that, and a hung one
        is replaced on a heartbeat, whose sessions are then sampled."""
        try:
            sessions = self.speaker.sessions()
        except TimeoutError:
            return False
        except Exception as error:
            sessions = dict.fromkeys(self._peers(), DOWN)
            if sessions != self.sessions:
                log.warning("BGP sessions: the speaker does not answer: %s", error)
        changed = sessions != self.sessions
        self.sessions = sessions
        return changed

    def observed(self) -> dict[str, Any]:
        """The last sample of the sessions, the first REPORT_BGP_SESSIONS by address."""
        return {"sessions": dict(sorted(self.sessions.items())[: limits.REPORT_BGP_SESSIONS])}

    def _peers(self) -> list[str]:
        """The addresses of the peers the document gave the speaker last."""
        return [peer.address for peer in self.session[2]] if self.session is not None else []

    def _device(self, next_hop: str) -> str:
        if next_hop not in self.devices:
            [route] = ip_json(None, "route", "get", next_hop)
            self.devices[next_hop] = route["dev"]
        return self.devices[next_hop]

    def _route(self, address: Address, vip: Vip | None) -> Route | None:
        """The forwarding route of one VIP (IPv4 with a backend; the others are only announced)."""
        if vip is None or vip.next_hop is None or address.version != 4:
            return None
        hop = str(vip.next_hop)
        return Route(str(address), self._device(hop), hop)

    def _steer(self, doc: MuxDocument, *, full: bool) -> int:
        """The shared public IPs' steering (linux/steering.py): each site's packets to the node carrying it.
        Compared whole with what was applied last (a few hundred entries at most)."""
        if not full and doc.steering == self.steered:
            return 0
        self.steered = None  # unknown until applied
        started = time.perf_counter()
        entries = [
            Entry(str(s.vip), SteerKey(s.site, s.protocol, s.gre_key), Target(int(s.next_hop), self._device(hop), hop))
            for s in doc.steering
            if s.next_hop is not None and s.next_hop.version == 4 and s.vip.version == 4 and (hop := str(s.next_hop))
        ]
        changes = ensure_steering(None, entries, verify=full)
        self.steered = doc.steering
        self.last_steering = {"revision": doc.revision, "entries": len(entries), "changes": changes,
                              "ms": round((time.perf_counter() - started) * 1000, 2)}  # fmt: skip
        return changes

    def _network(self, address: Address) -> Network:
        network = self.networks.get(address)
        if network is None:
            network = self.networks[address] = ip_network(address)
        return network

    def reconcile(self, doc: MuxDocument, *, full: bool, deltas: tuple[Delta, ...] = ()) -> Outcome:
        started = time.perf_counter()
        if full:
            self.devices.clear()
        # A delta names the VIPs that changed: only those are looked at (a MUX carries every VIP). Between
        # full passes the kernel and gobgpd are compared with what this agent last made them, so one changed
        # public IP costs one `ip` call and one gRPC stream (the heartbeat watches the daemons).
        touched: set[Address] | None = None
        changed: set[Network] | None = None  # the networks the speaker is to look at (None: all)
        routes = self.routes
        if not full and deltas and routes is not None:
            touched = {p for d in deltas if isinstance(d, MuxDelta) for p in (*d.set_vips, *d.removed_vips)}
        try:
            if touched is None or routes is None:
                wanted = {p: r for p, r in ((p, self._route(p, v)) for p, v in doc.vips.items()) if r is not None}
                known = None if full or routes is None else set(routes.values())
                changes = ensure_routes(None, wanted.values(), known)
                routes = self.routes = wanted
                self.networks = {address: self._network(address) for address in doc.vips}
                self.announcing = set(self.networks.values())
            else:
                before = {routes[p] for p in touched if p in routes}
                after = {}
                changed = {self._network(p) for p in touched}
                for prefix in touched:
                    routes.pop(prefix, None)
                    route = self._route(prefix, doc.vips.get(prefix))
                    if route is not None:
                        after[prefix] = routes[prefix] = route
                    if prefix in doc.vips:
                        self.announcing.add(self.networks[prefix])
                    else:
                        self.announcing.discard(self.networks.pop(prefix))
                changes = ensure_routes(None, after.values(), before)
            changes += self._steer(doc, full=full)
        except LinuxError:
            self.routes = None  # what the kernel holds is unknown now: the next pass reads it
            raise
        fresh = self.gobgpd.ensure(probe=full)
        bgp = doc.bgp
        added = withdrawn = 0
        if bgp:
            peers = [Peer(str(p.address), p.asn) for p in bgp.peers]
            session = (bgp.asn, str(bgp.router_id), tuple(peers))
            reconfigure = full or fresh or session != self.session
            changes += self.bfdd.ensure(mux_bfdd(self.run_dir, str(bgp.router_id), [p.address for p in peers]))
            if reconfigure:
                changes += self.speaker.start(bgp.asn, str(bgp.router_id))
            added, withdrawn = self.speaker.announce(self.announcing, verify=full or fresh, changed=changed)
            if added or withdrawn:  # desired state in hand -> the changed routes handed to gobgpd
                self.last_announce = {"revision": doc.revision, "added": added, "withdrawn": withdrawn,
                                      "ms": round((time.perf_counter() - started) * 1000, 2)}  # fmt: skip
            if reconfigure:
                changes += self.speaker.set_peers(peers)  # after announcing: a new session gets packed UPDATEs
            self.session = session
        details = {
            "vips": len(routes),
            "steering": len(doc.steering),
            "lastSteering": self.last_steering,
            "changes": changes,
            "announced": len(doc.vips),
            "added": added,
            "withdrawn": withdrawn,
            "gobgpdStarted": fresh,
            "lastAnnounce": self.last_announce,
            "gobgpdRestarts": self.gobgpd.restarts,
            "bfddRestarts": self.bfdd.restarts,
        }
        return Outcome(details=details)
