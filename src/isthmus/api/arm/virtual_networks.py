"""virtualNetworks and their subnets."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

from isthmus.api.arm.addressing import Network, cidr
from isthmus.api.arm.kind import SUCCEEDED, Child, Kind, Prepared, at_most, child_id, guid, resolve, unique_names
from isthmus.api.errors import bad_request
from isthmus.model import arm, limits
from isthmus.model.ids import ResourceId
from isthmus.model.prefixes import Holders, first_overlap, reserved_range_in
from isthmus.store.repo import Doc, Tx

SUBNET_TYPE = "Microsoft.Network/virtualNetworks/subnets"
SMALLEST_IPV4_SUBNET = 29  # Azure's smallest IPv4 subnet


def subnet_prefixes(subnet: dict[str, Any]) -> list[str]:
    props = subnet.get("properties", {})
    return list(props.get("addressPrefixes") or ([props["addressPrefix"]] if props.get("addressPrefix") else []))


class VirtualNetworks(Kind):
    collection = "virtualNetworks"
    type = "Microsoft.Network/virtualNetworks"
    model = arm.VirtualNetwork
    children = (Child("subnets", SUBNET_TYPE, arm.Subnet),)

    def prepare(self, tx: Tx, rid: ResourceId, request: Any, existing: Doc | None) -> Prepared:
        props: arm.VirtualNetworkProperties = request.properties
        space = self._address_space(props)
        if props.virtualNetworkPeerings:
            raise bad_request(
                "FeatureNotSupported",
                "Virtual network peering is not supported.",
                "properties.virtualNetworkPeerings",
            )
        at_most(
            props.subnets,
            limits.SUBNETS_PER_VNET,
            "SubnetsPerVirtualNetworkLimitReached",
            "subnets in a virtual network",
            "properties.subnets",
        )
        if props.dhcpOptions is not None:
            at_most(
                props.dhcpOptions.dnsServers,
                limits.DNS_SERVERS_PER_VNET,
                "DnsServersPerVirtualNetworkLimitReached",
                "DNS servers of a virtual network",
                "properties.dhcpOptions.dnsServers",
            )
        unique_names(props.subnets, "properties.subnets")
        refs: dict[str, str] = {}
        subnets = []
        placed: list[tuple[Network, str, str]] = []  # (prefix, subnet name, its JSON path)
        holders = Holders(space)
        for index, subnet in enumerate(props.subnets):
            subnets.append(self._subnet(tx, rid, holders, subnet, index, refs, placed))
        self._check_subnets_apart(placed)
        self._check_in_use(tx, rid, existing, subnets)
        tx.vni(rid.key)
        properties: dict[str, Any] = {
            "addressSpace": {"addressPrefixes": [str(n) for n in space]},
            "subnets": subnets,
            "enableDdosProtection": bool(props.enableDdosProtection),
            "provisioningState": SUCCEEDED,
            "resourceGuid": guid(existing),
            "virtualNetworkPeerings": [],
        }
        if props.dhcpOptions is not None:
            properties["dhcpOptions"] = {"dnsServers": list(props.dhcpOptions.dnsServers)}
        if props.flowTimeoutInMinutes is not None:
            properties["flowTimeoutInMinutes"] = props.flowTimeoutInMinutes
        return Prepared(properties, refs)

    @staticmethod
    def _address_space(props: arm.VirtualNetworkProperties) -> list[Network]:
        target = "properties.addressSpace.addressPrefixes"
        texts = props.addressSpace.addressPrefixes if props.addressSpace else []
        if not texts:
            raise bad_request("InvalidAddressSpace", "A virtual network needs at least one address prefix.", target)
        at_most(
            texts,
            limits.ADDRESS_PREFIXES_PER_VNET,
            "AddressPrefixesPerVirtualNetworkLimitReached",
            "address prefixes in a virtual network",
            target,
        )
        space = [cidr(text, f"{target}[{i}]") for i, text in enumerate(texts)]
        for index, prefix in enumerate(space):
            reserved = reserved_range_in(prefix)
            if reserved is not None:
                raise bad_request(
                    "VnetAddressSpaceInReservedRange",
                    f"Address prefix {prefix} overlaps {reserved}, a range the platform reserves "
                    "(multicast, broadcast, loopback, link-local or the platform's own addresses).",
                    f"{target}[{index}]",
                )
        overlap = first_overlap(space)
        if overlap:
            i, j = overlap
            raise bad_request(
                "VnetAddressSpacesOverlap",
                f"Address prefixes {space[i]} and {space[j]} of the virtual network overlap.",
                f"{target}[{j}]",
            )
        return space

    @staticmethod
    def _subnet(
        tx: Tx,
        rid: ResourceId,
        space: Holders,
        subnet: arm.Subnet,
        index: int,
        refs: dict[str, str],
        placed: list[tuple[Network, str, str]],
    ) -> dict[str, Any]:
        target = f"properties.subnets[{index}]"
        sp = subnet.properties
        if sp.addressPrefix and sp.addressPrefixes:
            raise bad_request(
                "InvalidRequestFormat",
                "Give either addressPrefix or addressPrefixes, not both.",
                f"{target}.properties.addressPrefixes",
            )
        texts = sp.addressPrefixes or ([sp.addressPrefix] if sp.addressPrefix else [])
        if not texts:
            raise bad_request(
                "InvalidRequestFormat",
                "A subnet needs an address prefix.",
                f"{target}.properties.addressPrefix",
            )
        field = "addressPrefixes" if sp.addressPrefixes else "addressPrefix"
        at_most(
            texts,
            limits.ADDRESS_PREFIXES_PER_SUBNET,
            "AddressPrefixesPerSubnetLimitReached",
            "address prefixes of a subnet",
            f"{target}.properties.{field}",
        )
        for j, text in enumerate(texts):
            ptarget = f"{target}.properties.{field}" + (f"[{j}]" if sp.addressPrefixes else "")
            prefix = cidr(text, ptarget)
            if space.holder(prefix) is None:
                raise bad_request(
                    "NetcfgSubnetRangeOutsideVnet",
                    f"Subnet '{subnet.name}' is not valid because its IP address range is outside the IP address "
                    f"range of virtual network '{rid.name}'.",
                    ptarget,
                )
            if prefix.version == 4 and prefix.prefixlen > SMALLEST_IPV4_SUBNET:
                raise bad_request(
                    "InvalidSubnetPrefixLength",
                    f"Subnet prefix {prefix} is smaller than the smallest supported (/{SMALLEST_IPV4_SUBNET}).",
                    ptarget,
                )
            placed.append((prefix, subnet.name or "", ptarget))
        for name in ("routeTable", "natGateway"):
            if getattr(sp, name) is not None:
                raise bad_request(
                    "FeatureNotSupported", f"Subnet {name} is not supported.", f"{target}.properties.{name}"
                )
        name = subnet.name or ""
        properties: dict[str, Any] = {
            field: list(texts) if sp.addressPrefixes else texts[0],
            "provisioningState": SUCCEEDED,
            "privateEndpointNetworkPolicies": sp.privateEndpointNetworkPolicies or "Disabled",
            "privateLinkServiceNetworkPolicies": sp.privateLinkServiceNetworkPolicies or "Enabled",
        }
        if sp.networkSecurityGroup is not None:
            ntarget = f"{target}.properties.networkSecurityGroup"
            nsg, _ = resolve(tx, rid, sp.networkSecurityGroup, ntarget, "networkSecurityGroups")
            properties["networkSecurityGroup"] = {"id": str(nsg)}
            refs[f"subnets/{name.lower()}/networkSecurityGroup"] = nsg.key
        return {
            "id": child_id(rid, "subnets", name),
            "name": name,
            "type": SUBNET_TYPE,
            "properties": properties,
        }

    @staticmethod
    def _check_subnets_apart(placed: list[tuple[Network, str, str]]) -> None:
        overlap = first_overlap([prefix for prefix, _name, _target in placed])
        if overlap is None:
            return
        (_p, earlier, _t), (_q, later, target) = placed[overlap[0]], placed[overlap[1]]
        raise bad_request(
            "NetcfgSubnetRangesOverlap",
            f"Subnet '{later}' is not valid because its IP address range overlaps with that of "
            f"subnet '{earlier}' in the same virtual network.",
            target,
        )

    @staticmethod
    def _check_in_use(tx: Tx, rid: ResourceId, existing: Doc | None, subnets: list[dict[str, Any]]) -> None:
        """A subnet with NICs (or gateways) on it can be neither removed nor resized away from them."""
        if existing is None:
            return
        new = {s["name"].lower(): s for s in subnets}
        users_of = subnet_users(tx, existing.key)
        for old in existing.body["properties"].get("subnets", []):
            sid = old["id"].lower()
            users = [src for src, _p in users_of.get(sid, []) if src != rid.key]
            if not users:
                continue
            if old["name"].lower() not in new:
                raise bad_request(
                    "InUseSubnetCannotBeDeleted",
                    f"Subnet {old['name']} is in use by {users[0]} and cannot be deleted.",
                    "properties.subnets",
                )
            prefixes = [cidr(p, "properties.subnets") for p in subnet_prefixes(new[old["name"].lower()])]
            for held in tx.allocated(sid):
                if not any(_contains(p, held) for p in prefixes):
                    raise bad_request(
                        "InUseSubnetCannotBeUpdated",
                        f"Subnet {old['name']} has address {held} in use outside its new prefixes.",
                        "properties.subnets",
                    )

    def render(self, tx: Tx, doc: Doc) -> dict[str, Any]:
        body = dict(doc.body)
        props = dict(body["properties"])
        subnets = []
        users_of = subnet_users(tx, doc.key)
        for subnet in props.get("subnets", []):
            users = users_of.get(subnet["id"].lower(), [])
            configs = sorted({target_path_id(src, path) for src, path in users if "ipConfigurations" in path})
            sprops = dict(subnet["properties"])
            if configs:
                sprops["ipConfigurations"] = [{"id": c} for c in configs]
            subnets.append({**subnet, "etag": doc.etag, "properties": sprops})
        props["subnets"] = subnets
        body["properties"] = props
        return body

    def check_delete(self, tx: Tx, doc: Doc) -> None:
        users = [src for src, _p, _t in tx.referrers(doc.key) if src != doc.key]
        if users:
            raise bad_request(
                "InUseSubnetCannotBeDeleted",
                f"A subnet of virtual network {doc.name} is in use by {users[0]} and cannot be deleted.",
            )

    def after_delete(self, tx: Tx, doc: Doc) -> None:
        tx.release_vni(doc.key)


def subnet_users(tx: Tx, vnet_key: str) -> dict[str, list[tuple[str, str]]]:
    """subnet key -> (source, path) of every reference to it: one query for all of a VNet's subnets."""
    users: dict[str, list[tuple[str, str]]] = {}
    for source, path, target in tx.referrers(vnet_key, below=True):
        if target != vnet_key:
            users.setdefault(target, []).append((source, path))
    return users


def _contains(prefix: Network, text: str) -> bool:
    return ip_address(text) in prefix


def target_path_id(source: str, path: str) -> str:
    """The child id a reference path names inside its source, e.g. a NIC's ipConfiguration."""
    parts = path.split("/")
    return f"{source}/{parts[0]}/{parts[1]}" if len(parts) >= 2 else source
