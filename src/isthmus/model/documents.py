"""Desired-state documents: what compile/ produces for each node and its agent realises.

One definition per document (frozen dataclasses, addresses as `ipaddress` objects until linux/ renders
them) and one place that turns them into bytes and back (`encode`, `decode`, pydantic over these very
dataclasses). On the wire the names are the ARM vocabulary's (camelCase).

A node's document has a revision of its own: the store revision at which it last changed. A node that
is behind gets the deltas from its revision on (`HostDelta`, `MuxDelta`: the entries set and the keys
removed) when the controller still has them, otherwise the whole document.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from typing import Annotated, Any, ClassVar, Literal, Protocol, TypeVar

from pydantic import ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel

from isthmus.model.addresses import Address, HostRoute, IPAddress, IPInterface, IPNetwork
from isthmus.model.nsg import NsgProgram

_ACRONYMS = {"private_ip_address": "privateIPAddress", "public_ip_address": "publicIPAddress"}


def _wire_name(field: str) -> str:
    return _ACRONYMS.get(field) or to_camel(field)


WIRE = ConfigDict(alias_generator=_wire_name, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)


class _Wire:
    __slots__ = ()
    __pydantic_config__: ClassVar[ConfigDict] = WIRE


# --- host -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subnet(_Wire):
    id: str
    name: str
    address_prefixes: tuple[IPNetwork, ...]
    gateways: tuple[IPAddress, ...]  # the first address of each prefix: the subnet's default gateway
    network_security_group: str | None  # store key


@dataclass(frozen=True, slots=True)
class RemoteHost(_Wire):
    """Another host with NICs of the same VNet: where its VMs' addresses are reached (routed VXLAN)."""

    node: str
    vtep: IPAddress
    router_mac: str
    addresses: tuple[IPAddress, ...]


@dataclass(frozen=True, slots=True)
class SiteRoute(_Wire):
    """On-premises prefixes of a VNet's connections, reached through its gateway compartment: routed VXLAN
    to the gateway node as to another host, the compartment's GatewaySubnet address behind its router MAC."""

    node: str  # the gateway node carrying the compartment
    vtep: IPAddress
    router_mac: str
    next_hop: IPAddress  # the compartment's GatewaySubnet address
    prefixes: tuple[IPNetwork, ...]


@dataclass(frozen=True, slots=True)
class VirtualNetwork(_Wire):
    id: str
    vni: int
    address_space: tuple[IPNetwork, ...]
    subnets: tuple[Subnet, ...]
    router_mac: str | None  # this host's router MAC in the VNet
    remotes: tuple[RemoteHost, ...]
    site_routes: tuple[SiteRoute, ...] = ()

    @property
    def key(self) -> str:
        return self.id.lower()


@dataclass(frozen=True, slots=True)
class IpConfiguration(_Wire):
    name: str
    subnet: str  # subnet id
    private_ip_address: IPAddress
    public_ip_address: IPAddress | None
    primary: bool


@dataclass(frozen=True, slots=True)
class NetworkInterface(_Wire):
    id: str
    mac_address: str  # Azure's form, 00-0D-3A-…
    ip_configurations: tuple[IpConfiguration, ...]
    network_security_group: str | None
    virtual_network: str  # store key
    vm: str | None  # the VM it is plugged into (the port binding's name)

    @property
    def key(self) -> str:
        return self.id.lower()


@dataclass(frozen=True, slots=True)
class SecurityProgram(_Wire):
    """An NSG compiled where it guards one VNet (its VirtualNetwork tag is that VNet's address space)."""

    network_security_group: str  # store key
    virtual_network: str  # store key
    program: NsgProgram

    @property
    def key(self) -> str:
        return f"{self.network_security_group}|{self.virtual_network}"


@dataclass(frozen=True, slots=True)
class HostDocument(_Wire):
    node: str
    revision: int
    address: IPAddress | None  # the host's underlay address
    outbound_nat_address: IPAddress | None
    virtual_networks: tuple[VirtualNetwork, ...]
    network_interfaces: tuple[NetworkInterface, ...]
    network_security_groups: tuple[SecurityProgram, ...]
    role: Literal["host"] = "host"


# --- MUX --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BgpPeer(_Wire):
    address: IPAddress
    asn: int


@dataclass(frozen=True, slots=True)
class BgpIdentity(_Wire):
    asn: int
    router_id: IPv4Address
    peers: tuple[BgpPeer, ...]


@dataclass(frozen=True, slots=True)
class Vip(_Wire):
    next_hop: IPAddress | None  # the backend: a host, or the gateway node carrying it; None if unplaced
    owner: str  # the public IP's (or host's) store key


