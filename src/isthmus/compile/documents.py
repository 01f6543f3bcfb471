"""The compile pipeline, wired in one place.

    Snapshot ──► placement.place ──────────────┬──► gateway.gateway_document  (per gateway node)
        │                                      ├──► mux.VipTable ──┬──► mux.mux_document (per MUX node)
        │                                      └──► steering ──────┘  (shared public IPs of the pools)
        └──────► host.index ──────────────────────► host.host_document      (per host node)

Every box is a pure function of the snapshot; the result is one desired-state document per node.
`Compiler.advance` moves to a newer snapshot by updating only what the changed keys reach, and says
which nodes' documents may differ.
"""

from __future__ import annotations

from isthmus.compile import host, mux, placement, steering
from isthmus.compile.gateway import Unseal, gateway_document, site_routes, vnet_of_gateway
from isthmus.model.addresses import Address
from isthmus.model.documents import Document, OtherDocument
from isthmus.model.snapshot import (
    CONNECTION,
    GATEWAYS,
    HOSTS,
    LEARNED,
    LOCAL_GATEWAY,
    MUXES,
    NIC,
    NSG,
    PIP,
    VNET,
    VNET_GATEWAY,
    FabricSettings,
    Snapshot,
    public_ip_keys,
)

GATEWAY_TYPES = {VNET_GATEWAY, CONNECTION, LOCAL_GATEWAY}


def node_roles(snapshot: Snapshot) -> dict[str, str]:
    """Every node the operator declared or that registered, with its role."""
    roles = {}
    for type_, role in ((HOSTS, "host"), (MUXES, "mux"), (GATEWAYS, "gateway")):
        for _key, doc in snapshot.of_type(type_):
            roles[doc["properties"]["node"]] = role
    for name, info in snapshot.nodes.items():
        roles.setdefault(name, info["role"])
    return roles


