"""MUX documents: every allocated public IP and host outbound NAT address as a /32 (or /128) VIP with its
backend next hop, and the steering of the public IPs gateway pools share (compile/steering.py; such an
address is a VIP without a backend: what is not steered is dropped at the MUX).

Identical on every MUX (stateless, ECMP-safe); only the MUX's own BGP identity differs. The VIP table
is kept per public IP so that one changed resource updates only the VIPs it touches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from isthmus.compile.host import address
from isthmus.compile.placement import Placement
from isthmus.compile.steering import shared_addresses
from isthmus.model.addresses import Address
from isthmus.model.documents import BgpIdentity, BgpPeer, MuxDocument, Steer, Vip
from isthmus.model.snapshot import EMPTY, HOSTS, MUXES, NIC, VNET_GATEWAY, Snapshot, public_ip_keys

USERS = (NIC, VNET_GATEWAY)  # resources whose ipConfigurations carry public IPs


@dataclass
class VipTable:
    vips: dict[Address, Vip] = field(default_factory=dict)
    address_of: dict[str, Address] = field(default_factory=dict)  # public IP key -> its address
    user_of: dict[str, str] = field(default_factory=dict)  # public IP key -> NIC or gateway key
    changed: set[Address] = field(default_factory=set)  # VIPs refreshed since the caller last cleared it

    def refresh(self, snapshot: Snapshot, placement: Placement, pips: Iterable[str], *, track: bool = True) -> None:
        """Recompute the VIPs of `pips` (with `track`, noting them in `changed`). Copy-on-write: documents
        already handed out keep their table."""
        self.vips = dict(self.vips)
        changed = self.changed if track else set()
        # A VNet gateway in a pool that shares a public IP answers on that one (steered: compile/steering.py);
        # its own public IP is announced and routed nowhere.
        shared = shared_addresses(snapshot)
        on_node = {p.virtual_network_gateway.lower(): p.node for p in placement.placed if p.pool.lower() not in shared}
        for pip in pips:
            old = self.address_of.pop(pip, None)
            if old is not None:
                self.vips.pop(old, None)
                changed.add(old)
            vip = snapshot.public_ips.get(pip)
            if vip is None:
                continue
            self.address_of[pip] = vip
            self.vips[vip] = Vip(_next_hop(snapshot, on_node, self.user_of.get(pip)), pip)
            changed.add(vip)

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


def _next_hop(snapshot: Snapshot, on_node: dict[str, str], user: str | None) -> Address | None:
    if user is None:
        return None
    text: str | None
    if snapshot.types.get(user) == NIC:
        host = snapshot.host_of_nic.get(user)
        text = snapshot.host_address.get(host) if host else None
    elif snapshot.types.get(user) == HOSTS:  # a host's outbound NAT address: replies go back to that host
        text = snapshot.host_address.get(snapshot.documents[user]["properties"]["node"])
    else:
        node = on_node.get(user)
        text = snapshot.nodes.get(node, {}).get("address") if node else None
    return address(text) if text else None


def vip_table(snapshot: Snapshot, placement: Placement) -> VipTable:
    table = VipTable()
    table.rebind(EMPTY, snapshot, [key for type_ in USERS for key in snapshot.keys_of(type_)])
    table.user_of.update({key: key for key in snapshot.keys_of(HOSTS)})  # hosts own their outbound address
    table.refresh(snapshot, placement, snapshot.public_ips, track=False)
    return table


def mux_document(snapshot: Snapshot, node: str, table: VipTable, steering: tuple[Steer, ...] = ()) -> MuxDocument:
    identity = next(
        (doc["properties"] for _k, doc in snapshot.of_type(MUXES) if doc["properties"]["node"] == node), None
    )
    bgp = None
    if identity is not None:
        peers = tuple(BgpPeer(address(p["address"]), p["asn"]) for p in identity["peers"])
        bgp = BgpIdentity(identity["asn"], IPv4Address(identity["routerId"]), peers)
    # The table's mapping is never mutated once handed out (see VipTable.refresh).
    return MuxDocument(node=node, revision=snapshot.revision, bgp=bgp, vips=table.vips, steering=steering)
