"""Host documents: the VNets, NICs, NSG programs and VXLAN neighbours one compute host realises.

A host carries a VNet when a NIC of that VNet is bound to it. Every such VNet gets its router
(subnet gateway addresses), its VNI, and static FDB/neighbour entries for the NICs of the same VNet on
other hosts: no flooding, no learning.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from functools import lru_cache

from isthmus.compile.security_rules import compile_nsg
from isthmus.model.addresses import Address, Network, parse_address, parse_network
from isthmus.model.documents import (
    HostDocument,
    IpConfiguration,
    NetworkInterface,
    RemoteHost,
    SecurityProgram,
    SiteRoute,
    Subnet,
    VirtualNetwork,
)
from isthmus.model.nsg import NsgContext, NsgProgram
from isthmus.model.snapshot import NIC, FabricSettings, Snapshot, vnet_key_of

address = lru_cache(maxsize=65536)(parse_address)  # host addresses and private IPs recur across documents


@dataclass
class HostIndex:
    """What every host document needs, computed once per snapshot and updated per changed NIC."""

    nics_by_host: dict[str, set[str]] = field(default_factory=dict)
    nics_by_host_vnet: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    hosts_by_vnet: dict[str, dict[str, int]] = field(default_factory=dict)  # vnet -> host -> NIC count
    vnet_of_nic: dict[str, str] = field(default_factory=dict)
    host_of_nic: dict[str, str] = field(default_factory=dict)

    def add(self, snapshot: Snapshot, key: str) -> None:
        doc = snapshot.documents.get(key)
        if doc is None:
            return
        vnet = vnet_key_of(doc["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"])
        self.vnet_of_nic[key] = vnet
        host = snapshot.host_of_nic.get(key)
        if host is not None:
            self.host_of_nic[key] = host
            self.nics_by_host.setdefault(host, set()).add(key)
            self.nics_by_host_vnet.setdefault((host, vnet), set()).add(key)
            counts = self.hosts_by_vnet.setdefault(vnet, {})
            counts[host] = counts.get(host, 0) + 1

    def remove(self, key: str) -> None:
        vnet = self.vnet_of_nic.pop(key, None)
        host = self.host_of_nic.pop(key, None)
        if host is None or vnet is None:
            return
        self.nics_by_host[host].discard(key)
        self.nics_by_host_vnet[(host, vnet)].discard(key)
        counts = self.hosts_by_vnet[vnet]
        counts[host] -= 1
        if counts[host] == 0:
            del counts[host]

    def hosts_of(self, vnet: str) -> set[str]:
        return set(self.hosts_by_vnet.get(vnet, {}))


def index(snapshot: Snapshot) -> HostIndex:
    idx = HostIndex()
    for key in snapshot.keys_of(NIC):
        idx.add(snapshot, key)
    return idx


@dataclass
class HostMemo:
    """Parts shared by many host documents of one snapshot: per VNet, per NIC, per (NSG, VNet); and the
    fabric settings they are compiled with."""

    settings: FabricSettings = field(default_factory=FabricSettings)
    site_routes: dict[str, tuple[SiteRoute, ...]] = field(default_factory=dict)  # VNet key -> via its gateway
    vnets: dict[str, VirtualNetwork | None] = field(default_factory=dict)
    nics: dict[str, NetworkInterface] = field(default_factory=dict)
    programs: dict[tuple[str, str], SecurityProgram] = field(default_factory=dict)

    def forget(self, keys: set[str]) -> None:
        for key in keys:
            self.vnets.pop(key, None)
            self.nics.pop(key, None)
        for pair in [p for p in self.programs if p[0] in keys or p[1] in keys]:
            del self.programs[pair]


def host_document(snapshot: Snapshot, idx: HostIndex, host: str, memo: HostMemo | None = None) -> HostDocument:
    memo = memo if memo is not None else HostMemo()
    nics = sorted(idx.nics_by_host.get(host, set()))
    vnets = sorted({idx.vnet_of_nic[nic] for nic in nics})
    own_text = snapshot.host_address.get(host)
    own_address = address(own_text) if own_text else None
    programs: set[tuple[str, str]] = set()  # (NSG, VNet) pairs this host enforces
    vnet_docs = []
    for vnet in vnets:
        shared = memo.vnets.get(vnet)
        if shared is None:
            shared = memo.vnets[vnet] = _vnet(snapshot, vnet)
        if shared is None:
            continue
        programs.update((s.network_security_group, vnet) for s in shared.subnets if s.network_security_group)
        remotes = remote_hosts(snapshot, idx, vnet, shared.vni, memo, host)
        router = router_mac(own_text, shared.vni) if own_text else None
        sites = memo.site_routes.get(vnet, ())
        vnet_docs.append(replace(shared, router_mac=router, remotes=remotes, site_routes=sites))
    nic_docs = []
    for key in nics:
        nic = _nic(snapshot, key, idx.vnet_of_nic[key], memo)
        nic_docs.append(nic)
        if nic.network_security_group:
            programs.add((nic.network_security_group, idx.vnet_of_nic[key]))
    nsg_programs = []
    for pair in sorted(programs):
        program = memo.programs.get(pair)
        if program is None:
            program = memo.programs[pair] = SecurityProgram(*pair, _nsg(snapshot, *pair, memo))
        nsg_programs.append(program)
    host_key = snapshot.host_key.get(host)
    outbound = snapshot.public_ips.get(host_key) if host_key else None
    return HostDocument(
        node=host,
        revision=snapshot.revision,
        address=own_address,
        outbound_nat_address=outbound,
        virtual_networks=tuple(vnet_docs),
        network_interfaces=tuple(nic_docs),
        network_security_groups=tuple(nsg_programs),
    )


def remote_hosts(
    snapshot: Snapshot, idx: HostIndex, vnet: str, vni: int, memo: HostMemo, exclude: str | None = None
) -> tuple[RemoteHost, ...]:
    """The hosts (but `exclude`) with NICs of `vnet`: where their VMs' addresses are reached."""
    remotes = []
    for other in sorted(idx.hosts_of(vnet) - {exclude}):
        vtep = snapshot.host_address.get(other)
        if vtep is None:
            continue
        addresses = tuple(
            config.private_ip_address
            for key in sorted(idx.nics_by_host_vnet.get((other, vnet), ()))
            for config in _nic(snapshot, key, idx.vnet_of_nic[key], memo).ip_configurations
        )
        remotes.append(RemoteHost(other, address(vtep), router_mac(vtep, vni), addresses))
    return tuple(remotes)


