"""What each page shows, as plain dicts for the templates: read from the store, the placement the documents
follow, the leases held in memory and the nodes' last reports. Tenants get only their own subscription's
resources; the fabric and placement are the operator's."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from isthmus.api.arm.gateways import Connections
from isthmus.api.state import State
from isthmus.api.throughput import Throughput, sparkline
from isthmus.compile.placement import Placement, plan
from isthmus.model.ids import parse
from isthmus.model.limits import LIVE_SECONDS
from isthmus.model.snapshot import CONNECTION, VNET_GATEWAY
from isthmus.store.db import reading
from isthmus.store.learned_routes import routes_of
from isthmus.store.repo import Doc, Tx
from isthmus.store.tokens import Principal
from isthmus.ui import stories

ADMIN = "admin"
EVENTS_SHOWN = 200
_RENDER = Connections()


@dataclass(frozen=True)
class Viewer:
    """Who looks: an operator sees the fabric and every subscription; a tenant its own subscription."""

    principal: Principal

    @property
    def operator(self) -> bool:
        return self.principal.kind == "operator"

    def may_see(self, scope: str) -> bool:
        return self.operator or scope == self.principal.subject


def _nodes(tx: Tx) -> dict[str, dict[str, Any]]:
    now = datetime.now(UTC)
    out = {}
    for node in tx.nodes():
        seen = (now - datetime.fromisoformat(node["lastSeen"])).total_seconds()
        out[node["name"]] = {**node, "status": json.loads(node["status"]), "live": seen <= LIVE_SECONDS,
                             "seenSecondsAgo": round(seen, 1)}  # fmt: skip
    return out


def _props(doc: Doc) -> dict[str, Any]:
    return dict(doc.body["properties"])


def fabric(st: State) -> dict[str, Any]:
    """ToR peers, MUXes, pools with their gateways, hosts (the operator's page)."""
    placement = st.documents.placement()
    with reading(st.engine) as conn:
        tx = Tx(conn)
        nodes = _nodes(tx)
        muxes = tx.list_docs(ADMIN, "admin/loadBalancerMuxes")
        gateways = {d.name.lower(): _props(d) for d in tx.list_docs(ADMIN, "admin/gateways")}
        hosts = tx.list_docs(ADMIN, "admin/hosts")
        carriers = tx.connection_carriers()
    connected: dict[str, int] = {}
    for carrier, status in carriers.values():
        connected[carrier] = connected.get(carrier, 0) + (status == "Connected")
    mux_rows = [_mux_row(doc, nodes.get(doc.body["properties"]["node"]) or {}) for doc in muxes]
    tor: dict[str, dict[str, Any]] = {}
    for mux in mux_rows:
        for peer in mux["peers"]:
            seen = tor.setdefault(peer["address"], {**peer, "sessions": {}})
            seen["sessions"][mux["name"]] = mux["sessions"].get(peer["address"], "Unknown")
    return {"tor": list(tor.values()), "muxes": mux_rows, "pools": _pools(st, placement, gateways, nodes, connected),
            "hosts": [_host_row(doc, nodes.get(doc.body["properties"]["node"]) or {}) for doc in hosts],
            "unplaced": len(placement.unplaced)}  # fmt: skip


def _mux_row(doc: Doc, node: dict[str, Any]) -> dict[str, Any]:
    props, report = _props(doc), node.get("status", {})
    return {"name": doc.name, "node": props["node"], "asn": props["asn"], "live": node.get("live", False),
            "announced": (report.get("details") or {}).get("announced"), "sessions": report.get("sessions") or {},
            "peers": [{"address": p["address"], "asn": p["asn"]} for p in props.get("peers", [])]}  # fmt: skip


def _host_row(doc: Doc, node: dict[str, Any]) -> dict[str, Any]:
    props, details = _props(doc), node.get("status", {}).get("details") or {}
    return {"name": doc.name, "node": props["node"], "address": props["address"], "live": node.get("live", False),
            "routers": details.get("routers"), "vms": details.get("vms")}  # fmt: skip


def _pools(
    st: State, placement: Placement, gateways: dict[str, dict[str, Any]], nodes: dict[str, dict[str, Any]],
    connected: dict[str, int],
) -> list[dict[str, Any]]:  # fmt: skip
    """Each pool with its gateways: role, liveness, the lease as this controller holds it, load, what it carries."""
    carries: dict[str, int] = {}
    for placed in placement.placed:
        carries[placed.gateway.lower()] = carries.get(placed.gateway.lower(), 0) + 1
    now = time.monotonic()
    pools = []
    for pool in placement.pools:
        members = []
        for role, group in (("active", pool.actives), ("standby", pool.standbys)):
            for name, node in group:
                member = next((m for m in pool.members if m.name == name), None)
                held = st.leases.held(node)
                used = placement.used_kbps.get(name, 0)
                members.append({
                    "name": name, "node": node, "role": role,
                    "liveness": member.liveness if member else "Up",
                    "serviceState": gateways.get(name.lower(), {}).get("serviceState", "InService"),
                    "leaseAgeMs": round((now - held.received) * 1000) if held else None,
                    "leaseEpoch": held.epoch if held else None,
                    "usedKbps": used, "capacityKbps": pool.capacity_kbps,
                    "loadPercent": min(100, round(100 * used / max(1, pool.capacity_kbps))),
                    "carries": carries.get(name.lower(), 0), "connected": connected.get(node, 0),
                    "live": nodes.get(node, {}).get("live", False),
                })  # fmt: skip
        pools.append({"name": pool.name, "type": pool.type, "tierKbps": pool.tier_kbps, "redundant": pool.redundant,
                      "actives": len(pool.actives), "gateways": members})  # fmt: skip
    return pools


def _unplaced(st: State) -> dict[str, str]:
    """VNet gateway key -> why it runs nowhere."""
    return {u.virtual_network_gateway.lower(): u.reason for u in st.documents.placement().unplaced}


def _connection_row(
    doc: Doc, carried: tuple[str, dict[str, Any]] | None, unplaced: dict[str, str], throughput: Throughput
) -> dict[str, Any]:
    carrier, report = carried or (None, {})
    gateway = doc.body["properties"]["virtualNetworkGateway1"]["id"].lower()
    body = _RENDER.runs_nowhere(_RENDER.with_status(doc, report), unplaced.get(gateway))
    props = body["properties"]
    rid = parse(body["id"])
    rates = throughput.rates(doc.key)
    return {
        "id": body["id"],
        "key": doc.key,
        "name": doc.name,
        "subscription": rid.subscription if rid else "",
        "group": rid.resource_group if rid else "",
        "type": props.get("connectionType", ""),
        "status": props.get("connectionStatus", "Unknown"),
        "reason": props.get("connectionStatusReason", ""),
        "provisioning": props.get("provisioningState", ""),
        "bytesIn": props.get("ingressBytesTransferred", 0),
        "bytesOut": props.get("egressBytesTransferred", 0),
        "dropped": props.get("shapingDroppedPackets", 0),
        "gateway": props.get("virtualNetworkGateway1", {}).get("id", ""),
        "site": props.get("localNetworkGateway2", {}).get("id", ""),
        "node": carrier,
        "chartIn": sparkline([r[0] for r in rates]),
        "chartOut": sparkline([r[1] for r in rates]),
        "rateIn": rates[-1][0] if rates else None,
        "rateOut": rates[-1][1] if rates else None,
        "enableBgp": bool(props.get("enableBgp")),
        "properties": props,
    }


def connections(st: State, viewer: Viewer) -> list[dict[str, Any]]:
    with reading(st.engine) as conn:
        tx = Tx(conn)
        docs = tx.of_type(CONNECTION) if viewer.operator else tx.list_docs(viewer.principal.subject, CONNECTION)
        reports = tx.connection_statuses()
    unplaced = _unplaced(st)
    return [_connection_row(d, reports.get(d.key), unplaced, st.throughput) for d in docs if viewer.may_see(d.scope)]


def vnet_gateways(st: State, viewer: Viewer) -> list[dict[str, Any]]:
    """The viewer's virtual network gateways: where each runs (the pool and node for an operator) or why nowhere."""
    placement = st.documents.placement()
    placed = {p.virtual_network_gateway.lower(): p for p in placement.placed}
    unplaced = {u.virtual_network_gateway.lower(): u.reason for u in placement.unplaced}
    with reading(st.engine) as conn:
        tx = Tx(conn)
        docs = tx.of_type(VNET_GATEWAY) if viewer.operator else tx.list_docs(viewer.principal.subject, VNET_GATEWAY)
    rows = []
    for doc in docs:
        if not viewer.may_see(doc.scope):
            continue
        where = placed.get(doc.key)
        rid = parse(doc.body["id"])
        rows.append({"id": doc.body["id"], "name": doc.name, "group": rid.resource_group if rid else "",
                     "sku": (doc.body["properties"].get("sku") or {}).get("name", ""),
                     "bgp": bool(doc.body["properties"].get("enableBgp")),
                     "running": where is not None, "why": where.reason if where else unplaced.get(doc.key, ""),
                     "connections": len(where.connections) if where else 0,
                     "pool": where.pool if where else None, "node": where.node if where else None})  # fmt: skip
    return rows


def connection(st: State, viewer: Viewer, connection_id: str) -> dict[str, Any] | None:
    """One connection with its SAs, tunnels, BGP peer and learned routes; None if the viewer may not see it."""
    with reading(st.engine) as conn:
        tx = Tx(conn)
        doc = tx.get(connection_id.lower())
        if doc is None or doc.type != CONNECTION or not viewer.may_see(doc.scope):
            return None
        carried = tx.connection_report(doc.key)
        learned = routes_of(tx, [doc.key]).get(doc.key, [])
    row = _connection_row(doc, carried, _unplaced(st), st.throughput)
    report = carried[1] if carried else {}
    return {**row, "ikeSas": report.get("ikeSas", []), "tunnels": report.get("tunnelConnectionStatus", []),
            "bgp": report.get("bgp") or {}, "learned": learned, "properties": row["properties"]}  # fmt: skip


def events(st: State, viewer: Viewer, needles: list[str]) -> dict[str, Any]:
    """The latest events the viewer may see, those naming any of `needles`, and the failovers among them."""
    with reading(st.engine) as conn:
        tx = Tx(conn)
        latest = tx.events(limit=1000, scope=None if viewer.operator else viewer.principal.subject)
    shown = stories.matching(latest, needles)
    return {"events": list(reversed(shown[-EVENTS_SHOWN:])), "stories": list(reversed(stories.stories(shown)))[:5]}


def event_filters(st: State, pool: str | None) -> list[str]:
    """A pool's filter is its gateways, their nodes and the VNet gateways it carries."""
    if not pool:
        return []
    placement = st.documents.placement()
    found = next((p for p in placement.pools if p.name.lower() == pool.lower()), None)
    if found is None:
        return [pool]
    members = [*found.actives, *found.standbys]
    return [*(name for name, _n in members), *(node for _g, node in members),
            *(p.virtual_network_gateway for p in placement.placed if p.pool == found.name)]  # fmt: skip


def vnet_gateway_filters(st: State, name: str) -> list[str]:
    """A VNet gateway's filter: its name or id, and its connections (their status events name them, not it)."""
    wanted = name.lower()
    out = [name]
    for placed in st.documents.placement().placed:
        placed_id = placed.virtual_network_gateway.lower()
        if placed_id == wanted or placed_id.endswith("/" + wanted):
            out += placed.connections
    return out


def placement(st: State, drain: str | None) -> dict[str, Any]:
    """Where each VNet gateway is and why; why any is unplaced; and, for `drain`, what draining it would move."""
    current = st.documents.placement()
    out: dict[str, Any] = {**current.as_json(), "drain": None}
    if drain:
        snapshot = st.documents.snapshot()
        name = drain.lower()
        what_if = plan(snapshot, snapshot.assignment, snapshot.gateway_states, leaving=frozenset({name}))
        carried = {p.virtual_network_gateway.lower() for p in current.placed if p.gateway.lower() == name}
        moves = [{"virtualNetworkGateway": m.virtual_network_gateway, "target": m.target, "reason": m.reason}
                 for m in what_if.moves if m.source.lower() == name]  # fmt: skip
        stranded = [{"virtualNetworkGateway": u.virtual_network_gateway, "reason": u.reason}
                    for u in what_if.placement.unplaced if u.virtual_network_gateway.lower() in carried]  # fmt: skip
        known = any(g["name"].lower() == name for pool in out["pools"] for g in pool["gateways"])
        out["drain"] = {"gateway": drain, "known": known, "moves": moves, "stranded": stranded}
    return out
