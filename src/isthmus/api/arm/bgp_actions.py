"""Azure's BGP actions on a virtual network gateway, answered from what its carrier last reported:

- POST …/virtualNetworkGateways/{name}/getBgpPeerStatus[?peer=IP]: {"value": [BgpPeerStatus]}, one per
  connection with enableBgp (state Unknown until its gateway has reported the session);
- POST …/getLearnedRoutes: {"value": [GatewayRoute]}: the gateway's own routes (origin Network: the VNet's
  address space and the prefixes its local network gateways declare, as Azure lists them), then what each
  BGP connection's site advertised (origin EBgp; the stored set, store/learned_routes.py);
- POST …/getAdvertisedRoutes?peer=IP (peer required): {"value": [GatewayRoute]}, what the gateway advertises
  to that site.

A gateway without BGP answers empty lists. Like getikesas each is done when it answers (200): the SDK's poller
takes that as the result. The routes are the tenant's: only its subscription reaches them.

(No `from __future__ import annotations`: FastAPI reads the signatures at runtime.)
"""

from ipaddress import ip_interface
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from isthmus.api.arm import service
from isthmus.api.arm.bgp_rules import OWN_ADDRESS
from isthmus.api.arm.kinds import BY_COLLECTION
from isthmus.api.deps import network_api_version, read, state, tenant
from isthmus.api.errors import bad_request
from isthmus.api.state import State
from isthmus.model.addresses import parse_address
from isthmus.model.ids import ResourceId
from isthmus.model.snapshot import vnet_key_of
from isthmus.store import learned_routes
from isthmus.store.repo import Doc, Tx
from isthmus.store.tokens import Principal

router = APIRouter()
GATEWAY = (
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network"
    "/virtualNetworkGateways/{name}"
)
GATEWAYS = BY_COLLECTION["virtualnetworkgateways"]
NETWORK_WEIGHT = 32768  # what Azure shows for the gateway's own routes
PEER = Query(default=None, max_length=64, description="the IP address of the BGP peer")


@router.post(GATEWAY + "/getBgpPeerStatus", tags=["virtualNetworkGateways"],
             name="VirtualNetworkGateways_GetBgpPeerStatus")  # fmt: skip
async def get_bgp_peer_status(
    subscriptionId: str,
    resourceGroupName: str,
    name: str,
    peer: str | None = PEER,
    _v: str = Depends(network_api_version),
    _who: Principal = Depends(tenant),
    st: State = Depends(state),
) -> JSONResponse:
    wanted = _peer(peer)
    with read(st) as tx:
        sessions = _sessions(tx, _gateway(tx, subscriptionId, resourceGroupName, name))
    value = [s.status for s in sessions if wanted is None or s.neighbor == wanted]
    return JSONResponse({"value": value})


@router.post(GATEWAY + "/getLearnedRoutes", tags=["virtualNetworkGateways"],
             name="VirtualNetworkGateways_GetLearnedRoutes")  # fmt: skip
async def get_learned_routes(
    subscriptionId: str,
    resourceGroupName: str,
    name: str,
    _v: str = Depends(network_api_version),
    _who: Principal = Depends(tenant),
    st: State = Depends(state),
) -> JSONResponse:
    with read(st) as tx:
        gateway = _gateway(tx, subscriptionId, resourceGroupName, name)
        sessions = _sessions(tx, gateway)
        value = _network_routes(tx, gateway) if gateway.body["properties"].get("enableBgp") else []
        learned = learned_routes.routes_of(tx, [s.connection.key for s in sessions])
    for session in sessions:
        value += learned.get(session.connection.key, [])
    return JSONResponse({"value": value})


@router.post(GATEWAY + "/getAdvertisedRoutes", tags=["virtualNetworkGateways"],
             name="VirtualNetworkGateways_GetAdvertisedRoutes")  # fmt: skip