@dataclass(frozen=True, slots=True)
class Steer(_Wire):
    """On a public IP shared by gateway pools: one site's IPsec (IKE, ESP, ESP-in-UDP) or GRE (with its key,
    or none) to the shared address goes to the gateway node carrying that site's connection."""

    vip: IPAddress  # the shared address
    site: IPAddress  # the site's (source) address
    protocol: Literal["ipsec", "gre"]
    gre_key: int | None  # GRE: the key the site's packets carry (None: the site sends none)
    next_hop: IPAddress | None  # the gateway node carrying the connection; None if unplaced
    connection: str  # the connection's store key

    @property
    def key(self) -> str:
        return steer_key(self.vip, self.site, self.protocol, self.gre_key)


def steer_key(vip: Address, site: Address, protocol: str, gre_key: int | None) -> str:
    """What tells one steering entry from another: the packets it matches."""
    return f"{vip}|{site}|{protocol}|{'' if gre_key is None else gre_key}"


@dataclass(frozen=True, slots=True)
class MuxDocument(_Wire):
    """Identical on every MUX but for the BGP identity: every VIP as a /32 (/128) with its backend, and the
    steering of the public IPs gateway pools share."""

    node: str
    revision: int
    bgp: BgpIdentity | None
    vips: Mapping[HostRoute, Vip]
    role: Literal["mux"] = "mux"
    steering: tuple[Steer, ...] = ()  # by key


# --- gateway ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BgpSettings(_Wire):
    asn: int | None
    bgp_peering_address: str | None
    peer_weight: int | None = None


@dataclass(frozen=True, slots=True)
class IpsecPolicy(_Wire):
    sa_life_time_seconds: int
    sa_data_size_kilobytes: int
    ipsec_encryption: str
    ipsec_integrity: str
    ike_encryption: str
    ike_integrity: str
    dh_group: str
    pfs_group: str


@dataclass(frozen=True, slots=True)
class GreSettings(_Wire):
    key: int | None
    tunnel_address: IPInterface | None
    remote_tunnel_address: IPAddress | None
    checksum: bool = False  # RFC 2784's checksum on every packet sent (and required on every packet received)


@dataclass(frozen=True, slots=True)
class L3ForwardingSettings(_Wire):
    local_address: IPInterface | None
    next_hop: IPAddress | None
    vlan_id: int | None = None  # an 802.1Q VLAN of the provider network (Windows Server SDN's L3 VLAN subnet)


@dataclass(frozen=True, slots=True)
class Connection(_Wire):
    id: str
    connection_type: str
    remote_address: IPAddress | None  # the local network gateway's gatewayIpAddress
    remote_prefixes: tuple[IPNetwork, ...]
    remote_bgp: BgpSettings | None
    shared_key: str | None  # only the node carrying the connection ever receives it
    ipsec_policies: tuple[IpsecPolicy, ...]
    dpd_timeout_seconds: int | None
    connection_mode: str | None
    gre_settings: GreSettings | None
    l3_forwarding_settings: L3ForwardingSettings | None
    enable_bgp: bool
    use_policy_based_traffic_selectors: bool = False
    traffic_selector_policies: tuple[TrafficSelector, ...] = ()
    reset_generation: int = 0  # raised by resetconnection: the gateway keys the tunnel anew


@dataclass(frozen=True, slots=True)
class TrafficSelector(_Wire):
    local: tuple[IPNetwork, ...]
    remote: tuple[IPNetwork, ...]


@dataclass(frozen=True, slots=True)
class Compartment(_Wire):
    """One virtual network gateway on its gateway node: its leg in the tenant VNet, its VIP, connections."""

    virtual_network_gateway: str  # ARM id
    vni: int | None
    gateway_subnet: str
    private_ip_address: IPAddress | None
    vip: IPAddress | None
    sku: str | None
    bgp: BgpSettings | None
    bandwidth_kbps: int
    connections: tuple[Connection, ...]
    router_mac: str | None = None  # the compartment's MAC on its VXLAN leg
    address_space: tuple[IPNetwork, ...] = ()  # the VNet's: the local traffic selector
    remotes: tuple[RemoteHost, ...] = ()  # the hosts with VMs in the VNet, and their addresses
    # The VNet's subnet gateways (x.x.x.1), on the compartment's lo too: charon (kernel-libipsec) routes a
    # child SA only with a local address inside its local selector, and a site may narrow that to a subnet.
    subnet_gateways: tuple[IPAddress, ...] = ()
    connection_kbps: int = 0  # every connection's tier, both ways (0: not shaped)
    # The VIP is the address its pool shares with other compartments (of this node and others): the node
    # steers its sites' traffic in by their addresses (and GRE keys), not by the VIP (model/steering.py).
    vip_shared: bool = False

    @property
    def key(self) -> str:
        return self.virtual_network_gateway.lower()


