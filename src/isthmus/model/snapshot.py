"""The intent compile/ reads: an immutable picture of the store at one revision.

Built by store.snapshots (the only I/O) through `build` or, change by change, `evolve`; everything in
compile/ is a pure function of it. The indexes it carries (keys by type, NIC bindings, host addresses)
are brought forward by `evolve` for what changed, so a newer snapshot costs what changed, not its size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from isthmus.model.placement import Assigned, GatewayState

VNET = "Microsoft.Network/virtualNetworks"
NIC = "Microsoft.Network/networkInterfaces"
NSG = "Microsoft.Network/networkSecurityGroups"
PIP = "Microsoft.Network/publicIPAddresses"
VNET_GATEWAY = "Microsoft.Network/virtualNetworkGateways"
LOCAL_GATEWAY = "Microsoft.Network/localNetworkGateways"
CONNECTION = "Microsoft.Network/connections"
HOSTS = "admin/hosts"
MUXES = "admin/loadBalancerMuxes"
GATEWAYS = "admin/gateways"
POOLS = "admin/gatewayPools"
BINDINGS = "admin/portBindings"
# Observed state compile/ reads beside the intent: the routes a connection's site advertised over BGP
# (store.learned_routes). A change of one connection's set is the changed key LEARNED + its key.
LEARNED = "learned:"


def learned_key(connection: str) -> str:
    """The changed key that says connection `connection` (a store key) learned another set of routes."""
    return LEARNED + connection


Address = IPv4Address | IPv6Address


@dataclass(frozen=True)
class FabricSettings:
    """How the controller is configured for this fabric (compile/ reads it beside the snapshot)."""

    # Where the platform's health probes come from: the NSG service tag AzureLoadBalancer. The lab's value.
    azure_load_balancer: tuple[IPv4Network | IPv6Network, ...] = (IPv4Network("198.18.255.254/32"),)
    # The location names resources may be created in, normalised as ARM does ("West US" -> "westus").
    locations: tuple[str, ...] = ("local",)


@dataclass(frozen=True)
class Snapshot:
    revision: int
    documents: Mapping[str, Mapping[str, Any]]  # store key -> stored body
    types: Mapping[str, str]  # store key -> type
    vnis: Mapping[str, int]  # virtual network key -> VNI
    public_ips: Mapping[str, Address]  # public IP key (or a host's, for its outbound NAT) -> allocated address
    nodes: Mapping[str, Mapping[str, Any]]  # registered nodes: name -> role, address
    by_type: Mapping[str, frozenset[str]]  # type -> keys
    host_of_nic: Mapping[str, str]  # NIC key -> host node, from the operator's port bindings
    vm_of_nic: Mapping[str, str]  # NIC key -> the port binding's name: the VM the NIC is plugged into
    host_address: Mapping[str, str]  # host node -> underlay address
    host_key: Mapping[str, str]  # host node -> its admin/hosts key (the owner of its outbound NAT address)
    # The stored M+N state (not intent): VNet gateway key -> where it runs; gateway name (lower) -> role.
    assignment: Mapping[str, Assigned] = field(default_factory=dict)
    gateway_states: Mapping[str, GatewayState] = field(default_factory=dict)
    placement_version: tuple[int, ...] = ()  # store.placements.version when read: tells refresh to re-read
    # Observed, not intent: connection key -> the prefixes its site last advertised over BGP (canonical text).
    learned_routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    learned_version: tuple[int, ...] = ()  # store.learned_routes.version when read

    def of_type(self, type_: str) -> list[tuple[str, Mapping[str, Any]]]:
        """(key, document) of every resource of `type_`, in key order."""
        return [(key, self.documents[key]) for key in sorted(self.by_type.get(type_, ()))]

    def keys_of(self, type_: str) -> frozenset[str]:
        """Keys of every resource of `type_`, unordered (for building indexes)."""
        return self.by_type.get(type_, frozenset())

    def get(self, key: str) -> Mapping[str, Any] | None:
        return self.documents.get(key.lower())


def build(
    revision: int,
    documents: Mapping[str, Mapping[str, Any]],
    types: Mapping[str, str],
    vnis: Mapping[str, int],
    public_ips: Mapping[str, Address],
    nodes: Mapping[str, Mapping[str, Any]],
    assignment: Mapping[str, Assigned] | None = None,
    gateway_states: Mapping[str, GatewayState] | None = None,
    placement_version: tuple[int, ...] = (),
    learned_routes: Mapping[str, tuple[str, ...]] | None = None,
    learned_version: tuple[int, ...] = (),
) -> Snapshot:
    by_type: dict[str, set[str]] = {}
    for key, type_ in types.items():
        by_type.setdefault(type_, set()).add(key)
    frozen = {type_: frozenset(keys) for type_, keys in by_type.items()}
    return Snapshot(
        revision,
        documents,
        types,
        vnis,
        public_ips,
        nodes,
        frozen,
        *_bindings(documents, frozen),
        *_hosts(documents, frozen),
        assignment or {},
        gateway_states or {},
        placement_version,
        learned_routes or {},
        learned_version,
    )


def evolve(
    old: Snapshot,
    revision: int,
    documents: Mapping[str, Mapping[str, Any]],
    types: Mapping[str, str],
    vnis: Mapping[str, int],
    public_ips: Mapping[str, Address],
    nodes: Mapping[str, Mapping[str, Any]],
    changed: set[str],
) -> Snapshot:
    """`old` moved to new contents, re-deriving indexes only for the types that `changed` touched (the
    stored placement state and the learned routes stay `old`'s: store.snapshots replaces them when they
    changed)."""
    touched: dict[str, set[str]] = {}
    for key in changed:
        for type_ in {old.types.get(key), types.get(key)} - {None}:
            touched.setdefault(type_, set()).add(key)  # type: ignore[arg-type]
    by_type = dict(old.by_type)
    for type_, keys in touched.items():
        by_type[type_] = frozenset((set(by_type.get(type_, ())) - keys) | {k for k in keys if types.get(k) == type_})
    bindings = _bindings(documents, by_type) if BINDINGS in touched else (old.host_of_nic, old.vm_of_nic)
    hosts = _hosts(documents, by_type) if HOSTS in touched else (old.host_address, old.host_key)
    return Snapshot(
        revision,
        documents,
        types,
        vnis,
        public_ips,
        nodes,
        by_type,
        *bindings,
        *hosts,
        old.assignment,
        old.gateway_states,
        old.placement_version,
        old.learned_routes,
        old.learned_version,
    )


def _bindings(
    documents: Mapping[str, Mapping[str, Any]], by_type: Mapping[str, frozenset[str]]
) -> tuple[dict[str, str], dict[str, str]]:
    hosts, vms = {}, {}
    for key in by_type.get(BINDINGS, ()):
        doc = documents[key]
        nic = doc["properties"]["networkInterface"].lower()
        hosts[nic] = doc["properties"]["host"]
        vms[nic] = doc["name"]
    return hosts, vms


def _hosts(
    documents: Mapping[str, Mapping[str, Any]], by_type: Mapping[str, frozenset[str]]
) -> tuple[dict[str, str], dict[str, str]]:
    hosts = [(documents[k]["properties"], k) for k in by_type.get(HOSTS, ())]
    return {p["node"]: p["address"] for p, _k in hosts}, {p["node"]: k for p, k in hosts}


EMPTY = build(0, {}, {}, {}, {}, {})


def public_ip_keys(body: Mapping[str, Any] | None) -> set[str]:
    """Keys of the public IPs a NIC's or gateway's ipConfigurations use."""
    if not body:
        return set()
    keys = set()
    for config in body.get("properties", {}).get("ipConfigurations", []):
        pip = config.get("properties", {}).get("publicIPAddress")
        if pip:
            keys.add(pip["id"].lower())
    return keys


def vnet_key_of(resource_id: str) -> str:
    """The virtualNetworks store key of a subnet or virtual network id."""
    parts = resource_id.lower().strip("/").split("/")
    return "/" + "/".join(parts[:8])


SHARED_ADDRESSES = "admin/sharedpublicips"  # the owner of a public IP gateway pools share: this, then the address


def shared_address_owner(address: str) -> str:
    """The store key that holds (in the public address space) an address gateway pools share."""
    return f"{SHARED_ADDRESSES}/{address}"


def shared_address_owners(body: Mapping[str, Any] | None) -> set[str]:
    """The owner of the shared public IP a gateway pool's body names, if it names one."""
    shared = (body or {}).get("properties", {}).get("publicIpAddress") if body else None
    return {shared_address_owner(shared)} if shared else set()
