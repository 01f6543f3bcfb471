"""networkInterfaces: ipConfigurations on a subnet, private addresses, public IP and NSG associations."""

from __future__ import annotations

import hashlib
from ipaddress import ip_address
from typing import Any

from isthmus.api.arm import public_ip_addresses
from isthmus.api.arm.addressing import allocate_private, cidr
from isthmus.api.arm.kind import SUCCEEDED, Kind, Prepared, child_id, find_child, guid, resolve, unique_names
from isthmus.api.arm.virtual_networks import subnet_prefixes
from isthmus.api.errors import bad_request
from isthmus.model import arm
from isthmus.model.ids import ResourceId
from isthmus.model.snapshot import public_ip_keys
from isthmus.store.repo import Doc, Tx

IPCONFIG_TYPE = "Microsoft.Network/networkInterfaces/ipConfigurations"


def mac_address(resource_guid: str) -> str:
    """A stable MAC in Microsoft's 00-0D-3A OUI, derived from the NIC's resourceGuid."""
    digest = hashlib.sha256(resource_guid.encode()).digest()
    return "00-0D-3A-" + "-".join(f"{b:02X}" for b in digest[:3])


class NetworkInterfaces(Kind):
    collection = "networkInterfaces"
    type = "Microsoft.Network/networkInterfaces"
    model = arm.NetworkInterface

    def prepare(self, tx: Tx, rid: ResourceId, request: Any, existing: Doc | None) -> Prepared:
        props: arm.NetworkInterfaceProperties = request.properties
        configs = props.ipConfigurations
        if not configs:
            raise bad_request(
                "NetworkInterfaceMustHaveIpConfiguration",
                "A network interface needs at least one ipConfiguration.",
                "properties.ipConfigurations",
            )
        unique_names(configs, "properties.ipConfigurations")
        primaries = [i for i, c in enumerate(configs) if c.properties.primary]
        if len(primaries) > 1:
            raise bad_request(
                "NetworkInterfaceHasMultiplePrimaryIpConfigurations",
                "Only one ipConfiguration can be primary.",
                f"properties.ipConfigurations[{primaries[1]}].properties.primary",
            )
        primary = primaries[0] if primaries else 0
        refs: dict[str, str] = {}
        vnet_key: str | None = None
        stored = []
        for index, config in enumerate(configs):
            target = f"properties.ipConfigurations[{index}].properties"
            entry, vnet = self._ip_configuration(tx, rid, config, index == primary, target, refs)
            if vnet_key is not None and vnet != vnet_key:
                raise bad_request(
                    "IpConfigurationsOfNicMustBeInSameVnet",
                    "All ipConfigurations of a network interface must be in the same virtual network.",
                    f"{target}.subnet",
                )
            vnet_key = vnet
            stored.append(entry)
        if existing is not None:  # ipConfigurations that went away give their addresses back
            current = {entry["id"].lower() for entry in stored}
            for old in existing.body["properties"]["ipConfigurations"]:
                if old["id"].lower() not in current:
                    tx.release(old["id"].lower(), below=False)
        resource_guid = guid(existing)
        properties: dict[str, Any] = {
            "ipConfigurations": stored,
            "provisioningState": SUCCEEDED,
            "resourceGuid": resource_guid,
            "macAddress": mac_address(resource_guid),
            "enableIPForwarding": bool(props.enableIPForwarding),
            "enableAcceleratedNetworking": bool(props.enableAcceleratedNetworking),
            "primary": True,
            "nicType": "Standard",
        }
        if props.dnsSettings is not None:
            properties["dnsSettings"] = {"dnsServers": list(props.dnsSettings.dnsServers)}
        if props.networkSecurityGroup is not None:
            nsg, _ = resolve(
                tx,
                rid,
                props.networkSecurityGroup,
                "properties.networkSecurityGroup",
                "networkSecurityGroups",
            )
            properties["networkSecurityGroup"] = {"id": str(nsg)}
            refs["networkSecurityGroup"] = nsg.key
        return Prepared(properties, refs)

    @staticmethod
    def _ip_configuration(
        tx: Tx,
        rid: ResourceId,
        config: arm.NetworkInterfaceIPConfiguration,
        primary: bool,
        target: str,
        refs: dict[str, str],
    ) -> tuple[dict[str, Any], str]:
        cp = config.properties
        name = config.name or ""
        if cp.subnet is None:
            raise bad_request("InvalidRequestFormat", "An ipConfiguration needs a subnet.", f"{target}.subnet")
        subnet_id, vnet = resolve(tx, rid, cp.subnet, f"{target}.subnet", "virtualNetworks", "subnets")
        subnet = find_child(vnet.body, "subnets", subnet_id.child_name) or {}
        version = 6 if cp.privateIPAddressVersion == "IPv6" else 4
        prefixes = [p for p in (cidr(t, f"{target}.subnet") for t in subnet_prefixes(subnet)) if p.version == version]
        if not prefixes:
            raise bad_request(
                "SubnetHasNoPrefixOfThisVersion",
                f"Subnet {subnet_id.child_name} has no IPv{version} prefix.",
                f"{target}.privateIPAddressVersion",
            )
        owner = child_id(rid, "ipConfigurations", name).lower()
        space = str(subnet_id).lower()
        method = cp.privateIPAllocationMethod or "Dynamic"
        if method == "Static" and not cp.privateIPAddress:
            raise bad_request(
                "PrivateIPAddressRequired",
                "A Static ipConfiguration needs privateIPAddress.",
                f"{target}.privateIPAddress",
            )
        wanted = cp.privateIPAddress if method == "Static" else _still_valid(tx, space, owner, prefixes)
        prefix = next((p for p in prefixes if wanted and _is_ip(wanted) and ip_address(wanted) in p), prefixes[0])
        for held_address, held_space in tx.addresses_of(owner).items():  # all but the address it keeps
            if held_space != space or held_address != wanted:
                tx.release_address(held_space, held_address)
        address = allocate_private(tx, space, prefix, owner, wanted, f"{target}.privateIPAddress")
        refs[f"ipConfigurations/{name}/subnet"] = space
        properties: dict[str, Any] = {
            "privateIPAddress": address,
            "privateIPAllocationMethod": method,
            "privateIPAddressVersion": f"IPv{version}",
            "subnet": {"id": str(subnet_id)},
            "primary": primary,
            "provisioningState": SUCCEEDED,
        }
        if cp.publicIPAddress is not None:
            pip_id = public_ip_addresses.attach(tx, rid, cp.publicIPAddress, f"{target}.publicIPAddress")
            properties["publicIPAddress"] = {"id": str(pip_id)}
            refs[f"ipConfigurations/{name}/publicIPAddress"] = pip_id.key
        entry = {"id": child_id(rid, "ipConfigurations", name), "name": name, "type": IPCONFIG_TYPE}
        return {**entry, "properties": properties}, vnet.key

    def after_put(self, tx: Tx, doc: Doc, existing: Doc | None) -> None:
        if existing is not None:
            public_ip_addresses.release_unused_dynamic(tx, public_ip_keys(existing.body) - public_ip_keys(doc.body))

    def render(self, tx: Tx, doc: Doc) -> dict[str, Any]:
        body = dict(doc.body)
        props = dict(body["properties"])
        props["ipConfigurations"] = [{**c, "etag": doc.etag} for c in props["ipConfigurations"]]
        body["properties"] = props
        return body

    def after_delete(self, tx: Tx, doc: Doc) -> None:
        public_ip_addresses.release_unused_dynamic(tx, public_ip_keys(doc.body))


def _still_valid(tx: Tx, space: str, owner: str, prefixes: list[Any]) -> str | None:
    """A Dynamic ipConfiguration keeps the address it has while that stays inside its subnet."""
    for address, held_space in tx.addresses_of(owner).items():
        if held_space == space and any(ip_address(address) in p for p in prefixes):
            return address
    return None


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True
