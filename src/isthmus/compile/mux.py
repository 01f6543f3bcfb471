"""MUX documents: every allocated public IP and host outbound NAT address as a /32 (or /128) VIP with its
backend next hop.

Identical on every MUX (stateless, ECMP-safe); only the MUX's own BGP identity differs. The VIP table
is kept per public IP so that one changed resource updates only the VIPs it touches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from isthmus.compile.placement import Placement
from isthmus.model.snapshot import EMPTY, HOSTS, MUXES, NIC, VNET_GATEWAY, Snapshot, public_ip_keys

USERS = (NIC, VNET_GATEWAY)  # resources whose ipConfigurations carry public IPs


@dataclass
class VipTable:
    vips: dict[str, dict[str, Any]] = field(default_factory=dict)  # prefix -> {nextHop, owner}
    prefix_of: dict[str, str] = field(default_factory=dict)  # public IP key -> prefix
    user_of: dict[str, str] = field(default_factory=dict)  # public IP key -> NIC or gateway key

    def refresh(self, snapshot: Snapshot, placement: Placement, pips: Iterable[str]) -> None:
        """Recompute the VIPs of `pips`. Copy-on-write: documents already handed out keep their table."""
        self.vips = dict(self.vips)
        on_node = {p.virtual_network_gateway.lower(): p.node for p in placement.placed}
        for pip in pips:
            old = self.prefix_of.pop(pip, None)
            if old is not None:
                self.vips.pop(old, None)
            address = snapshot.public_ips.get(pip)
            if address is None:
                continue
            prefix = f"{address}/{128 if ':' in address else 32}"
            self.prefix_of[pip] = prefix
            self.vips[prefix] = {"nextHop": _next_hop(snapshot, on_node, self.user_of.get(pip)), "owner": pip}

    def rebind(self, old: Snapshot, new: Snapshot, users: Iterable[str]) -> set[str]:
        """Follow changed NICs/gateways to the public IPs they use; returns the public IPs touched."""
        touched: set[str] = set()
        for user in users:
            for pip in public_ip_keys(old.documents.get(user)):
                if self.user_of.get(pip) == user:
                    del self.user_of[pip]
                touched.add(pip)
            for pip in public_ip_keys(new.documents.get(user)):
                self.user_of[pip] = user
                touched.add(pip)
        return touched


def _next_hop(snapshot: Snapshot, on_node: dict[str, str], user: str | None) -> str | None:
    if user is None:
        return None
    if snapshot.types.get(user) == NIC:
        host = snapshot.host_of_nic.get(user)
        return snapshot.host_address.get(host) if host else None
    if snapshot.types.get(user) == HOSTS:  # a host's outbound NAT address: replies go back to that host
        return snapshot.host_address.get(snapshot.documents[user]["properties"]["node"])
    node = on_node.get(user)
    return snapshot.nodes.get(node, {}).get("address") if node else None


def vip_table(snapshot: Snapshot, placement: Placement) -> VipTable:
    table = VipTable()
    table.rebind(EMPTY, snapshot, [key for type_ in USERS for key in snapshot.keys_of(type_)])
    table.user_of.update({key: key for key in snapshot.keys_of(HOSTS)})  # hosts own their outbound address
    table.refresh(snapshot, placement, snapshot.public_ips)
    return table


def mux_document(snapshot: Snapshot, node: str, table: VipTable) -> dict[str, Any]:
    identity = next(
        (doc["properties"] for _k, doc in snapshot.of_type(MUXES) if doc["properties"]["node"] == node), None
    )
    return {
        "node": node,
        "role": "mux",
        "revision": snapshot.revision,
        "bgp": None
        if identity is None
        else {
            "asn": identity["asn"],
            "routerId": identity["routerId"],
            "peers": identity["peers"],
        },
        "vips": table.vips,  # never mutated once handed out (see VipTable.refresh)
    }
