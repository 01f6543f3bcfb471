"""Operator objects: their cross-checks, references and what blocks their deletion.

M+N is kept here too: a pool's redundantGatewayCount N must stay below M (its gateways less N), and a gateway
is deleted only once drained, without leaving its pool with M <= N or without room for its load (the planner's
what-if), unless forced.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from typing import Any

from pydantic import BaseModel

from isthmus.api.arm import shared_address
from isthmus.api.arm.addressing import PUBLIC, allocate_public, claim_shared_public, pool_networks
from isthmus.api.errors import bad_request, conflict
from isthmus.compile.placement import plan
from isthmus.model import admin, ids
from isthmus.model.placement import STANDBY
from isthmus.model.prefixes import first_overlap, overlap_between
from isthmus.model.snapshot import shared_address_owner
from isthmus.store.repo import Doc, Tx
from isthmus.store.snapshots import load_snapshot

SCOPE = "admin"
NODE_ROLES = {"gateways": "gateway", "loadBalancerMuxes": "mux", "hosts": "host"}


def key(collection: str, name: str) -> str:
    return f"admin/{collection}/{name}".lower()


def type_of(collection: str) -> str:
    return f"admin/{collection}"


@dataclass(frozen=True)
class AdminKind:
    collection: str
    model: type[BaseModel]

    @property
    def type(self) -> str:
        return type_of(self.collection)

    def check(self, tx: Tx, name: str, props: Any, existing: Doc | None = None) -> dict[str, str]:
        """Raise if `props` cannot be stored as object `name` (now `existing`); else the references it makes."""
        refs: dict[str, str] = {}
        if self.collection in NODE_ROLES:
            _node_unique(tx, self.collection, name, props.node)
        if self.collection == "gateways":
            if tx.get(key("gatewayPools", props.pool)) is None:
                raise bad_request(
                    "InvalidResourceReference",
                    f"Gateway pool '{props.pool}' does not exist.",
                    "properties.pool",
                )
            refs["pool"] = key("gatewayPools", props.pool)
            was = existing.body["properties"].get("serviceState") if existing is not None else None
            if props.serviceState == admin.DRAINING and was != admin.DRAINING:
                raise bad_request(
                    "InvalidServiceStateChange",
                    f"serviceState Draining is set by POST /admin/gateways/{name}/drain (isthmus gateway drain), "
                    "which first checks that what the gateway carries has somewhere to go.",
                    "properties.serviceState",
                )
        elif self.collection == "gatewayPools":
            _check_redundancy(tx, name, props, existing)
            for target, tier in [("properties.tierBandwidthKbps", props.tierBandwidthKbps),
                                 *((f"properties.additionalTiersKbps[{i}]", t)
                                   for i, t in enumerate(props.additionalTiersKbps))]:  # fmt: skip
                if tier > props.gatewayCapacityKbps:
                    raise bad_request(
                        "InvalidTierBandwidth", "A connection's tier cannot exceed a gateway's capacity.", target
                    )
        elif self.collection == "loadBalancerMuxes":
            addresses = [peer.address for peer in props.peers]
            for index, address in enumerate(addresses):
                if address in addresses[:index]:
                    raise bad_request(
                        "DuplicatePeer",
                        f"Peer {address} is listed twice.",
                        f"properties.peers[{index}].address",
                    )
        elif self.collection == "hosts":
            for other in tx.list_docs(SCOPE, self.type):
                if other.name.lower() != name.lower() and other.body["properties"]["address"] == props.address:
                    raise conflict(
                        "DuplicateHostAddress",
                        f"Host {other.name} already has address {props.address}.",
                        "properties.address",
                    )
        elif self.collection == "publicIpPools":
            _check_pool(tx, name, props)
        elif self.collection == "portBindings":
            refs.update(_check_binding(tx, name, props))
        return refs

    def derive(self, tx: Tx, name: str, props: Any = None, existing: Doc | None = None) -> dict[str, Any]:
        """Read-only properties the controller fills in. A host holds the public address its VMs without a
        public IP are SNATed to, once the operator has a public IP pool; a gateway still draining keeps
        whether its drain was forced."""
        if self.collection == "gateways":
            held = existing.body["properties"] if existing is not None else {}
            keep = props.serviceState == admin.DRAINING and held.get("drainForced")
            return {"drainForced": True} if keep else {}
        if self.collection == "gatewayPools":
            return _shared_address(tx, name, props, existing)
        if self.collection != "hosts" or not pool_networks(tx):
            return {}
        return {"outboundNatAddress": allocate_public(tx, key("hosts", name), 4, "properties.outboundNatAddress")}

    def after_delete(self, tx: Tx, doc: Doc) -> None:
        """A pool's shared public IP goes back to the public IP pool once no gateway pool shares it."""
        if self.collection == "gatewayPools":
            _release_shared(tx, doc.name, doc.body["properties"].get("publicIpAddress"))

    def check_delete(self, tx: Tx, doc: Doc, force: bool = False) -> None:
        if self.collection == "publicIpPools" and tx.pool_usage(doc.name) > 0:
            raise conflict("PublicIpPoolInUse", f"Public IP pool {doc.name} has addresses allocated.")
        users = [src for src, _p, _t in tx.referrers(doc.key, below=False)]
        if users:
            raise conflict("InUse", f"{doc.name} is referenced by {users[0]} and cannot be deleted.")
        if self.collection == "hosts":
            node = doc.body["properties"]["node"]
            bound = [
                d.name for d in tx.list_docs(SCOPE, type_of("portBindings")) if d.body["properties"]["host"] == node
            ]
            if bound:
                raise conflict("InUse", f"Host {doc.name} still has port binding {bound[0]}.")
        if self.collection == "gateways" and not force:
            _check_removal(tx, doc)


