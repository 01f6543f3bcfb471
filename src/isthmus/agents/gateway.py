"""The gateway agent: a gateway node's compartments, one per virtual network gateway it carries.

    node netns ── t<vni> ═veth═ up0 ── compartment netns (VIP and GatewaySubnet address on lo)
        │   VIP/32 routed in, replies out to the ToR        │ charon (vici), ESP: XFRM or libipsec's TUN
        │                                                   │ gt<hash> per GRE connection: kernel GRE, or a
        │                                                   │   TUN of the userspace datapath (linux/gre.py)
        │  prov0 (provider network) ── macvlan / VLAN ──────│ l3<hash> per L3 connection (linux/l3.py)
        └── VXLAN socket ── x<vni> (routed VXLAN to the VNet's hosts, static FDB and neighbours)

The compartment is a VNet router without VM ports (linux/router.py): the hosts reach it like another host,
and route the sites' prefixes to its GatewaySubnet address. Its charon is supervised; connections are
loaded over vici (shared key, conn) and initiated by the agent with a bounded, backed-off retry, so a site
with a wrong key or no common proposal costs a few packets a minute, not a storm. What charon reports
(SAs, byte counters, the reason of the last failure from its log) is the connection's observed status,
sampled on every heartbeat (`observe`) and reported at once when it changes. A compartment runs a charon only
while it has IPsec connections, and a userspace GRE datapath only while it has GRE connections on a node
whose kernel has no ip_gre; a GRE or L3 connection is Connected while its device is up with carrier.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from isthmus.agents.loop import HEARTBEAT, Outcome
from isthmus.agents.shared_vip import NodeSteering
from isthmus.agents.watchdog import WITNESSES, LeaseView, read_view, stamp_agent
from isthmus.linux import compartment_bgp, gre, l3, shaping, strongswan
from isthmus.linux.link_counters import counters
from isthmus.linux.nat_nft import NO_NAT, compartment_guard
from isthmus.linux.router import Remote, RouterSpec, realize, transit_pairs
from isthmus.linux.routes import Route, ensure_routes
from isthmus.linux.run import LinuxError, delete_netns, ip_batch, ip_json, list_netns, sysctl
from isthmus.linux.supervisor import Daemon, DaemonError, Supervisor
from isthmus.model import limits
from isthmus.model.documents import Compartment, Connection, Delta, GatewayDocument

log = logging.getLogger("isthmus.agent.gateway")
RETRY_FIRST_S = 2.0
RETRY_CAP_S = 60.0
STAMP_S = 0.25  # how often the agent tells its watchdog it lives
LINKS_OBSERVE_S = 1.0  # how often a compartment's GRE and L3 devices are read (only this agent changes them)
DROPS_OBSERVE_S = HEARTBEAT  # tier drops are a counter, reported with the heartbeat: read no more often
BGP_OBSERVE_S = 0.2  # at most this often a compartment's bgpd is read (~1 ms over its vty): each observe tick
# A compartment that comes up on this node (a failover, a move) has no session yet: until its site's session is
# complete, or for this long, it reports no learned routes at all, and the hosts keep the last ones they had.
BGP_HOLD_S = 30.0


@dataclass
class _Attempts:
    """Initiation of one connection: when it may be tried again (bounded, exponential)."""

    failures: int = 0
    next_at: float = 0.0

    def failed(self, now: float) -> None:
        self.failures += 1
        self.next_at = now + min(RETRY_CAP_S, RETRY_FIRST_S * 2 ** (self.failures - 1))


@dataclass
class _Carried:
    """One compartment this agent runs."""

    netns: str
    run_dir: Path
    charon: Supervisor
    datapath: Supervisor  # the userspace GRE datapath (no daemon until one is needed)
    bgpd: Supervisor = field(default_factory=Supervisor)  # its BGP with the sites (no daemon until one is needed)
    bgp: compartment_bgp.Speaker | None = None  # what its bgpd runs
    bgp_since: float = 0.0  # when this agent last started that bgpd (monotonic; 0: adopted it)
    bgp_complete: set[str] = field(default_factory=set)  # connection ids whose session was complete here
    bgp_routes: dict[str, list[Route]] = field(default_factory=dict)  # connection id -> its learned routes installed
    bgp_observed: tuple[float, dict[str, dict[str, Any]]] = (0.0, {})  # when; connection id -> its bgp report
    needs_charon: bool = False  # it has IPsec connections
    tunnels: tuple[gre.GreTunnel, ...] = ()  # its GRE connections' tunnels
    link_ids: dict[str, str] = field(default_factory=dict)  # GRE or L3 device -> connection id
    refused: dict[str, str] = field(default_factory=dict)  # connection id -> why this node cannot run it
    swept: bool = False  # GRE and L3 devices an earlier agent may have left were looked for
    has_l3: bool = False  # it runs L3 links
    vni: int = 0
    shaped: tuple[shaping.Limit, ...] | None = None  # the tiers applied (None: not known)
    drops_observed: tuple[float, dict[str, int]] = (0.0, {})  # when; connection id -> packets its tier dropped
    links_observed: tuple[float, dict[str, dict[str, Any]]] = (0.0, {})  # when, and what
    loaded: dict[str, dict[str, Any]] = field(default_factory=dict)  # conn name -> the config loaded
    keys: dict[str, str] = field(default_factory=dict)  # conn name -> the shared key loaded
    generations: dict[str, int] = field(default_factory=dict)  # conn name -> the reset generation it runs
    connections: dict[str, Connection] = field(default_factory=dict)  # conn name -> its document entry
    attempts: dict[str, _Attempts] = field(default_factory=dict)
    forced: set[str] = field(default_factory=set)  # conn names to initiate now, whatever SA they have
    log_offset: int = 0
    applied: tuple[RouterSpec, Compartment] | None = None  # what the last successful pass made of it
    reasons: dict[str, str] = field(default_factory=dict)  # conn name -> why it last failed
    established: dict[str, str] = field(default_factory=dict)  # conn name -> lastConnectionEstablishedUtcTime
    established_by: dict[str, str] = field(default_factory=dict)  # conn name -> the IKE SA it was stamped for


def compartment_prefix(netns_prefix: str, node: str) -> str:
    """What the names of `node`'s compartment namespaces begin with (the VNI follows)."""
    return f"{netns_prefix}{node}-gw"