class Compiler:
    """Documents of one snapshot; shared parts (placement, host index, VIP table) computed once."""

    def __init__(
        self, snapshot: Snapshot, settings: FabricSettings | None = None, unseal: Unseal | None = None
    ) -> None:
        self.snapshot = snapshot
        self.settings = settings or FabricSettings()
        self.unseal = unseal  # opens pre-shared keys for gateway documents (None: they carry none)
        self.placement = placement.place(snapshot)
        self.host_index = host.index(snapshot)
        self.host_memo = host.HostMemo(self.settings, site_routes(snapshot, self.placement))
        self.vip_table = mux.vip_table(snapshot, self.placement)
        self.steering = steering.steering(snapshot, self.placement, steering.shared_addresses(snapshot))
        self.roles = node_roles(snapshot)
        # The VIPs the last `advance` may have changed (None: unknown, compare them all).
        self.vips_touched: set[Address] | None = None

    def document(self, node: str, role: str | None = None) -> Document:
        role = role or self.roles.get(node, "unknown")
        if role == "host":
            return host.host_document(self.snapshot, self.host_index, node, self.host_memo)
        if role == "mux":
            return mux.mux_document(self.snapshot, node, self.vip_table, self.steering)
        if role == "gateway":
            return gateway_document(self.snapshot, self.placement, node, self.unseal, self.host_index, self.host_memo)
        return OtherDocument(node, self.snapshot.revision, role)

    def all_documents(self) -> dict[str, Document]:
        return {node: self.document(node, role) for node, role in sorted(self.roles.items())}

    def advance(self, new: Snapshot, changed: set[str]) -> set[str]:
        """Move this compiler to `new`, reached by the `changed` keys, updating in place only what they
        reach; returns the nodes whose documents may differ. The result equals `Compiler(new)`."""
        old = self.snapshot
        types = {new.types.get(k) or old.types.get(k, "") for k in changed}
        if any(t.startswith("admin/") for t in types) or new.nodes != old.nodes:
            before = set(self.roles)
            # Operator changes are rare: start over.
            self.__init__(new, self.settings, self.unseal)  # type: ignore[misc]
            return before | set(self.roles)
        self.snapshot = new
        self.vip_table.changed.clear()
        affected: set[str] = set()
        placement_moved = bool(types & GATEWAY_TYPES) or placement.stored_state_changed(old, new)
        touched_vnets: set[str] = set()
        if placement_moved:
            self.placement = placement.place(new)
            affected.update(n for n, r in self.roles.items() if r == "gateway")
            touched_vnets |= self._reroute(new)
            steered = steering.steering(new, self.placement, steering.shared_addresses(new))
            if steered != self.steering:
                self.steering = steered
                affected.update(n for n, r in self.roles.items() if r == "mux")
        elif VNET in types or any(k.startswith(LEARNED) for k in changed):
            # What a site learned (observed), kept apart from the VNet's own space: only that VNet's hosts
            # follow; gateway documents carry no learned routes.
            for vnet in self._reroute(new):
                affected.update(self.host_index.hosts_of(vnet))
        for key in changed:
            type_ = new.types.get(key) or old.types.get(key, "")
            if type_ == NIC:
                touched_vnets.update(self._hosts_vnet(key))
                self.host_memo.forget({key})
                self.host_index.remove(key)
                self.host_index.add(new, key)
                touched_vnets.update(self._hosts_vnet(key))
            elif type_ == VNET:
                touched_vnets.add(key)
                self.host_memo.forget({key})
            elif type_ == NSG:
                self.host_memo.forget({key})
                affected.update(n for n, r in self.roles.items() if r == "host")
        for vnet in touched_vnets:
            affected.update(self.host_index.hosts_of(vnet))
        if touched_vnets and not placement_moved:  # compartments list the VNet's hosts and VMs
            for placed in self.placement.placed:
                if vnet_of_gateway(new, placed.virtual_network_gateway) in touched_vnets:
                    affected.add(placed.node)
        users = [k for k in changed if (new.types.get(k) or old.types.get(k)) in mux.USERS]
        pips = {k for k in changed if (new.types.get(k) or old.types.get(k)) == PIP}
        if users or pips or placement_moved:
            pips |= self.vip_table.rebind(old, new, users)
            if placement_moved:
                pips |= {p for p, u in self.vip_table.user_of.items() if new.types.get(u) == VNET_GATEWAY}
            self.vip_table.refresh(new, self.placement, pips)
            affected.update(n for n, r in self.roles.items() if r == "mux")
        self.vips_touched = set(self.vip_table.changed)
        return affected

    def _reroute(self, new: Snapshot) -> set[str]:
        """The site routes of `new` held for the host documents; returns the VNets whose routes changed."""
        sites = site_routes(new, self.placement)
        held = self.host_memo.site_routes
        rerouted = {v for v in set(held) | set(sites) if held.get(v) != sites.get(v)}
        self.host_memo.site_routes = sites
        self.host_memo.forget(rerouted)  # the VirtualNetwork tag of their NSG programs covers the sites
        return rerouted

    def carriers(self, key: str) -> set[str]:
        """The nodes whose documents realise resource `key` (what must apply it before it is done)."""
        snapshot = self.snapshot
        type_ = snapshot.types.get(key, "")
        muxes = {n for n, r in self.roles.items() if r == "mux"}
        placed = {p.virtual_network_gateway.lower(): p.node for p in self.placement.placed}
        if type_ == NIC:
            host = self.host_index.host_of_nic.get(key)
            return ({host} if host else set()) | (muxes if public_ip_keys(snapshot.documents[key]) else set())
        if type_ == VNET:
            return self.host_index.hosts_of(key)
        if type_ == NSG:
            return {node for node, role in self.roles.items() if role == "host" and self._host_uses_nsg(node, key)}
        if type_ == PIP:
            user = self.vip_table.user_of.get(key)
            return muxes | (self.carriers(user) - muxes if user else set()) if key in snapshot.public_ips else set()
        if type_ == VNET_GATEWAY:
            return ({placed[key]} if key in placed else set()) | muxes
        if type_ == CONNECTION:
            gateway = snapshot.documents[key]["properties"]["virtualNetworkGateway1"]["id"].lower()
            return {placed[gateway]} if gateway in placed else set()
        if type_ == LOCAL_GATEWAY:
            return {
                p.node for p in self.placement.placed for c in p.connections if _local_gateway_of(snapshot, c) == key
            }
        return set()

    def _host_uses_nsg(self, host_node: str, nsg: str) -> bool:
        for nic in self.host_index.nics_by_host.get(host_node, ()):
            doc = self.snapshot.documents[nic]
            if doc["properties"].get("networkSecurityGroup", {}).get("id", "").lower() == nsg:
                return True
            vnet = self.snapshot.get(self.host_index.vnet_of_nic[nic]) or {}
            for subnet in vnet.get("properties", {}).get("subnets", []):
                if subnet["properties"].get("networkSecurityGroup", {}).get("id", "").lower() == nsg:
                    return True
        return False

    def _hosts_vnet(self, nic: str) -> set[str]:
        vnet = self.host_index.vnet_of_nic.get(nic)
        return {vnet} if vnet else set()


def _local_gateway_of(snapshot: Snapshot, connection: str) -> str:
    props = (snapshot.get(connection) or {}).get("properties", {})
    return str(props.get("localNetworkGateway2", {}).get("id", "")).lower()