def _pool_gateways(tx: Tx, pool: str) -> list[Doc]:
    return [d for d in tx.list_docs(SCOPE, type_of("gateways")) if d.body["properties"]["pool"].lower() == pool.lower()]


def _shared_address(tx: Tx, name: str, props: admin.GatewayPoolProperties, existing: Doc | None) -> dict[str, Any]:
    """The pool's shared public IP (claimed, or allocated for Dynamic), refused if two connections would then
    collide on it; the address it shared before is released when no other pool shares it."""
    held = existing.body["properties"].get("publicIpAddress") if existing is not None else None
    target = "properties.publicIpAddress"
    address: str | None = None
    if props.publicIpAllocationMethod == "Dynamic":
        address = claim_shared_public(tx, held, shared_address_owner, target)
    elif props.publicIpAddress is not None:
        address = claim_shared_public(tx, props.publicIpAddress, shared_address_owner, target)
    if address != held:
        pool_props = shared_address.pools(tx)
        pool_props[name.lower()] = {**props.model_dump(exclude_none=True), "publicIpAddress": address}
        shared_address.check_pools(tx, pool_props.values(), f"Sharing {address} on pool {name}", target)
        _release_shared(tx, name, held)
    return {"publicIpAddress": address} if address else {}


def _release_shared(tx: Tx, pool: str, address: str | None) -> None:
    if address is None:
        return
    others = [d for d in tx.list_docs(SCOPE, type_of("gatewayPools")) if d.name.lower() != pool.lower()]
    if not any(d.body["properties"].get("publicIpAddress") == address for d in others):
        tx.release(shared_address_owner(address), below=False)


def _check_redundancy(tx: Tx, name: str, props: admin.GatewayPoolProperties, existing: Doc | None) -> None:
    """A change of N that leaves M (the pool's gateways less N) at or below N is refused."""
    if existing is None or existing.body["properties"].get("redundantGatewayCount") == props.redundantGatewayCount:
        return  # nothing changes about M+N (a pool re-declared as it is stays as it is)
    count, n = len(_pool_gateways(tx, name)), props.redundantGatewayCount
    if count and count - n <= n:
        raise bad_request(
            "InvalidRedundantGatewayCount",
            f"Pool {name} has {count} gateways: {n} standbys would leave {count - n} active; N must stay below M "
            f"(at most {(count - 1) // 2} here). Add gateways first.",
            "properties.redundantGatewayCount",
        )


