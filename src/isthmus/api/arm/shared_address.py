"""One public IP for all pools, in the API: the shared address a VNet gateway may answer on, and the refusal of
two connections on one shared address that the MUXes could not tell apart (model/steering.py `collides`).

A VNet gateway may be placed in any pool sold at its SKU's tier, so a connection is checked against every
shared address of those pools: what is accepted can be steered wherever placement puts it. A tenant is told
only that its connection conflicts with another on the shared address (its own site address and key, never the
other tenant's connection); the operator's events name both connections.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from isthmus.api.errors import ArmError, conflict
from isthmus.compile.placement import SKU_MBPS
from isthmus.model.addresses import parse_address
from isthmus.model.snapshot import CONNECTION, POOLS
from isthmus.model.steering import SteerKey, collides, steer_key_of
from isthmus.store.repo import Tx

CODE = "SharedPublicIpAddressConflict"


@dataclass(frozen=True)
class Steered:
    """One connection as the steering sees it."""

    connection: str  # ARM id
    gateway: str  # its VNet gateway's store key
    key: SteerKey
    addresses: frozenset[str]  # the shared addresses its gateway may answer on


def pools(tx: Tx) -> dict[str, Mapping[str, Any]]:
    """Gateway pool (lower-case name) -> its properties."""
    return {doc.name.lower(): doc.body["properties"] for doc in tx.list_docs("admin", POOLS)}


def addresses_at(sku: str, pool_props: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The shared addresses of the pools sold at `sku`'s tier."""
    tier = SKU_MBPS.get(sku, 0) * 1000
    return frozenset(
        p["publicIpAddress"]
        for p in pool_props
        if p.get("publicIpAddress") and tier in (p.get("tierBandwidthKbps"), *p.get("additionalTiersKbps", []))
    )


def steered(
    connection_id: str,
    props: Mapping[str, Any],
    gateway: Mapping[str, Any] | None,
    site: str | None,
    pool_props: Iterable[Mapping[str, Any]],
) -> Steered | None:
    """A connection (its stored or prepared properties, its VNet gateway's body, its site's address) on the
    shared addresses; None if it is on none or is not steered (L3)."""
    if gateway is None:
        return None
    gre_key = (props.get("greSettings") or {}).get("key")
    key = steer_key_of(props.get("connectionType", ""), parse_address(site) if site else None, gre_key)
    addresses = addresses_at(gateway["properties"]["sku"]["name"], pool_props)
    if key is None or not addresses:
        return None
    return Steered(connection_id, gateway["id"].lower(), key, addresses)


def everyone(tx: Tx, pool_props: Iterable[Mapping[str, Any]], skip: Iterable[str] = ()) -> list[Steered]:
    """Every stored connection on a shared address (but those whose keys are in `skip`)."""
    props_list = list(pool_props)
    if not any(p.get("publicIpAddress") for p in props_list):
        return []
    skipped = {k.lower() for k in skip}
    connections = [d for d in tx.of_type(CONNECTION) if d.key not in skipped]
    wanted = {d.body["properties"]["virtualNetworkGateway1"]["id"].lower() for d in connections}
    wanted |= {d.body["properties"]["localNetworkGateway2"]["id"].lower() for d in connections}
    docs = tx.get_many(wanted)
    out = []
    for d in connections:
        props = d.body["properties"]
        gateway = docs.get(props["virtualNetworkGateway1"]["id"].lower())
        local = docs.get(props["localNetworkGateway2"]["id"].lower())
        site = local.body["properties"].get("gatewayIpAddress") if local else None
        found = steered(d.body["id"], props, gateway.body if gateway else None, site, props_list)
        if found is not None:
            out.append(found)
    return out


def first_conflict(mine: Steered, others: Iterable[Steered]) -> Steered | None:
    """Another VNet gateway's connection that `mine` cannot be told apart from on a shared address."""
    for other in others:
        if other.gateway != mine.gateway and mine.addresses & other.addresses and collides(mine.key, other.key):
            return other
    return None


def check_connection(tx: Tx, mine: Steered | None, target: str) -> None:
    """Refuse `mine` (a connection being written) if it collides with a stored one."""
    if mine is None:
        return
    other = first_conflict(mine, everyone(tx, pools(tx).values(), skip=[mine.connection]))
    if other is not None:
        raise tenant_refusal(mine, other, target)


def tenant_refusal(mine: Steered, other: Steered, target: str) -> ArmError:
    """409 for the tenant (its own site, protocol and key; not the other connection), with the operator's
    event naming both (written by the API even though the request changes nothing)."""
    shared = ", ".join(sorted(mine.addresses & other.addresses))
    what = "IPsec" if mine.key.protocol == "ipsec" else f"GRE {_key_text(mine.key)}"
    error = conflict(
        CODE,
        f"Connection {mine.connection.rsplit('/', 1)[-1]} ({what} from site {mine.key.site}) conflicts with another "
        f"connection on the shared address {shared}: the gateway could not tell their traffic apart. "
        + ("Use a different GRE key." if mine.key.protocol == "gre" else "Use a different site address."),
        target,
    )
    error.operator_event = _event(mine, other, shared, "refused")
    return error


def operator_refusal(first: Steered, second: Steered, what: str, target: str) -> ArmError:
    """409 for the operator: a change of pools that would put two connections that collide on one address."""
    shared = ", ".join(sorted(first.addresses & second.addresses))
    return conflict(
        CODE,
        f"{what} would put connections {first.connection} and {second.connection} on the shared address {shared} "
        f"with the same site {first.key.site} ({first.key.protocol}"
        + (f", {_key_text(first.key)} / {_key_text(second.key)}" if first.key.protocol == "gre" else "")
        + "): their traffic could not be told apart.",
        target,
    )


def check_pools(tx: Tx, pool_props: Iterable[Mapping[str, Any]], what: str, target: str) -> None:
    """Refuse a pools' change after which two stored connections would collide on a shared address."""
    seen: list[Steered] = []
    for mine in everyone(tx, pool_props):
        other = first_conflict(mine, seen)
        if other is not None:
            raise operator_refusal(other, mine, what, target)
        seen.append(mine)


def _key_text(key: SteerKey) -> str:
    return "no key" if key.gre_key is None else f"key {key.gre_key}"


def _event(mine: Steered, other: Steered, shared: str, verb: str) -> tuple[str, str, str, dict[str, Any]]:
    return (
        "sharedPublicIp.conflict",
        mine.connection,
        f"connection {mine.connection} {verb}: on shared address {shared} its site {mine.key.site} "
        f"({mine.key.protocol}{', ' + _key_text(mine.key) if mine.key.protocol == 'gre' else ''}) "
        f"conflicts with connection {other.connection}",
        {"connection": mine.connection, "conflictsWith": other.connection, "sharedAddress": shared},
    )
