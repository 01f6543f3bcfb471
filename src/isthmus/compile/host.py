"""Host documents: the VNets, NICs, NSG programs and VXLAN neighbours one compute host realises.

A host carries a VNet when a NIC of that VNet is bound to it. Every such VNet gets its router
(subnet gateway addresses), its VNI, and static FDB/neighbour entries for the NICs of the same VNet on
other hosts: no flooding, no learning.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import ip_network
from typing import Any

from isthmus.compile.security_rules import compile_nsg
from isthmus.compile.snapshot import NIC, Snapshot, vnet_key_of
from isthmus.model.nsg import NsgContext, NsgProgram, Rule

AZURE_LOAD_BALANCER = (ip_network("198.18.255.254/32"),)  # the platform's probe source in the lab


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
    """Parts shared by many host documents of one snapshot: per VNet, per (NSG, VNet)."""

    vnets: dict[str, dict[str, Any]] = field(default_factory=dict)
    programs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def forget(self, keys: set[str]) -> None:
        for key in keys:
            self.vnets.pop(key, None)
        for pair in [p for p in self.programs if p[0] in keys or p[1] in keys]:
            del self.programs[pair]


def host_document(snapshot: Snapshot, idx: HostIndex, host: str, memo: HostMemo | None = None) -> dict[str, Any]:
    memo = memo if memo is not None else HostMemo()
    nics = sorted(idx.nics_by_host.get(host, set()))
    vnets = sorted({idx.vnet_of_nic[nic] for nic in nics})
    own_address = snapshot.host_address.get(host)
    programs: set[tuple[str, str]] = set()  # (NSG, VNet) pairs this host enforces
    vnet_docs = []
    for vnet in vnets:
        shared = memo.vnets.get(vnet)
        if shared is None:
            shared = memo.vnets[vnet] = _vnet(snapshot, vnet)
        if not shared:
            continue
        programs.update(
            (s["networkSecurityGroup"].lower(), vnet) for s in shared["subnets"] if s["networkSecurityGroup"]
        )
        vni = shared["vni"]
        remotes = []
        for other in sorted(idx.hosts_of(vnet) - {host}):
            vtep = snapshot.host_address.get(other)
            if vtep is None:
                continue
            addresses = [
                config["privateIPAddress"]
                for key in sorted(idx.nics_by_host_vnet.get((other, vnet), ()))
                for config in _nic(snapshot, key)["ipConfigurations"]
            ]
            remotes.append({"node": other, "vtep": vtep, "routerMac": router_mac(vtep, vni), "addresses": addresses})
        router = router_mac(own_address, vni) if own_address else None
        vnet_docs.append({**shared, "routerMac": router, "remotes": remotes})
    nic_docs = []
    for key in nics:
        nic = {**_nic(snapshot, key), "virtualNetwork": idx.vnet_of_nic[key], "vm": snapshot.vm_of_nic.get(key)}
        nic_docs.append(nic)
        if nic["networkSecurityGroup"]:
            programs.add((nic["networkSecurityGroup"].lower(), idx.vnet_of_nic[key]))
    nsg_programs = []
    for pair in sorted(programs):
        program = memo.programs.get(pair)
        if program is None:
            program = memo.programs[pair] = _nsg(snapshot, *pair)
        nsg_programs.append({"networkSecurityGroup": pair[0], "virtualNetwork": pair[1], **program})
    host_key = snapshot.host_key.get(host)
    return {
        "node": host,
        "role": "host",
        "revision": snapshot.revision,
        "address": own_address,
        "outboundNatAddress": snapshot.public_ips.get(host_key) if host_key else None,
        "virtualNetworks": vnet_docs,
        "networkInterfaces": nic_docs,
        "networkSecurityGroups": nsg_programs,
    }


def router_mac(vtep: str, vni: int | None) -> str:
    """The MAC of a VNet's router on one host: locally administered, stable, distinct per (host, VNI).
    Remote routers' MACs are what FDB and neighbour entries point at (routed VXLAN, no learning)."""
    digest = hashlib.sha256(f"{vtep}/{vni}".encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


def _vnet(snapshot: Snapshot, vnet: str) -> dict[str, Any]:
    """The host-independent part of a VNet's entry ({} if the VNet is gone)."""
    doc = snapshot.get(vnet)
    if doc is None:
        return {}
    subnets = []
    for subnet in doc["properties"]["subnets"]:
        props = subnet["properties"]
        prefixes = props.get("addressPrefixes") or [props["addressPrefix"]]
        subnets.append(
            {
                "id": subnet["id"],
                "name": subnet["name"],
                "addressPrefixes": prefixes,
                "gateways": [gateway_address(p) for p in prefixes],
                "networkSecurityGroup": props.get("networkSecurityGroup", {}).get("id"),
            }
        )
    return {
        "id": doc["id"],
        "vni": snapshot.vnis.get(vnet),
        "addressSpace": doc["properties"]["addressSpace"]["addressPrefixes"],
        "subnets": subnets,
    }


@lru_cache(maxsize=65536)
def gateway_address(prefix: str) -> str:
    """The subnet's default gateway: its first host address (Azure's x.x.x.1)."""
    return str(next(ip_network(prefix).hosts()))


def _nic(snapshot: Snapshot, key: str) -> dict[str, Any]:
    doc = snapshot.documents[key]
    props = doc["properties"]
    configs = []
    for config in props["ipConfigurations"]:
        cp = config["properties"]
        pip = cp.get("publicIPAddress", {}).get("id")
        configs.append(
            {
                "name": config["name"],
                "subnet": cp["subnet"]["id"],
                "privateIPAddress": cp["privateIPAddress"],
                "publicIPAddress": snapshot.public_ips.get(pip.lower()) if pip else None,
                "primary": cp.get("primary", False),
            }
        )
    return {
        "id": doc["id"],
        "macAddress": props["macAddress"],
        "ipConfigurations": configs,
        "networkSecurityGroup": props.get("networkSecurityGroup", {}).get("id"),
    }


def _nsg(snapshot: Snapshot, key: str, vnet: str) -> dict[str, Any]:
    """The NSG's program where it guards `vnet`: the VirtualNetwork tag is that VNet's address space."""
    doc = snapshot.get(key)
    if doc is None:
        return {"inbound": [], "outbound": []}
    vnet_doc = snapshot.get(vnet) or {}
    space = tuple(
        ip_network(p) for p in vnet_doc.get("properties", {}).get("addressSpace", {}).get("addressPrefixes", [])
    )
    program = compile_nsg(doc["properties"]["securityRules"], NsgContext(space, AZURE_LOAD_BALANCER))
    return program_json(program)


def program_json(program: NsgProgram) -> dict[str, Any]:
    """The program as JSON for the host document, keyed by model/nsg.py's field names, so that
    `TypeAdapter(NsgProgram).validate_python` gives back an equal program."""

    def rule(r: Rule) -> dict[str, Any]:
        return {
            "name": r.name,
            "default": r.default,
            "priority": r.priority,
            "direction": r.direction,
            "access": r.access,
            "protocol": r.protocol,
            "source_prefixes": _texts(r.source_prefixes),
            "source_ports": [list(p) for p in r.source_ports],
            "destination_prefixes": _texts(r.destination_prefixes),
            "destination_ports": [list(p) for p in r.destination_ports],
        }

    return {"inbound": [rule(r) for r in program.inbound], "outbound": [rule(r) for r in program.outbound]}


@lru_cache(maxsize=16384)
def _texts(prefixes: tuple[Any, ...]) -> list[str]:
    """Prefixes as text (cached: the same few tuples recur; callers only read the list)."""
    return [str(p) for p in prefixes]