def _check_removal(tx: Tx, doc: Doc) -> None:
    """A gateway goes only once drained, and only if its pool keeps M > N and room for its load."""
    snapshot = load_snapshot(tx.conn)
    name = doc.name
    carried = sorted(k for k, a in snapshot.assignment.items() if a.gateway.lower() == name.lower())
    if carried:
        first = snapshot.get(carried[0])
        which = (first["id"] if first else carried[0]) + (", …" if len(carried) > 1 else "")
        raise conflict(
            "GatewayNotDrained",
            f"Gateway {name} still carries {len(carried)} virtual network gateways ({which}): drain it first "
            f"(POST /admin/gateways/{name}/drain, isthmus gateway drain {name}), or delete with force=true.",
        )
    pool_name = doc.body["properties"]["pool"]
    pool = tx.get(key("gatewayPools", pool_name))
    n = pool.body["properties"].get("redundantGatewayCount", 0) if pool is not None else 0
    left = len([d for d in _pool_gateways(tx, pool_name) if d.key != doc.key])
    if left and left - n <= n:
        raise conflict(
            "PoolWouldLoseRedundancy",
            f"Removing gateway {name} would leave pool {pool_name} with {left} gateways for {n} standbys: M "
            f"({left - n}) must stay above N ({n}). Add a gateway or lower redundantGatewayCount first, or delete with "
            "force=true.",
        )
    now = plan(snapshot, snapshot.assignment, snapshot.gateway_states)
    after = plan(snapshot, snapshot.assignment, snapshot.gateway_states, without=frozenset({name.lower()}))
    members = {d.name.lower() for d in _pool_gateways(tx, pool_name)}

    def standbys(states: Any) -> int:
        return sum(1 for g, s in states.items() if g in members and s.role == STANDBY and s.available)

    if standbys(after.states) < min(n, standbys(now.states)):
        raise conflict(
            "PoolWouldLoseStandby",
            f"Removing gateway {name} would leave pool {pool_name} with {standbys(after.states)} of its {n} standbys. "
            "Remove an active that carries nothing instead, or delete with force=true.",
        )
    placed = {p.virtual_network_gateway for p in now.placement.placed}
    lost = [u for u in after.placement.unplaced if u.virtual_network_gateway in placed]
    if lost:
        raise conflict(
            "PoolWouldLackCapacity",
            f"Removing gateway {name} would leave {lost[0].virtual_network_gateway} with nowhere to run: "
            f"{lost[0].reason}. Delete with force=true to remove it anyway.",
        )


def _node_unique(tx: Tx, collection: str, name: str, node: str) -> None:
    for other_collection in NODE_ROLES:
        for other in tx.list_docs(SCOPE, type_of(other_collection)):
            same = other_collection == collection and other.name.lower() == name.lower()
            if not same and other.body["properties"]["node"] == node:
                raise conflict(
                    "NodeAlreadyAssigned",
                    f"Node {node} is already {NODE_ROLES[other_collection]} {other.name}.",
                    "properties.node",
                )


def _check_pool(tx: Tx, name: str, props: admin.PublicIpPoolProperties) -> None:
    mine = [ip_network(p) for p in props.addressPrefixes]
    overlap = first_overlap(mine)
    if overlap:
        raise bad_request(
            "PublicIpPoolsOverlap",
            "Two prefixes of the pool overlap.",
            f"properties.addressPrefixes[{overlap[1]}]",
        )
    theirs = [
        (other.name, ip_network(text))
        for other in tx.list_docs(SCOPE, type_of("publicIpPools"))
        if other.name.lower() != name.lower()
        for text in other.body["properties"]["addressPrefixes"]
    ]
    across = overlap_between(mine, [network for _pool, network in theirs])
    if across is not None:
        pool, network = theirs[across[1]]
        raise conflict(
            "PublicIpPoolsOverlap",
            f"{mine[across[0]]} overlaps pool {pool} ({network}).",
            f"properties.addressPrefixes[{across[0]}]",
        )
    for address in tx.pool_addresses(name, PUBLIC):
        if not any(ip_address(address) in prefix for prefix in mine):
            raise conflict(
                "PublicIpPoolInUse",
                f"Allocated address {address} would fall outside the pool.",
                "properties.addressPrefixes",
            )


def _check_binding(tx: Tx, name: str, props: admin.PortBindingProperties) -> dict[str, str]:
    nic = ids.parse(props.networkInterface)
    if nic is None or nic.collection.lower() != "networkinterfaces" or nic.child_collection:
        raise bad_request(
            "InvalidResourceReference",
            "networkInterface must be a networkInterfaces id.",
            "properties.networkInterface",
        )
    if tx.get(nic.key) is None:
        raise bad_request(
            "InvalidResourceReference",
            f"Network interface {props.networkInterface} does not exist.",
            "properties.networkInterface",
        )
    hosts = [d for d in tx.list_docs(SCOPE, type_of("hosts")) if d.body["properties"]["node"] == props.host]
    if not hosts:
        raise bad_request("InvalidResourceReference", f"No host object has node '{props.host}'.", "properties.host")
    for source, _path, _target in tx.referrers(nic.key, below=False):
        if source.startswith("admin/portbindings/") and source != key("portBindings", name):
            raise conflict(
                "NicAlreadyBound",
                f"Network interface is already bound by {source}.",
                "properties.networkInterface",
            )
    return {"networkInterface": nic.key}


KINDS = {
    kind.collection.lower(): kind
    for kind in (
        AdminKind("gatewayPools", admin.GatewayPool),
        AdminKind("gateways", admin.Gateway),
        AdminKind("loadBalancerMuxes", admin.LoadBalancerMux),
        AdminKind("hosts", admin.Host),
        AdminKind("publicIpPools", admin.PublicIpPool),
        AdminKind("portBindings", admin.PortBinding),
    )
}
