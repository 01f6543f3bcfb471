"""Host documents: the VNets, NICs, NSG programs and VXLAN neighbours one compute host realises.

A host carries a VNet when a NIC of that VNet is bound to it. Every such VNet gets its router
(subnet gateway addresses), its VNI, and static FDB/neighbour entries for the NICs of the same VNet on
other hosts: no flooding, no learning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import ip_network
from typing import Any

from isthmus.compile.security_rules import NsgContext, NsgProgram, compile_nsg
from isthmus.compile.snapshot import NIC, Snapshot, vnet_key_of

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


def host_document(snapshot: Snapshot, idx: HostIndex, host: str) -> dict[str, Any]:
    nics = idx.nics_by_host.get(host, set())
    vnets = sorted({idx.vnet_of_nic[nic] for nic in nics})
    nsg_ids: set[str] = set()
    vnet_docs = []
    for vnet in vnets:
        doc = snapshot.get(vnet)
        if doc is None:
            continue
        subnets = []
        for subnet in doc["properties"]["subnets"]:
            props = subnet["properties"]
            prefixes = props.get("addressPrefixes") or [props["addressPrefix"]]
            nsg = props.get("networkSecurityGroup", {}).get("id")
            if nsg:
                nsg_ids.add(nsg.lower())
            subnets.append(
                {
                    "id": subnet["id"],
                    "name": subnet["name"],
                    "addressPrefixes": prefixes,
                    "gateways": [gateway_address(p) for p in prefixes],
                    "networkSecurityGroup": nsg,
                }
            )
        vnet_docs.append(
            {
                "id": doc["id"],
                "vni": snapshot.vnis.get(vnet),
                "addressSpace": doc["properties"]["addressSpace"]["addressPrefixes"],
                "subnets": subnets,
                "vteps": sorted(
                    snapshot.host_address[h] for h in idx.hosts_of(vnet) if h != host and h in snapshot.host_address
                ),
            }
        )
    nic_docs = [_nic(snapshot, key) for key in sorted(nics)]
    for nic in nic_docs:
        if nic["networkSecurityGroup"]:
            nsg_ids.add(nic["networkSecurityGroup"].lower())
    neighbours = []
    for vnet in vnets:
        for other in sorted(idx.hosts_of(vnet) - {host}):
            for key in sorted(idx.nics_by_host_vnet.get((other, vnet), ())):
                nic = _nic(snapshot, key)
                neighbours.append(
                    {
                        "vni": snapshot.vnis.get(vnet),
                        "mac": nic["macAddress"],
                        "ips": [c["privateIPAddress"] for c in nic["ipConfigurations"]],
                        "vtep": snapshot.host_address.get(other),
                    }
                )
    return {
        "node": host,
        "role": "host",
        "revision": snapshot.revision,
        "virtualNetworks": vnet_docs,
        "networkInterfaces": nic_docs,
        "neighbours": neighbours,
        "networkSecurityGroups": {nsg: _nsg(snapshot, nsg, vnets) for nsg in sorted(nsg_ids)},
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


def _nsg(snapshot: Snapshot, key: str, vnets: list[str]) -> dict[str, Any]:
    doc = snapshot.get(key)
    if doc is None:
        return {"inbound": [], "outbound": []}
    space = tuple(
        ip_network(p)
        for vnet in vnets
        for p in (snapshot.get(vnet) or {}).get("properties", {}).get("addressSpace", {}).get("addressPrefixes", [])
    )
    program = compile_nsg(doc["properties"]["securityRules"], NsgContext(space, AZURE_LOAD_BALANCER))
    return program_json(program)


def program_json(program: NsgProgram) -> dict[str, Any]:
    def rule(r: Any) -> dict[str, Any]:
        return {
            "name": r.name,
            "priority": r.priority,
            "access": r.access,
            "protocol": r.protocol,
            "sourcePrefixes": [str(p) for p in r.source_prefixes],
            "sourcePorts": [list(p) for p in r.source_ports],
            "destinationPrefixes": [str(p) for p in r.destination_prefixes],
            "destinationPorts": [list(p) for p in r.destination_ports],
        }

    return {"inbound": [rule(r) for r in program.inbound], "outbound": [rule(r) for r in program.outbound]}