class GatewayReconciler:
    """`watchdog`: the node's lease holder and fence (agents/watchdog.py), supervised here; None runs the
    compartments unfenced (tests of the compartments alone)."""

    def __init__(
        self,
        node: str,
        prefix: str,
        run_root: Path,
        *,
        libipsec: bool,
        kernel_gre: bool = False,
        vlan: bool = False,
        provider_device: str | None = None,
        watchdog: Daemon | None = None,
    ) -> None:
        self.node = node
        self.compartment_prefix = compartment_prefix(prefix, node)
        self.run_root = run_root
        self.libipsec = libipsec
        self.kernel_gre = kernel_gre
        self.vlan = vlan  # the kernel has 802.1Q: L3 connections with a vlanId can run here
        self.provider_device = provider_device  # the node's interface on the provider network (L3 connections)
        self.carried: dict[str, _Carried] = {}  # compartment key -> what runs for it
        self._lock = threading.Lock()  # the pass and `observe` share `carried`
        self._observed: dict[str, dict[str, Any]] = {}
        self.watchdog = Supervisor(watchdog) if watchdog is not None else None
        self.fenced_by: str | None = None  # why the last pass ran no compartment (the watchdog fenced them)
        self._document_revision = 0
        self.steering = NodeSteering()  # shared public IPs: their sites steered into the compartments
        run_root.mkdir(parents=True, exist_ok=True)
        stamp_agent(run_root)
        if watchdog is not None:  # its own thread: the heartbeat's may wait seconds on a controller that is down
            threading.Thread(target=self._stamp_forever, name="alive", daemon=True).start()
        sysctl(None, {"net.ipv4.ip_forward": "1"})

    def _stamp_forever(self) -> None:
        """The agent's sign of life to the watchdog, every STAMP_S while this process runs."""
        while True:
            try:
                stamp_agent(self.run_root)
            except OSError as error:
                log.warning("sign of life: %s", error)
            time.sleep(STAMP_S)

    def healthy(self) -> bool:
        if self.watchdog is not None and not self.watchdog.healthy():
            return False
        fenced = self.fenced()
        if fenced is not None:  # nothing may run: a daemon a pass started as the fence fell must go (a pass now)
            return not any(d.alive() for c in list(self.carried.values()) for d in (c.charon, c.bgpd, c.datapath))
        if self.fenced_by is not None:
            return False  # the watchdog holds a lease again: a pass brings the compartments back
        return all(
            (not c.needs_charon or c.charon.healthy())
            and (not c.datapath.daemon or c.datapath.healthy())
            and (not c.bgpd.daemon or c.bgpd.healthy())
            for c in list(self.carried.values())
        )

    def fenced(self) -> str | None:
        """Why this node may run no compartment now (None: it may): the watchdog fenced them, or the lease it
        holds began after the document this agent holds (which may still assign what moved away)."""
        if self.watchdog is None:
            return None
        view: LeaseView | None = read_view(self.run_root)
        if view is None:
            return "no lease yet"
        if view.fenced:
            return f"fenced: {view.reason}"
        if self._document_revision < view.document:
            return f"waiting for a document at least as new as lease epoch {view.epoch} (revision {view.document})"
        return None

    def netns_of(self, vni: int) -> str:
        return f"{self.compartment_prefix}{vni}"

    # --- the pass -----------------------------------------------------------------------------------

    def reconcile(self, doc: GatewayDocument, *, full: bool, deltas: tuple[Delta, ...] = ()) -> Outcome:
        outcome = Outcome()
        with self._lock:
            self._document_revision = doc.revision
            self._keep_watchdog(doc)
            wanted = {c.key: c for c in doc.compartments if c.vni is not None}
            fenced = self.fenced()
            if fenced is not None:
                return self._fenced_pass(wanted, fenced)
            unfenced, self.fenced_by = self.fenced_by is not None, None
            links = ip_json(None, "addr", "show")
            by_name = {link["ifname"]: link for link in links}
            provider = by_name.get(self.provider_device or "")
            if provider is not None and "UP" not in provider.get("flags", ()):  # the watchdog fenced it
                ip_batch(None, [f"link set {self.provider_device} up"])
            transit = transit_pairs({c.vni for c in wanted.values() if c.vni is not None}, links)
            node_routes: list[Route] = []
            shared: list[tuple[Compartment, str, str]] = []  # on a shared public IP: steered in (shared_vip.py)
            loaded: list[_Carried] = []  # compartments (re)loaded by this pass: initiated at its end
            for key, compartment in sorted(wanted.items()):
                assert compartment.vni is not None
                try:
                    spec = self._spec(doc, compartment, transit[compartment.vni])
                    if compartment.vip_shared:
                        shared.append((compartment, spec.uplink, spec.transit[1]))
                    elif compartment.vip is not None:
                        node_routes.append(Route(str(compartment.vip), spec.uplink, spec.transit[1]))
                    held = self.carried.get(key)
                    uplink = by_name.get(spec.uplink)
                    down = uplink is not None and "UP" not in uplink.get("flags", ())
                    if down:  # the watchdog fenced it
                        ip_batch(None, [f"link set {spec.uplink} up"])
                    if (
                        full
                        or unfenced
                        or held is None
                        or held.applied != (spec, compartment)
                        or (held.needs_charon and not held.charon.alive())
                        or (held.datapath.daemon is not None and not held.datapath.alive())
                        or (held.bgpd.daemon is not None and not held.bgpd.alive())
                    ):
                        # Only what changed: a pool node carries many compartments, a change touches one.
                        realize(spec, None, check_vms=full)
                        carried = self._carried(key, spec.netns)
                        carried.applied = None
                        self._tunnels(carried, compartment)
                        self._links(carried, compartment)
                        self._bgp(carried, compartment)
                        self._shaping(carried, compartment, verify=full)
                        if self._charon(carried, compartment):
                            self._connections(carried, compartment)
                            loaded.append(carried)
                        carried.applied = (spec, compartment)
                    outcome.resources[compartment.virtual_network_gateway] = {"state": "Succeeded", "message": ""}
                    refused = self.carried[key].refused if key in self.carried else {}
                    for connection in compartment.connections:
                        why = refused.get(connection.id)
                        outcome.resources[connection.id] = {"state": "Failed" if why else "Succeeded",
                                                            "message": why or ""}  # fmt: skip
                except (LinuxError, DaemonError, OSError) as error:
                    log.warning("compartment %s: %s", compartment.virtual_network_gateway, error)
                    for rid in (compartment.virtual_network_gateway, *(c.id for c in compartment.connections)):
                        outcome.resources[rid] = {"state": "Failed", "message": str(error)}
            removed = self._remove_stale(set(wanted))
            changes = ensure_routes(None, node_routes)
            changes += self.steering.ensure(shared)
            for carried in loaded:  # only now does the node route the site's answers (to the VIP) in
                self._initiate_now(carried)
            outcome.details = {"compartments": len(wanted), "removed": removed, "changes": changes,
                               "datapath": "libipsec" if self.libipsec else "xfrm",
                               "greDatapath": "ip_gre" if self.kernel_gre else "gre_tun", **self._lease()}  # fmt: skip
        self.observe()
        return outcome

    def _fenced_pass(self, wanted: dict[str, Compartment], why: str) -> Outcome:
        """Run nothing (the watchdog stopped the charons and cut the transit links); remove what is no longer
        wanted; report the rest as not applied, with why."""
        if self.fenced_by is None:
            log.warning("compartments fenced: %s", why)
        self.fenced_by = why
        for carried in self.carried.values():
            carried.applied = None
            # The watchdog killed the charons; a pass that was under way when it fenced may have started one again.
            for daemon in (carried.charon, carried.bgpd, carried.datapath):
                if daemon.alive():
                    daemon.stop()
        outcome = Outcome()
        for compartment in wanted.values():
            for rid in (compartment.virtual_network_gateway, *(c.id for c in compartment.connections)):
                outcome.resources[rid] = {"state": "Failed", "message": why}
        outcome.details = {"compartments": len(wanted), "removed": self._remove_stale(set(wanted)),
                           "fenced": why, **self._lease()}  # fmt: skip
        return outcome

    def _keep_watchdog(self, doc: GatewayDocument) -> None:
        if self.watchdog is None:
            return
        witnesses = "".join(f"{address}\n" for address in doc.witnesses)
        path = self.run_root / WITNESSES
        if not path.exists() or path.read_text() != witnesses:
            path.write_text(witnesses)
        if self.watchdog.ensure():
            log.info("watchdog started (%s)", self.watchdog.reason)

    def _lease(self) -> dict[str, Any]:
        view = read_view(self.run_root) if self.watchdog is not None else None
        if view is None:
            return {}
        lease: dict[str, Any] = {"epoch": view.epoch, "fenced": view.fenced, "holding": view.holding,
                                 "reason": view.reason}  # fmt: skip
        if view.last_fence is not None:
            lease["lastFence"] = view.last_fence
        return {"lease": lease}

    def _spec(self, doc: GatewayDocument, compartment: Compartment, transit: tuple[str, str]) -> RouterSpec:
        assert compartment.vni is not None and doc.address is not None and compartment.router_mac is not None
        own = [str(a) for a in (compartment.private_ip_address, compartment.vip) if a is not None]
        own += [str(a) for a in compartment.subnet_gateways if a.version == 4]
        remotes = tuple(Remote.of(r) for r in compartment.remotes)
        gre_remotes = [t.remote for c in compartment.connections if (t := gre.tunnel_of(c)) is not None]
        return RouterSpec(
            netns=self.netns_of(compartment.vni),
            vni=compartment.vni,
            router_mac=compartment.router_mac,
            underlay=str(doc.address),
            transit=transit,
            gateways=tuple(sorted(set(own))),
            ports=(),
            remotes=remotes,
            filter_body=compartment_guard(str(compartment.vip) if compartment.vip else None, gre_remotes),
            icmp_source=str(compartment.private_ip_address) if compartment.private_ip_address else None,
            nat_body=NO_NAT,
        )

    def _carried(self, key: str, netns: str) -> _Carried:
        carried = self.carried.get(key)
        if carried is None:
            run_dir = self.run_root / netns
            daemon = strongswan.charon_daemon(netns, run_dir, libipsec=self.libipsec)
            carried = self.carried[key] = _Carried(netns, run_dir, Supervisor(daemon), Supervisor())
        return carried

    def _charon(self, carried: _Carried, compartment: Compartment) -> bool:
        """Run the compartment's charon if it has IPsec connections, stop it if not; True if it runs."""
        carried.needs_charon = any(c.connection_type == "IPsec" for c in compartment.connections)
        if not carried.needs_charon:
            if carried.loaded or carried.charon.alive():
                carried.charon.stop()
            carried.loaded.clear()
            carried.keys.clear()
            carried.connections = {}
            return False
        if carried.charon.ensure():  # (re)started: it holds nothing until loaded again
            log.info("charon of %s started (%s)", carried.netns, carried.charon.reason)
            carried.loaded.clear()
            carried.keys.clear()
        strongswan.ensure_main_first(carried.netns)
        return True

    def _tunnels(self, carried: _Carried, compartment: Compartment) -> None:
        """The compartment's GRE devices and routes, and its userspace datapath where the kernel has no GRE."""
        tunnels = {t.device: (t, c.id) for c in compartment.connections if (t := gre.tunnel_of(c)) is not None}
        had = bool(carried.tunnels)
        carried.tunnels = tuple(sorted(t for t, _id in tunnels.values()))
        carried.link_ids = {device: cid for device, (_t, cid) in tunnels.items()}
        carried.links_observed = (0.0, {})
        if compartment.vip is None or not carried.tunnels:
            if carried.datapath.daemon is not None:
                carried.datapath.stop()
                carried.datapath.daemon = None
            if had or not carried.swept:  # nothing to look at otherwise: spare a bringup the processes
                gre.ensure_tunnels(carried.netns, "", (), kernel=self.kernel_gre)
            return
        vip = str(compartment.vip)
        gre.ensure_tunnels(carried.netns, vip, carried.tunnels, kernel=self.kernel_gre, remove=self.kernel_gre)
        if not self.kernel_gre:  # the datapath lets go of a tunnel's device before it is removed
            if carried.datapath.ensure(gre.datapath_daemon(carried.netns, carried.run_dir, vip, carried.tunnels)):
                log.info("GRE datapath of %s started (%s)", carried.netns, carried.datapath.reason)
            gre.ensure_tunnels(carried.netns, vip, carried.tunnels, kernel=False)

    def _connections(self, carried: _Carried, compartment: Compartment) -> None:
        """Load what differs, unload what went (initiating is `_initiate_now`'s, once the node routes the VIP)."""
        vip = str(compartment.vip) if compartment.vip else None
        local_ts = [str(p) for p in compartment.address_space if p.version == 4]
        wanted = {
            strongswan.conn_name(c.id): c
            for c in compartment.connections
            if c.connection_type == "IPsec" and c.remote_address is not None and c.shared_key and vip
        }
        carried.connections = wanted
        with strongswan.session(carried.run_dir) as vici:
            for name in sorted(set(carried.loaded) - set(wanted)):
                vici.unload_conn({"name": name})
                _terminate(vici, name)
                vici.unload_shared({"id": name})
                carried.loaded.pop(name)
                carried.keys.pop(name, None)
                carried.generations.pop(name, None)
                carried.attempts.pop(name, None)
            for name, connection in sorted(wanted.items()):
                assert vip is not None and connection.shared_key is not None
                config = strongswan.conn_config(connection, vip, local_ts)
                if carried.keys.get(name) != connection.shared_key:
                    rekeyed = name in carried.keys
                    vici.load_shared({"id": name, "type": "IKE", "data": connection.shared_key,
                                      "owners": [vip, str(connection.remote_address)]})  # fmt: skip
                    carried.keys[name] = connection.shared_key
                    if rekeyed:  # a rotated key: a new IKE SA with it replaces the old (make before break)
                        carried.attempts[name] = _Attempts()
                        carried.forced.add(name)
                if carried.generations.setdefault(name, connection.reset_generation) != connection.reset_generation:
                    carried.generations[name] = connection.reset_generation  # resetconnection: keyed anew
                    carried.attempts[name] = _Attempts()
                    carried.forced.add(name)
                if carried.loaded.get(name) != config:
                    changed = name in carried.loaded
                    vici.load_conn(config)
                    carried.loaded[name] = config
                    carried.attempts[name] = _Attempts()
                    if changed:  # its SAs were negotiated under the old configuration: they go first
                        _terminate(vici, name)
                        carried.forced.add(name)

    def _initiate_now(self, carried: _Carried) -> None:
        try:
            with strongswan.session(carried.run_dir) as vici:
                self._initiate(carried, vici)
        except OSError as error:
            log.warning("initiating in %s: %s", carried.netns, error)

    def _initiate(self, carried: _Carried, vici: Any, up: dict[str, strongswan.Tunnel] | None = None) -> None:
        """Initiate what has no SA and whose retry is due, and what must be keyed anew (`forced`)."""
        up = strongswan.tunnels(vici.list_sas()) if up is None else up
        now = time.monotonic()
        for name, connection in sorted(carried.connections.items()):
            tunnel = up.get(name)
            forced = name in carried.forced
            carried.forced.discard(name)
            if not strongswan.initiates(connection) or (tunnel is not None and tunnel.state and not forced):
                continue
            attempts = carried.attempts.setdefault(name, _Attempts())
            if now < attempts.next_at and not forced:
                continue
            attempts.failed(now)  # counted as failed until charon reports it up (reset in `observe`)
            for _ in vici.initiate({"ike": name, "child": name, "timeout": -1}):
                pass

    def _remove_stale(self, wanted: set[str]) -> int:
        """Compartments no longer wanted: their charon (by its record, also one an earlier agent left), their
        namespace and run directory."""
        removed = 0
        for key in sorted(set(self.carried) - wanted):
            carried = self.carried.pop(key)
            # Unreachable first (the VIP may be answered from elsewhere already), then stopped.
            vni = carried.netns.removeprefix(self.compartment_prefix)
            with contextlib.suppress(LinuxError):  # already gone
                ip_batch(None, [f"link set t{vni} down"])
            carried.charon.stop()
            carried.datapath.stop()
            carried.bgpd.stop()
            with contextlib.suppress(LinuxError):  # the pair goes with it, whatever still holds the namespace
                ip_batch(None, [f"link del t{vni}"])
            shutil.rmtree(carried.run_dir, ignore_errors=True)
            removed += 1
        netns = {c.netns for c in self.carried.values()}
        for name in sorted(list_netns()):
            if name.startswith(self.compartment_prefix) and name not in netns:
                run_dir = self.run_root / name
                if run_dir.exists():
                    Supervisor(strongswan.charon_daemon(name, run_dir, libipsec=self.libipsec)).stop()
                    Supervisor(gre.datapath_daemon(name, run_dir, "", ())).stop()
                    Supervisor(compartment_bgp.bgpd_daemon(name, run_dir, 0, "0.0.0.0")).stop()
                    shutil.rmtree(run_dir, ignore_errors=True)
                delete_netns(name)
                removed += 1
        return removed

    # --- observed state -----------------------------------------------------------------------------

    def observe(self) -> bool:
        """Sample every connection's SAs and charon's log; True if what `observed` reports changed. Skipped
        (False) while a pass runs: the pass samples when it ends."""
        why = self.fenced()
        if why is not None and self.fenced_by is None:  # fenced between passes: a pass follows the lease back
            log.warning("compartments fenced: %s", why)
            self.fenced_by = why
        if not self._lock.acquire(blocking=False):
            return False
        try:
            observed: dict[str, dict[str, Any]] = {}
            for carried in self.carried.values():
                observed.update(self._observe(carried))
            changed = {k: _without_counters(v) for k, v in observed.items()} != {
                k: _without_counters(v) for k, v in self._observed.items()
            }
            self._observed = observed
        finally:
            self._lock.release()
        return changed

    def observed(self) -> dict[str, Any]:
        """Per connection id its status (as the API's connection resource shows it); per charon its state."""
        daemons = {}
        for carried in list(self.carried.values())[: limits.REPORT_DAEMONS]:
            if carried.needs_charon:
                daemons[f"charon {carried.netns}"[:200]] = _daemon_state(carried.charon)
            if carried.datapath.daemon is not None:
                daemons[f"gre {carried.netns}"[:200]] = _daemon_state(carried.datapath)
            if carried.bgpd.daemon is not None:
                daemons[f"bgpd {carried.netns}"[:200]] = _daemon_state(carried.bgpd)
        if self.watchdog is not None:
            daemons["watchdog"] = _daemon_state(self.watchdog)
        return {"connections": dict(self._observed), "daemons": daemons}

    def _observe(self, carried: _Carried) -> dict[str, dict[str, Any]]:
        # Copies: the parts below are cached between samples, and what was reported last must not change with them.
        reports = {cid: dict(r) for cid, r in {**self._observe_ipsec(carried), **self._observe_links(carried)}.items()}
        for connection_id, dropped in self._shaping_drops(carried).items():
            if connection_id in reports:
                reports[connection_id]["shapingDroppedPackets"] = dropped
        for connection_id, bgp in self._observe_bgp(carried).items():
            if connection_id in reports:
                reports[connection_id]["bgp"] = bgp
        return reports

    def _bgp(self, carried: _Carried, compartment: Compartment) -> None:
        """The compartment's bgpd while it has BGP connections: their sites as neighbours, the VNet's address
        space advertised (linux/compartment_bgp.py)."""
        speaker = _speaker(compartment, carried.refused)
        if speaker is None:
            if carried.bgpd.daemon is not None:
                carried.bgpd.stop()
                carried.bgpd.daemon = None
                compartment_bgp.install(carried.netns, ())
            carried.bgp, carried.bgp_observed, carried.bgp_routes = None, (0.0, {}), {}
            return
        daemon = compartment_bgp.bgpd_daemon(carried.netns, carried.run_dir, speaker.asn, speaker.router_id)
        if carried.bgpd.ensure(daemon):  # new, or after a crash: its sessions start again, held meanwhile
            log.info("bgpd of %s started (%s)", carried.netns, carried.bgpd.reason)
            carried.bgp_since, carried.bgp_complete = time.monotonic(), set()
        compartment_bgp.ensure(carried.run_dir, speaker)
        carried.bgp, carried.bgp_observed = speaker, (0.0, {})

    def _observe_bgp(self, carried: _Carried) -> dict[str, dict[str, Any]]:
        """Each BGP connection's session and routes (the report's `bgp`); the learned routes it takes are
        installed in the compartment. Until a session is complete here the learned routes are not known (None)
        for BGP_HOLD_S; a session that was complete here and went down has withdrawn them ([])."""
        speaker = carried.bgp
        if speaker is None:
            return {}
        at, last = carried.bgp_observed
        now = time.monotonic()
        if now - at < BGP_OBSERVE_S:
            return last
        try:
            sessions = compartment_bgp.sessions(carried.run_dir)
        except (OSError, ValueError) as error:
            log.warning("reading bgpd of %s: %s", carried.netns, error)
            sessions = {}
        out = {}
        for neighbor in speaker.neighbors:
            session = sessions.get(neighbor.address)
            learned: list[compartment_bgp.Learned] | None = None
            dropped = 0
            if session is not None and session.complete:
                carried.bgp_complete.add(neighbor.connection)
                learned, dropped = compartment_bgp.acceptable(session.routes, speaker.networks,
                                                              limits.BGP_LEARNED_ROUTES)  # fmt: skip
            elif neighbor.connection in carried.bgp_complete or now - carried.bgp_since > BGP_HOLD_S:
                learned = []
            if neighbor.device is not None:
                held = carried.bgp_routes.get(neighbor.connection, [])
                carried.bgp_routes[neighbor.connection] = _installed(neighbor, learned, session, speaker, held)
            out[neighbor.connection] = compartment_bgp.report(neighbor, session, learned, dropped, speaker.asn)
        running = {n.connection for n in speaker.neighbors}
        carried.bgp_routes = {cid: routes for cid, routes in carried.bgp_routes.items() if cid in running}
        try:
            compartment_bgp.install(carried.netns, [r for routes in carried.bgp_routes.values() for r in routes])
        except LinuxError as error:
            log.warning("learned routes in %s: %s", carried.netns, error)
        carried.bgp_observed = (now, out)
        return out

    def _links(self, carried: _Carried, compartment: Compartment) -> None:
        """The compartment's L3 forwarding links on the node's provider network."""
        links = {link.device: (link, c.id) for c in compartment.connections if (link := l3.link_of(c)) is not None}
        carried.refused = {cid: f"VLAN {link.vlan}: this gateway node's kernel has no 802.1Q"
                           for link, cid in links.values() if link.vlan is not None and not self.vlan}  # fmt: skip
        runs = {device: (link, cid) for device, (link, cid) in links.items() if cid not in carried.refused}
        if runs or carried.has_l3 or not carried.swept:
            l3.ensure_links(carried.netns, self.provider_device, [link for link, _id in runs.values()])
        carried.has_l3, carried.swept = bool(runs), True
        carried.link_ids.update({device: cid for device, (_link, cid) in runs.items()})

    def _shaping(self, carried: _Carried, compartment: Compartment, *, verify: bool) -> None:
        """Every connection held to its tier both ways (linux/shaping.py); a new tier is applied in place."""
        assert compartment.vni is not None
        limits = tuple(
            shaping.Limit(c.id, compartment.connection_kbps, tuple(str(p) for p in c.remote_prefixes if p.version == 4))
            for c in compartment.connections
            if compartment.connection_kbps and c.remote_prefixes
        )
        carried.vni = compartment.vni
        if verify and carried.shaped and not shaping.in_place(carried.netns, compartment.vni):
            carried.shaped = None  # the VNet device was made anew: its trees went with it
        shaping.ensure_shaping(carried.netns, compartment.vni, limits, carried.shaped)
        carried.shaped = limits

    def _shaping_drops(self, carried: _Carried) -> dict[str, int]:
        """Per connection, the packets its tier dropped (both ways), read at most every DROPS_OBSERVE_S."""
        at, last = carried.drops_observed
        if not carried.shaped or time.monotonic() - at < DROPS_OBSERVE_S:
            return last if carried.shaped else {}
        try:
            seen = shaping.counters(carried.netns, carried.vni, carried.shaped)
        except LinuxError:
            seen = {}
        drops = {cid: sum(s.dropped for s in ways.values()) for cid, ways in seen.items()}
        carried.drops_observed = (time.monotonic(), drops)
        return drops

    def _observe_links(self, carried: _Carried) -> dict[str, dict[str, Any]]:
        """Each GRE or L3 connection: Connected while its device is up with carrier (a userspace GRE datapath
        holds its TUN's); its bytes are the device's (a tunnel's inner packets; in: from the site)."""
        if not carried.link_ids:
            return {}
        at, last = carried.links_observed
        if time.monotonic() - at < LINKS_OBSERVE_S:
            return last
        try:
            devices = counters(carried.netns, (gre.PREFIX, l3.PREFIX))
        except LinuxError:
            devices = {}
        out: dict[str, dict[str, Any]] = {}
        for device, connection_id in carried.link_ids.items():
            seen = devices.get(device)
            report: dict[str, Any] = {
                "connectionStatus": "Connected" if seen is not None and seen.up else "NotConnected",
                "ingressBytesTransferred": seen.received_bytes if seen else 0,
                "egressBytesTransferred": seen.sent_bytes if seen else 0,
                "ingressPackets": seen.received_packets if seen else 0,
                "egressPackets": seen.sent_packets if seen else 0,
            }
            if seen is None:
                report["reason"] = f"its device {device} is missing"
            elif not seen.up:
                userspace = device.startswith(gre.PREFIX) and not self.kernel_gre
                report["reason"] = "the GRE datapath is not running" if userspace else f"its device {device} is down"
            out[connection_id] = report
        carried.links_observed = (time.monotonic(), out)
        return out

    def _observe_ipsec(self, carried: _Carried) -> dict[str, dict[str, Any]]:
        if not carried.connections:
            return {}
        try:
            with strongswan.session(carried.run_dir, timeout=2.0) as vici:
                up = strongswan.tunnels(vici.list_sas())
                self._initiate(carried, vici, up)  # retries fall due between passes
        except OSError:
            up = {}
        carried.reasons.update(strongswan.reason_in(self._new_log_lines(carried)))
        out = {}
        for name, connection in carried.connections.items():
            tunnel = up.get(name)
            if tunnel is not None and tunnel.connected:
                status = "Connected"
                carried.reasons.pop(name, None)
                carried.attempts[name] = _Attempts()
                if tunnel.established_s is not None and carried.established_by.get(name) != tunnel.unique_id:
                    # Stamped once per IKE SA: recomputed from charon's whole seconds it would wobble by one.
                    since = datetime.now(UTC).timestamp() - tunnel.established_s
                    carried.established[name] = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    carried.established_by[name] = tunnel.unique_id
            elif tunnel is not None and tunnel.state in ("CONNECTING", "ESTABLISHED", "REKEYING", "PASSIVE"):
                status = "Connecting"
            else:
                status = "NotConnected"
            report: dict[str, Any] = {
                "connectionStatus": status,
                "ingressBytesTransferred": tunnel.bytes_in if tunnel else 0,
                "egressBytesTransferred": tunnel.bytes_out if tunnel else 0,
                "ingressPackets": tunnel.packets[0] if tunnel else 0,
                "egressPackets": tunnel.packets[1] if tunnel else 0,
                "tunnelConnectionStatus": [
                    {
                        "tunnel": f"{child[1]}=={child[2]}",
                        "connectionStatus": "Connected" if child[0] == "INSTALLED" else "Connecting",
                        "ingressBytesTransferred": child[3],
                        "egressBytesTransferred": child[4],
                        **(
                            {"lastConnectionEstablishedUtcTime": carried.established[name]}
                            if name in carried.established
                            else {}
                        ),
                    }
                    for child in (tunnel.children if tunnel else ())
                ],
            }
            if name in carried.established:
                report["lastConnectionEstablishedUtcTime"] = carried.established[name]
            if status != "Connected" and name in carried.reasons:
                report["reason"] = carried.reasons[name]
            if tunnel is not None and tunnel.summary:
                report["ikeSas"] = [dict(tunnel.summary)]
            out[connection.id] = report
        return out

    @staticmethod
    def _new_log_lines(carried: _Carried) -> list[str]:
        path = carried.run_dir / strongswan.LOG
        try:
            with path.open("rb") as handle:
                size = handle.seek(0, 2)
                if size < carried.log_offset:  # a new charon started a new log
                    carried.log_offset = 0
                handle.seek(carried.log_offset)
                data = handle.read(min(size - carried.log_offset, 1 << 20))
                carried.log_offset += len(data)
        except OSError:
            return []
        return data.decode(errors="replace").splitlines()