@dataclass(frozen=True, slots=True)
class GatewayDocument(_Wire):
    node: str
    revision: int
    gateway: str | None  # the admin gateway object's name
    pool: str | None
    state: Literal["active", "standby", "unassigned"]
    compartments: tuple[Compartment, ...]
    address: IPAddress | None = None  # the node's underlay address: its VTEP
    witnesses: tuple[IPAddress, ...] = ()  # the MUXes' underlay addresses: whom its watchdog asks (agents/witness.py)
    role: Literal["gateway"] = "gateway"


@dataclass(frozen=True, slots=True)
class OtherDocument(_Wire):
    """A registered node whose role compile/ has nothing for (yet)."""

    node: str
    revision: int
    role: str


Document = HostDocument | MuxDocument | GatewayDocument | OtherDocument


# --- deltas -----------------------------------------------------------------------------------------


class _Keyed(Protocol):
    @property
    def key(self) -> str: ...


K = TypeVar("K", bound=_Keyed)


@dataclass(frozen=True, slots=True)
class HostDelta(_Wire):
    """A host document from `base` to `revision`: entries set (added or changed) and keys removed; the
    scalars are the new document's."""

    base: int
    revision: int
    address: IPAddress | None
    outbound_nat_address: IPAddress | None
    set_virtual_networks: tuple[VirtualNetwork, ...] = ()
    removed_virtual_networks: tuple[str, ...] = ()
    set_network_interfaces: tuple[NetworkInterface, ...] = ()
    removed_network_interfaces: tuple[str, ...] = ()
    set_network_security_groups: tuple[SecurityProgram, ...] = ()
    removed_network_security_groups: tuple[str, ...] = ()
    kind: Literal["host"] = "host"


@dataclass(frozen=True, slots=True)
class MuxDelta(_Wire):
    """VIPs added or moved (`set`) and withdrawn (`removed`), and the BGP identity, from `base` on."""

    base: int
    revision: int
    bgp: BgpIdentity | None
    set_vips: Mapping[HostRoute, Vip]
    removed_vips: tuple[HostRoute, ...]
    kind: Literal["mux"] = "mux"
    set_steering: tuple[Steer, ...] = ()
    removed_steering: tuple[str, ...] = ()


Delta = HostDelta | MuxDelta
_TaggedDelta = Annotated[Delta, Field(discriminator="kind")]


def _entry_changes(old: Sequence[K], new: Sequence[K]) -> tuple[tuple[K, ...], tuple[str, ...]]:
    before = {entry.key: entry for entry in old}
    after = {entry.key for entry in new}
    changed = tuple(entry for entry in new if before.get(entry.key) is not entry and before.get(entry.key) != entry)
    return changed, tuple(sorted(set(before) - after))


def _apply_entries(old: Sequence[K], changed: Iterable[K], removed: Iterable[str]) -> tuple[K, ...]:
    entries = {entry.key: entry for entry in old}
    for key in removed:
        entries.pop(key, None)
    for entry in changed:
        entries[entry.key] = entry
    return tuple(entries[key] for key in sorted(entries))


def host_delta(old: HostDocument, new: HostDocument) -> HostDelta | None:
    """What takes `old` to `new`; None if they are equal."""
    vnets, gone_vnets = _entry_changes(old.virtual_networks, new.virtual_networks)
    nics, gone_nics = _entry_changes(old.network_interfaces, new.network_interfaces)
    programs, gone_programs = _entry_changes(old.network_security_groups, new.network_security_groups)
    scalars_same = (old.address, old.outbound_nat_address) == (new.address, new.outbound_nat_address)
    if scalars_same and not (vnets or gone_vnets or nics or gone_nics or programs or gone_programs):
        return None
    return HostDelta(
        old.revision, new.revision, new.address, new.outbound_nat_address,
        vnets, gone_vnets, nics, gone_nics, programs, gone_programs,
    )  # fmt: skip


def apply_host_delta(doc: HostDocument, delta: HostDelta) -> HostDocument:
    return replace(
        doc,
        revision=delta.revision,
        address=delta.address,
        outbound_nat_address=delta.outbound_nat_address,
        virtual_networks=_apply_entries(doc.virtual_networks, delta.set_virtual_networks,
                                        delta.removed_virtual_networks),
        network_interfaces=_apply_entries(doc.network_interfaces, delta.set_network_interfaces,
                                          delta.removed_network_interfaces),
        network_security_groups=_apply_entries(doc.network_security_groups, delta.set_network_security_groups,
                                               delta.removed_network_security_groups),
    )  # fmt: skip