def router_mac(vtep: str, vni: int | None) -> str:
    """The MAC of a VNet's router on one host: locally administered, stable, distinct per (host, VNI).
    Remote routers' MACs are what FDB and neighbour entries point at (routed VXLAN, no learning)."""
    digest = hashlib.sha256(f"{vtep}/{vni}".encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


def _vnet(snapshot: Snapshot, vnet: str) -> VirtualNetwork | None:
    """The host-independent part of a VNet's entry (None if the VNet is gone)."""
    doc = snapshot.get(vnet)
    if doc is None:
        return None
    subnets = []
    for subnet in doc["properties"]["subnets"]:
        props = subnet["properties"]
        prefixes, gateways = _subnet_prefixes(tuple(props.get("addressPrefixes") or [props["addressPrefix"]]))
        nsg = props.get("networkSecurityGroup", {}).get("id")
        subnets.append(Subnet(subnet["id"], subnet["name"], prefixes, gateways, nsg.lower() if nsg else None))
    return VirtualNetwork(
        id=doc["id"],
        vni=snapshot.vnis[vnet],
        address_space=_subnet_prefixes(tuple(doc["properties"]["addressSpace"]["addressPrefixes"]))[0],
        subnets=tuple(subnets),
        router_mac=None,
        remotes=(),
    )


@lru_cache(maxsize=65536)
def _subnet_prefixes(texts: tuple[str, ...]) -> tuple[tuple[Network, ...], tuple[Address, ...]]:
    """Prefixes and their gateway addresses (the same few recur across thousands of VNets)."""
    prefixes = tuple(parse_network(text) for text in texts)
    return prefixes, tuple(gateway_address(p) for p in prefixes)


def gateway_address(prefix: Network) -> Address:
    """The subnet's default gateway: its first host address (Azure's x.x.x.1)."""
    return prefix.network_address + 1 if prefix.num_addresses > 2 else prefix.network_address


def _nic(snapshot: Snapshot, key: str, vnet: str, memo: HostMemo) -> NetworkInterface:
    """A NIC's entry, shared by every document of one snapshot that mentions it."""
    cached = memo.nics.get(key)
    if cached is not None:
        return cached
    doc = snapshot.documents[key]
    props = doc["properties"]
    configs = []
    for config in props["ipConfigurations"]:
        cp = config["properties"]
        pip = cp.get("publicIPAddress", {}).get("id")
        public = snapshot.public_ips.get(pip.lower()) if pip else None
        configs.append(
            IpConfiguration(
                name=config["name"],
                subnet=cp["subnet"]["id"],
                private_ip_address=address(cp["privateIPAddress"]),
                public_ip_address=public,
                primary=cp.get("primary", False),
            )
        )
    nsg = props.get("networkSecurityGroup", {}).get("id")
    nic = memo.nics[key] = NetworkInterface(
        id=doc["id"],
        mac_address=props["macAddress"],
        ip_configurations=tuple(configs),
        network_security_group=nsg.lower() if nsg else None,
        virtual_network=vnet,
        vm=snapshot.vm_of_nic.get(key),
    )
    return nic


def _nsg(snapshot: Snapshot, key: str, vnet: str, memo: HostMemo) -> NsgProgram:
    """The NSG's program where it guards `vnet`: the VirtualNetwork tag is that VNet's address space."""
    doc = snapshot.get(key)
    if doc is None:
        return NsgProgram((), ())
    vnet_doc = snapshot.get(vnet) or {}
    space = tuple(
        parse_network(p) for p in vnet_doc.get("properties", {}).get("addressSpace", {}).get("addressPrefixes", [])
    )
    # As Azure's: the VirtualNetwork tag also covers the on-premises prefixes of the VNet's connections.
    space += tuple(p for site in memo.site_routes.get(vnet, ()) for p in site.prefixes)
    return compile_nsg(doc["properties"]["securityRules"], NsgContext(space, memo.settings.azure_load_balancer))
