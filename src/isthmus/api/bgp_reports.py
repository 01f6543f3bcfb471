"""What a gateway reports of a BGP connection's session with its site (ConnectionReport.bgp), and what the
controller keeps of it.

    "bgp": {"peer": BgpPeerStatus, "learnedRoutes": [GatewayRoute, …] | null, "learnedRoutesDropped": N,
            "advertisedRoutes": [GatewayRoute, …]}

The shapes are Azure's (BgpPeerStatus, GatewayRoute of Microsoft.Network's virtualNetworkGateway.json). The
peer status and the advertised routes are kept with the connection's last report (table connection_status)
and answered by getBgpPeerStatus / getAdvertisedRoutes. `learnedRoutes` is the site's whole current set, at
most limits.BGP_LEARNED_ROUTES (more: the report is refused); null or absent means "not known yet" (a new
carrier whose session is not up) and keeps what is stored. A set that differs from the stored one is written
(store/learned_routes.py) and becomes routes on every host of the VNet. Events: the session reaching or
leaving Connected, and the site's routes starting to be dropped; never one per heartbeat.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from isthmus.model import limits
from isthmus.model.addresses import parse_address, parse_network
from isthmus.store import learned_routes
from isthmus.store.repo import Tx


def _address(text: str) -> str:
    return str(parse_address(text))


def _prefix(text: str) -> str:
    return str(parse_network(text))  # host bits set: refused


def _as_path(text: str) -> str:
    """Azure writes an AS path with '-' between the ASNs ("65050-65051"); FRR with spaces: either is taken."""
    return "-".join(text.replace("-", " ").split())


def _absent(value: object) -> object:
    return None if value == "" else value  # "" (FRR's empty next hop, no source peer): not given


AddressText = Annotated[str, StringConstraints(min_length=2, max_length=45), AfterValidator(_address)]
MaybeAddress = Annotated[AddressText | None, BeforeValidator(_absent)]
PrefixText = Annotated[str, StringConstraints(min_length=4, max_length=49), AfterValidator(_prefix)]
Counter = Annotated[int, Field(ge=0, le=2**63 - 1)]
Asn = Annotated[int, Field(ge=1, le=4294967295)]
PeerState = Literal["Unknown", "Stopped", "Idle", "Connecting", "Connected"]
CONNECTED = "Connected"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class BgpPeerReport(_Strict):
    """Azure's BgpPeerStatus: the gateway's session with the site."""

    localAddress: AddressText
    neighbor: AddressText
    asn: Asn
    state: PeerState
    # A .NET TimeSpan as Azure writes it: [d.]hh:mm:ss[.fffffff] (hours past 99 when days are folded into them).
    connectedDuration: str = Field(
        default="", max_length=32, pattern=r"^((\d{1,8}\.)?\d{2,9}:\d{2}:\d{2}(\.\d{1,7})?)?$"
    )
    routesReceived: Counter = 0
    messagesSent: Counter = 0
    messagesReceived: Counter = 0


class GatewayRouteReport(_Strict):
    """Azure's GatewayRoute. asPath is kept as Azure writes it, the ASNs joined by '-' ("65050-65051"); a report
    may join them with spaces (FRR's form). An empty nextHop or sourcePeer is none."""

    localAddress: AddressText
    network: PrefixText
    nextHop: MaybeAddress = None
    sourcePeer: MaybeAddress = None
    origin: Literal["EBgp", "IBgp", "Igp", "Egp", "Incomplete", "Network"]
    asPath: Annotated[str, Field(max_length=512, pattern=r"^[0-9{}(),\- ]*$"), AfterValidator(_as_path)] = ""
    weight: int = Field(default=0, ge=0, le=65535)


class BgpReport(_Strict):
    peer: BgpPeerReport | None = None
    learnedRoutes: list[GatewayRouteReport] | None = Field(default=None, max_length=limits.BGP_LEARNED_ROUTES)
    learnedRoutesDropped: Counter = 0  # what the site advertised beyond limits.BGP_LEARNED_ROUTES
    advertisedRoutes: list[GatewayRouteReport] = Field(default_factory=list, max_length=limits.BGP_ADVERTISED_ROUTES)


def peer_state(report: Mapping[str, Any] | None) -> str:
    """The BGP peer state a stored or new connection report says ("Unknown" if it says none)."""
    peer = ((report or {}).get("bgp") or {}).get("peer") or {}
    return str(peer.get("state", "Unknown"))


def dropped(report: Mapping[str, Any] | None) -> int:
    return int(((report or {}).get("bgp") or {}).get("learnedRoutesDropped", 0))


def without_bgp(report: Mapping[str, Any]) -> dict[str, Any]:
    """A status report as /admin/nodes keeps it: a site's routes are its tenant's, not the operator's."""
    connections = report.get("connections")
    if not connections:
        return dict(report)
    return {**report, "connections": {k: {f: v for f, v in c.items() if f != "bgp"} for k, c in connections.items()}}


def record(
    tx: Tx,
    node: str,
    reports: Mapping[str, Mapping[str, Any]],
    before: Mapping[str, Mapping[str, Any] | None],
    carried: frozenset[str],
) -> None:
    """After `node`'s connection reports were stored (`before`: each connection's previous report): its
    learned routes, for the connections it carries now, and the events of sessions and dropped routes."""
    learned = {
        key: report["bgp"]["learnedRoutes"]
        for key, report in reports.items()
        if key in carried and (report.get("bgp") or {}).get("learnedRoutes") is not None and _speaks_bgp(tx, key)
    }
    learned_routes.record(tx, node, learned)
    for key, report in sorted(reports.items()):
        was, now = peer_state(before.get(key)), peer_state(report)
        if (was == CONNECTED) != (now == CONNECTED):
            kind = "bgpConnected" if now == CONNECTED else "bgpDisconnected"
            _event(tx, node, key, kind, f"BGP session with the site {was} -> {now}")
        count = dropped(report)
        if count > 0 and dropped(before.get(key)) == 0:
            _event(tx, node, key, "bgpRoutesDropped",
                   f"the site advertised more than {limits.BGP_LEARNED_ROUTES} routes; {count} dropped")  # fmt: skip


def _speaks_bgp(tx: Tx, key: str) -> bool:
    doc = tx.get(key)
    return bool(doc is not None and doc.body["properties"].get("enableBgp"))


def _event(tx: Tx, node: str, key: str, kind: str, what: str) -> None:
    """One event in the connection's owner's scope (its subscription)."""
    doc = tx.get(key)
    if doc is not None:
        tx.event(doc.scope, f"connections.{kind}", doc.body["id"], f"connection {doc.name} on {node}: {what}")