def _installed(
    neighbor: compartment_bgp.Neighbor,
    learned: list[compartment_bgp.Learned] | None,
    session: compartment_bgp.Session | None,
    speaker: compartment_bgp.Speaker,
    held: list[Route],
) -> list[Route]:
    """The routes a site's connection has in the compartment's kernel: what it reports once its set is known;
    before that (a new session) what has come so far added to what was there: nothing is taken away until the
    set is known, and the traffic does not wait for it."""
    assert neighbor.device is not None
    device, hop = neighbor.device, neighbor.address

    def routes(taken: list[compartment_bgp.Learned]) -> list[Route]:
        return [Route(r.network.removesuffix("/32"), device, r.next_hop or hop) for r in taken]

    if learned is not None:
        return routes(learned)
    if session is None or not session.established:
        return held
    there = {r.destination for r in held}
    arrived = routes(compartment_bgp.acceptable(session.routes, speaker.networks, limits.BGP_LEARNED_ROUTES)[0])
    return (held + [r for r in arrived if r.destination not in there])[: 2 * limits.BGP_LEARNED_ROUTES]


def _daemon_state(supervisor: Supervisor) -> str:
    """A supervised daemon as the status report names it: up with its PID or down, and its restarts."""
    state = supervisor.state()
    alive = f"up pid={state.pid}" if state.alive else f"down retry_in={state.retry_in}"
    return f"{alive} restarts={state.restarts}"