async def get_advertised_routes(
    subscriptionId: str,
    resourceGroupName: str,
    name: str,
    peer: str | None = PEER,
    _v: str = Depends(network_api_version),
    _who: Principal = Depends(tenant),
    st: State = Depends(state),
) -> JSONResponse:
    wanted = _peer(peer)
    if wanted is None:
        raise bad_request("MissingRequiredParameter", "peer is required: the IP address of the BGP peer.", "peer")
    with read(st) as tx:
        sessions = _sessions(tx, _gateway(tx, subscriptionId, resourceGroupName, name))
    value = [route for s in sessions if s.neighbor == wanted for route in s.advertised]
    return JSONResponse({"value": value})


def _peer(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return str(parse_address(text))
    except ValueError:
        raise bad_request("InvalidRequestFormat", f"peer '{text[:64]}' is not an IP address.", "peer") from None


def _gateway(tx: Tx, subscription: str, group: str, name: str) -> Doc:
    service.check_name(name, "name")
    return service.get(tx, GATEWAYS, ResourceId(subscription, group, "virtualNetworkGateways", name))


class Session:
    """One BGP connection of the gateway: its session's status and what the gateway advertises on it."""

    def __init__(self, connection: Doc, local: str, site: dict[str, Any], reported: dict[str, Any]) -> None:
        self.connection = connection
        bgp = site.get("bgpSettings") or {}
        unknown = {"localAddress": local, "neighbor": bgp.get("bgpPeeringAddress"), "asn": bgp.get("asn"),
                   "state": "Unknown", "connectedDuration": "", "routesReceived": 0, "messagesSent": 0,
                   "messagesReceived": 0}  # fmt: skip
        self.status: dict[str, Any] = {**unknown, **(reported.get("peer") or {})}
        self.neighbor = str(self.status["neighbor"])
        self.advertised: list[dict[str, Any]] = list(reported.get("advertisedRoutes") or [])


def _sessions(tx: Tx, gateway: Doc) -> list[Session]:
    """The gateway's connections with enableBgp, in name order (none while the gateway has no BGP)."""
    props = gateway.body["properties"]
    if not props.get("enableBgp"):
        return []
    connections = sorted(
        (doc for source, path, _t in tx.referrers(gateway.key, below=False)
         if path == "virtualNetworkGateway1" and (doc := tx.get(source)) is not None
         and doc.body["properties"].get("enableBgp")),
        key=lambda d: d.key,
    )  # fmt: skip
    reports = tx.connection_reports([c.key for c in connections])
    out = []
    for connection in connections:
        cp = connection.body["properties"]
        site = tx.get(cp["localNetworkGateway2"]["id"].lower())
        reported = (reports.get(connection.key) or {}).get("bgp") or {}
        out.append(Session(connection, _local_address(props, cp), site.body["properties"] if site else {}, reported))
    return out


def _local_address(gateway: dict[str, Any], connection: dict[str, Any]) -> str:
    """The gateway's BGP address on a connection: its GatewaySubnet address, or (GRE, L3) the connection's."""
    settings, field = OWN_ADDRESS.get(connection["connectionType"], ("", ""))
    own = (connection.get(settings) or {}).get(field)
    return str(ip_interface(own).ip) if own else str(gateway["bgpSettings"]["bgpPeeringAddress"])


def _network_routes(tx: Tx, gateway: Doc) -> list[dict[str, Any]]:
    """The gateway's own routes as Azure lists them: the VNet's address space and every connection's
    declared site prefixes, origin Network."""
    props = gateway.body["properties"]
    local = str(props["bgpSettings"]["bgpPeeringAddress"])
    vnet = tx.get(vnet_key_of(props["ipConfigurations"][0]["properties"]["subnet"]["id"]))
    prefixes = list(vnet.body["properties"]["addressSpace"]["addressPrefixes"]) if vnet else []
    for source, path, _t in tx.referrers(gateway.key, below=False):
        connection = tx.get(source) if path == "virtualNetworkGateway1" else None
        site = tx.get(connection.body["properties"]["localNetworkGateway2"]["id"].lower()) if connection else None
        for prefix in site.body["properties"]["localNetworkAddressSpace"]["addressPrefixes"] if site else []:
            if prefix not in prefixes:
                prefixes.append(prefix)
    return [{"localAddress": local, "network": p, "sourcePeer": local, "origin": "Network", "asPath": "",
             "weight": NETWORK_WEIGHT} for p in prefixes]  # fmt: skip
