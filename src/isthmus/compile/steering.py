"""Steering on the public IPs gateway pools share (model/steering.py): per connection of a VNet gateway placed
in such a pool, its site's packets to the shared address -> the gateway node carrying it.

    Placement ──► for each placed VNet gateway of a pool with a shared address, for each connection:
                  (shared address, site address, ipsec | gre[, key]) -> the node's underlay address

Pure. Only a connection whose gateway moved changes its entries, so a failover's MUX delta carries the moved
tenants' steering and nobody else's.
"""

from __future__ import annotations

from collections.abc import Mapping

from isthmus.compile.host import address
from isthmus.compile.placement import Placement
from isthmus.model.addresses import Address, parse_address
from isthmus.model.documents import Steer
from isthmus.model.ids import normalize
from isthmus.model.snapshot import POOLS, Snapshot
from isthmus.model.steering import steer_key_of


def shared_addresses(snapshot: Snapshot) -> dict[str, Address]:
    """Gateway pool (lower-case name) -> the public IP it shares with other pools, for those that share one."""
    out = {}
    for _key, doc in snapshot.of_type(POOLS):
        text = doc["properties"].get("publicIpAddress")
        if text:
            out[doc["name"].lower()] = parse_address(text)
    return out


def steering(snapshot: Snapshot, placement: Placement, shared: Mapping[str, Address]) -> tuple[Steer, ...]:
    """Every steering entry, by key. Two connections of one compartment with the same key are one entry; two
    of different compartments (the API refuses that) keep the first connection's, by connection key."""
    entries: dict[str, Steer] = {}
    for placed in placement.placed:
        vip = shared.get(placed.pool.lower())
        if vip is None:
            continue
        hop_text = snapshot.nodes.get(placed.node, {}).get("address")
        hop = address(hop_text) if hop_text else None
        for connection_id in sorted(normalize(c) for c in placed.connections):
            props = (snapshot.get(connection_id) or {}).get("properties", {})
            local = snapshot.get(props.get("localNetworkGateway2", {}).get("id", "")) or {}
            site = local.get("properties", {}).get("gatewayIpAddress")
            key = steer_key_of(
                props.get("connectionType", ""),
                parse_address(site) if site else None,
                (props.get("greSettings") or {}).get("key"),
            )
            if key is None:
                continue
            steer = Steer(vip, key.site, key.protocol, key.gre_key, hop, connection_id)
            entries.setdefault(steer.key, steer)
    return tuple(entries[k] for k in sorted(entries))