def _speaker(compartment: Compartment, refused: dict[str, str]) -> compartment_bgp.Speaker | None:
    """What the compartment's bgpd runs: a neighbour per BGP connection this node can run (None: no BGP)."""
    if compartment.bgp is None or not compartment.bgp.asn:
        return None
    neighbors = []
    for c in compartment.connections:
        site = c.remote_bgp
        if not c.enable_bgp or site is None or not site.asn or not site.bgp_peering_address or c.id in refused:
            continue
        tunnel, link = gre.tunnel_of(c), l3.link_of(c)
        if tunnel is not None and tunnel.inner:
            local, device, multihop = tunnel.inner.split("/")[0], tunnel.device, False
        elif link is not None:
            local, device, multihop = link.local.split("/")[0], link.device, False
        elif c.connection_type == "IPsec" and compartment.private_ip_address is not None:
            local, device, multihop = str(compartment.private_ip_address), None, True
        else:
            continue
        neighbors.append(compartment_bgp.Neighbor(site.bgp_peering_address, site.asn, local, c.id, device, multihop))
    if not neighbors:
        return None
    # Its BGP address (the GatewaySubnet's, as Azure's gateways use), not the VIP: pools may share one VIP.
    router_id = str(compartment.private_ip_address or compartment.vip)
    networks = tuple(str(p) for p in compartment.address_space if p.version == 4)
    return compartment_bgp.Speaker(compartment.bgp.asn, router_id, tuple(sorted(neighbors)), networks)


def _terminate(vici: Any, name: str) -> None:
    """End connection `name`'s SAs, if it has any (without waiting for the peer)."""
    from vici.exception import CommandException

    try:
        for _ in vici.terminate({"ike": name, "timeout": -1}):
            pass
    except CommandException:  # no SA to terminate
        pass


def _without_counters(report: dict[str, Any]) -> dict[str, Any]:
    """A report without what changes with every packet: a change in the rest is reported at once."""
    moving = ("tunnelConnectionStatus", "ikeSas", "shapingDroppedPackets", "ingressPackets", "egressPackets")
    out = {k: v for k, v in report.items() if not k.endswith("BytesTransferred") and k not in moving}
    if "bgp" in out:  # its state and routes count, its message counters and uptime move
        peer = {
            k: v for k, v in out["bgp"]["peer"].items() if not k.startswith("messages") and k != "connectedDuration"
        }
        out["bgp"] = {**out["bgp"], "peer": peer}
    return out