def mux_delta(old: MuxDocument, new: MuxDocument, candidates: Iterable[Address] | None = None) -> MuxDelta | None:
    """What takes `old` to `new`, looking only at `candidates` (the VIPs that may have changed) when the
    caller knows them: a MUX document carries every VIP. None if nothing differs."""
    keys = set(old.vips) | set(new.vips) if candidates is None else set(candidates)
    changed = {}
    removed = []
    for prefix in sorted(keys, key=_address_order):
        vip = new.vips.get(prefix)
        if vip is None:
            if prefix in old.vips:
                removed.append(prefix)
        elif old.vips.get(prefix) != vip:
            changed[prefix] = vip
    steered, unsteered = _entry_changes(old.steering, new.steering)  # a few hundred at most: compared whole
    if not changed and not removed and not steered and not unsteered and old.bgp == new.bgp:
        return None
    return MuxDelta(old.revision, new.revision, new.bgp, changed, tuple(removed), set_steering=steered,
                    removed_steering=unsteered)  # fmt: skip


def apply_mux_delta(doc: MuxDocument, delta: MuxDelta) -> MuxDocument:
    """The next document. The VIP mapping is updated IN PLACE (a copy of 100,000 VIPs per change would cost
    more than the change): only the agent that decoded `doc` may hold it."""
    vips = doc.vips
    assert isinstance(vips, dict)
    for prefix in delta.removed_vips:
        vips.pop(prefix, None)
    vips.update(delta.set_vips)
    steering = doc.steering
    if delta.set_steering or delta.removed_steering:
        steering = _apply_entries(doc.steering, delta.set_steering, delta.removed_steering)
    return replace(doc, revision=delta.revision, bgp=delta.bgp, vips=vips, steering=steering)


def apply_delta(doc: Document, delta: Delta) -> Document:
    """`doc` moved on by `delta`; ValueError if `delta` does not start at `doc`'s revision."""
    if delta.base != doc.revision:
        raise ValueError(f"a delta from revision {delta.base} does not apply to revision {doc.revision}")
    if isinstance(doc, HostDocument) and isinstance(delta, HostDelta):
        return apply_host_delta(doc, delta)
    if isinstance(doc, MuxDocument) and isinstance(delta, MuxDelta):
        return apply_mux_delta(doc, delta)
    raise ValueError(f"a {delta.kind} delta does not apply to a {doc.role} document")


def _address_order(address: Address) -> tuple[int, int]:
    return address.version, int(address)


# --- the wire ---------------------------------------------------------------------------------------

_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(kind: Any) -> TypeAdapter[Any]:
    """`kind`'s TypeAdapter, built at its first use, not at import: one costs ~0.3 s to build in a TCG guest,
    and an agent needs only its own role's document and the deltas, and only once it has registered."""
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS[kind] = TypeAdapter(kind)
    return adapter


_DELTA_LIST = tuple[_TaggedDelta, ...]
_BY_ROLE: dict[str, type] = {"host": HostDocument, "mux": MuxDocument, "gateway": GatewayDocument}


def encode(value: Document | Delta | Sequence[Delta]) -> bytes:
    """JSON bytes of a document, a delta or a list of deltas."""
    if isinstance(value, Sequence):
        return _adapter(_DELTA_LIST).dump_json(tuple(value))
    return _adapter(type(value)).dump_json(value)


def to_json(value: Document | Delta) -> Any:
    """The JSON-compatible form (for embedding in a larger response)."""
    return _adapter(type(value)).dump_python(value, mode="json")


def decode_document(data: bytes | str | Mapping[str, Any]) -> Document:
    """A document from its JSON (bytes, text, or already parsed)."""
    if isinstance(data, bytes | str):
        data = json.loads(data)
        assert isinstance(data, dict)
    kind = _BY_ROLE.get(str(data.get("role")))
    if kind is None:
        return OtherDocument(str(data["node"]), int(data["revision"]), str(data["role"]))
    document: Document = _adapter(kind).validate_python(data)
    return document


def decode_deltas(data: bytes | str | Sequence[Any]) -> tuple[Delta, ...]:
    deltas: tuple[Delta, ...]
    if isinstance(data, bytes | str):
        deltas = _adapter(_DELTA_LIST).validate_json(data)
    else:
        deltas = _adapter(_DELTA_LIST).validate_python(data)
    return deltas


def receive(held: Document | None, payload: Mapping[str, Any]) -> tuple[Document, tuple[Delta, ...]]:
    """What an agent holds after an answer of the agent protocol ({"revision", "document" | "deltas"}),
    and the deltas that took it there (none for a whole document). ValueError if the deltas do not start
    at `held` (the agent then asks for the whole document)."""
    if "document" in payload:
        return decode_document(payload["document"]), ()
    if held is None:
        raise ValueError("deltas for an agent that holds no document")
    deltas = decode_deltas(payload["deltas"])
    document = held
    for delta in deltas:
        document = apply_delta(document, delta)
    return document, deltas
