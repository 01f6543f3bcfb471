"""virtualNetworkGateways, localNetworkGateways and connections (IPsec, and isthmus' GRE and L3 types)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Network, IPv6Network, ip_interface, ip_network
from typing import Any

from isthmus.api.arm import bgp_rules, public_ip_addresses, shared_address
from isthmus.api.arm.addressing import PUBLIC, address, allocate_private, cidr
from isthmus.api.arm.kind import (
    SUCCEEDED,
    Kind,
    Prepared,
    Progress,
    at_most,
    child_id,
    find_child,
    guid,
    in_use,
    resolve,
)
from isthmus.api.arm.virtual_networks import subnet_prefixes
from isthmus.api.errors import bad_request
from isthmus.compile.gateway import RESET_GENERATION
from isthmus.compile.placement import POOL_SERVES, SKU_MBPS
from isthmus.model import arm, limits
from isthmus.model.ids import ResourceId
from isthmus.model.snapshot import POOLS, public_ip_keys, vnet_key_of
from isthmus.store import learned_routes
from isthmus.store.repo import Doc, Tx
from isthmus.store.sealed import CLEAR, SEALED

GATEWAY_SUBNET = "GatewaySubnet"
# Tunnels' inner addresses and L3 link networks (the upper half of 198.19.0.0/16 is the hosts' transit).
TENANT_TRANSIT = IPv4Network("198.19.0.0/17")
# ASNs Azure keeps for itself.
RESERVED_ASNS = {8074, 8075, 12076, 65515, 65517, 65518, 65519, 65520, 23456}
DEFAULT_ASN = 65515
IPCONFIG_TYPE = "Microsoft.Network/virtualNetworkGateways/ipConfigurations"


class VirtualNetworkGateways(Kind):
    collection = "virtualNetworkGateways"
    type = "Microsoft.Network/virtualNetworkGateways"
    model = arm.VirtualNetworkGateway

    def prepare(self, tx: Tx, rid: ResourceId, request: Any, existing: Doc | None) -> Prepared:
        props: arm.VirtualNetworkGatewayProperties = request.properties
        if (props.gatewayType or "Vpn") != "Vpn":
            raise bad_request("FeatureNotSupported", "Only gatewayType Vpn is supported.", "properties.gatewayType")
        if (props.vpnType or "RouteBased") != "RouteBased":
            raise bad_request("FeatureNotSupported", "Only vpnType RouteBased is supported.", "properties.vpnType")
        if props.activeActive:
            raise bad_request(
                "FeatureNotSupported",
                "Active-active gateways are not offered; pools give M+N redundancy instead.",
                "properties.activeActive",
            )
        sku = props.sku.name if props.sku and props.sku.name else ""
        if sku not in SKU_MBPS:
            raise bad_request(
                "InvalidGatewaySku",
                f"Gateway SKU '{sku}' is not one of {', '.join(SKU_MBPS)}.",
                "properties.sku.name",
            )
        if len(props.ipConfigurations) != 1:
            raise bad_request(
                "InvalidGatewayIpConfigurationCount",
                "A virtual network gateway needs exactly one ipConfiguration.",
                "properties.ipConfigurations",
            )
        refs: dict[str, str] = {}
        ipconfig = self._ip_configuration(tx, rid, props.ipConfigurations[0], refs)
        if existing is not None and existing.body["properties"]["sku"]["name"] != sku:
            _check_shared_address_after_resize(tx, existing, sku)
        enable_bgp = bool(props.enableBgp)
        if enable_bgp and sku == "Basic":
            raise bad_request(
                "BgpNotSupportedOnBasicSku", "The Basic SKU does not support BGP.", "properties.enableBgp"
            )
        asn = props.bgpSettings.asn if props.bgpSettings and props.bgpSettings.asn else DEFAULT_ASN
        if asn in RESERVED_ASNS and asn != DEFAULT_ASN:
            raise bad_request("BgpAsnReserved", f"ASN {asn} is reserved.", "properties.bgpSettings.asn")
        properties: dict[str, Any] = {
            "gatewayType": "Vpn",
            "vpnType": "RouteBased",
            "sku": {"name": sku, "tier": sku, "capacity": SKU_MBPS[sku]},
            "ipConfigurations": [ipconfig],
            "enableBgp": enable_bgp,
            "activeActive": False,
            "bgpSettings": {
                "asn": asn,
                "bgpPeeringAddress": ipconfig["properties"]["privateIPAddress"],
                "peerWeight": (props.bgpSettings.peerWeight or 0) if props.bgpSettings else 0,
            },
            "provisioningState": SUCCEEDED,
            "resourceGuid": guid(existing),
        }
        if enable_bgp:
            bgp_rules.check_asn(tx, asn, "properties.bgpSettings.asn")
        if existing is not None:  # its BGP connections must still hold
            planned = replace(existing, body={**existing.body, "properties": properties})
            for connection in bgp_rules.bgp_connections(tx, rid.key, "virtualNetworkGateway1"):
                cp = connection.body["properties"]
                site = tx.get(cp["localNetworkGateway2"]["id"].lower())
                site_props = site.body["properties"] if site else {}
                bgp_rules.check_connection(tx, cp["connectionType"], cp, planned, site_props, bgp_rules.ON_GATEWAY)
        return Prepared(properties, refs)

    @staticmethod
    def _ip_configuration(
        tx: Tx, rid: ResourceId, config: arm.GatewayIPConfiguration, refs: dict[str, str]
    ) -> dict[str, Any]:
        target = "properties.ipConfigurations[0].properties"
        name = config.name or "default"
        cp = config.properties
        if cp.subnet is None:
            raise bad_request("InvalidRequestFormat", "The ipConfiguration needs a subnet.", f"{target}.subnet")
        subnet_id, vnet = resolve(tx, rid, cp.subnet, f"{target}.subnet", "virtualNetworks", "subnets")
        if (subnet_id.child_name or "").lower() != GATEWAY_SUBNET.lower():
            raise bad_request(
                "GatewaySubnetRequired",
                f"A virtual network gateway must be in the subnet named {GATEWAY_SUBNET}.",
                f"{target}.subnet",
            )
        space = str(subnet_id).lower()
        others = [s for s, _p, _t in tx.referrers(space, below=False) if s != rid.key and "virtualnetworkgateways" in s]
        if others:
            raise bad_request(
                "VirtualNetworkGatewayAlreadyExists",
                f"Virtual network {vnet.name} already has gateway {others[0]}.",
                f"{target}.subnet",
            )
        subnet = find_child(vnet.body, "subnets", subnet_id.child_name) or {}
        prefix = cidr(subnet_prefixes(subnet)[0], f"{target}.subnet")
        owner = child_id(rid, "ipConfigurations", name).lower()
        held = [a for a, s in tx.addresses_of(owner).items() if s == space]
        private = allocate_private(tx, space, prefix, owner, held[0] if held else None, f"{target}.subnet")
        refs[f"ipConfigurations/{name}/subnet"] = space
        properties: dict[str, Any] = {
            "subnet": {"id": str(subnet_id)},
            "privateIPAllocationMethod": "Dynamic",
            "privateIPAddress": private,
            "provisioningState": SUCCEEDED,
        }
        if cp.publicIPAddress is None:
            raise bad_request(
                "PublicIPAddressRequired",
                "A VPN gateway's ipConfiguration needs a public IP address.",
                f"{target}.publicIPAddress",
            )
        pip_id = public_ip_addresses.attach(tx, rid, cp.publicIPAddress, f"{target}.publicIPAddress")
        properties["publicIPAddress"] = {"id": str(pip_id)}
        refs[f"ipConfigurations/{name}/publicIPAddress"] = pip_id.key
        return {
            "id": child_id(rid, "ipConfigurations", name),
            "name": name,
            "type": IPCONFIG_TYPE,
            "properties": properties,
        }

    def render(self, tx: Tx, doc: Doc) -> dict[str, Any]:
        """With Azure's `bgpSettings.bgpPeeringAddresses`, whose `tunnelIpAddresses` tell the site where the
        gateway answers IKE and GRE: its public IP, or (`placed`) the address its pool shares."""
        own = [a for pip in public_ip_keys(doc.body) for a, space in tx.addresses_of(pip).items() if space == PUBLIC]
        return _with_tunnel_addresses(doc.body, own)

    def placed(self, body: dict[str, Any], doc: Doc, progress: Progress | None) -> dict[str, Any]:
        shared = progress.shared_address(doc.key) if progress is not None else None
        return _with_tunnel_addresses(body, [shared]) if shared else body

    def after_put(self, tx: Tx, doc: Doc, existing: Doc | None) -> None:
        if existing is not None:
            old, new = public_ip_keys(existing.body), public_ip_keys(doc.body)
            public_ip_addresses.release_unused_dynamic(tx, old - new)

    def check_delete(self, tx: Tx, doc: Doc) -> None:
        in_use(tx, doc.key, "InUseVirtualNetworkGatewayCannotBeDeleted", f"Virtual network gateway {doc.name}")

    def after_delete(self, tx: Tx, doc: Doc) -> None:
        public_ip_addresses.release_unused_dynamic(tx, public_ip_keys(doc.body))


class LocalNetworkGateways(Kind):
    collection = "localNetworkGateways"
    type = "Microsoft.Network/localNetworkGateways"
    model = arm.LocalNetworkGateway

    def prepare(self, tx: Tx, rid: ResourceId, request: Any, existing: Doc | None) -> Prepared:
        props: arm.LocalNetworkGatewayProperties = request.properties
        if not props.gatewayIpAddress:
            raise bad_request(
                "GatewayIpAddressRequired",
                "A local network gateway needs gatewayIpAddress.",
                "properties.gatewayIpAddress",
            )
        gateway = address(props.gatewayIpAddress, "properties.gatewayIpAddress", "InvalidGatewayIpAddress")
        target = "properties.localNetworkAddressSpace.addressPrefixes"
        texts = props.localNetworkAddressSpace.addressPrefixes if props.localNetworkAddressSpace else []
        at_most(
            texts,
            limits.ADDRESS_PREFIXES_PER_VNET,
            "AddressPrefixesPerLocalNetworkGatewayLimitReached",
            "address prefixes of a local network gateway",
            target,
        )
        prefixes = [str(cidr(text, f"{target}[{i}]")) for i, text in enumerate(texts)]
        properties: dict[str, Any] = {
            "gatewayIpAddress": str(gateway),
            "localNetworkAddressSpace": {"addressPrefixes": prefixes},
            "provisioningState": SUCCEEDED,
            "resourceGuid": guid(existing),
        }
        if props.bgpSettings is not None:
            bgp = props.bgpSettings
            if bgp.asn is None or not bgp.bgpPeeringAddress:
                raise bad_request(
                    "InvalidBgpSettings",
                    "bgpSettings needs asn and bgpPeeringAddress.",
                    "properties.bgpSettings",
                )
            peer = address(bgp.bgpPeeringAddress, "properties.bgpSettings.bgpPeeringAddress")
            properties["bgpSettings"] = {
                "asn": bgp.asn,
                "bgpPeeringAddress": str(peer),
                "peerWeight": bgp.peerWeight or 0,
            }
        for source, _path, _target in tx.referrers(rid.key, below=False) if existing is not None else ():
            connection = tx.get(source)
            used_by = connection.body["properties"]["virtualNetworkGateway1"]["id"].lower() if connection else ""
            vnet_gateway = tx.get(used_by)
            if vnet_gateway is not None:
                _check_site_prefixes(tx, vnet_gateway, rid.name, prefixes, target)
            if connection is not None and vnet_gateway is not None:  # a new site address: still told apart?
                mine = shared_address.steered(connection.body["id"], connection.body["properties"], vnet_gateway.body,
                                              str(gateway), shared_address.pools(tx).values())  # fmt: skip
                shared_address.check_connection(tx, mine, "properties.gatewayIpAddress")
        if not prefixes and "bgpSettings" not in properties:
            raise bad_request(
                "LocalNetworkAddressSpaceRequired",
                "Give the on-premises prefixes, or bgpSettings to learn them.",
                target,
            )
        if "bgpSettings" in properties:
            asn = properties["bgpSettings"]["asn"]
            if asn in RESERVED_ASNS:  # Azure keeps them from on-premises devices too
                raise bad_request("BgpAsnReserved", f"ASN {asn} is reserved.", "properties.bgpSettings.asn")
            bgp_rules.check_asn(tx, asn, "properties.bgpSettings.asn")
        for connection in (
            bgp_rules.bgp_connections(tx, rid.key, "localNetworkGateway2") if existing is not None else ()
        ):
            cp = connection.body["properties"]
            vnet_gateway = tx.get(cp["virtualNetworkGateway1"]["id"].lower())
            if vnet_gateway is not None:
                bgp_rules.check_connection(tx, cp["connectionType"], cp, vnet_gateway, properties, bgp_rules.ON_SITE)
        return Prepared(properties)

    def check_delete(self, tx: Tx, doc: Doc) -> None:
        in_use(tx, doc.key, "InUseLocalNetworkGatewayCannotBeDeleted", f"Local network gateway {doc.name}")


GCM = {"GCMAES128", "GCMAES192", "GCMAES256"}


class Connections(Kind):
    collection = "connections"
    type = "Microsoft.Network/connections"
    model = arm.Connection

    def prepare(self, tx: Tx, rid: ResourceId, request: Any, existing: Doc | None) -> Prepared:
        props: arm.ConnectionProperties = request.properties
        kind = props.connectionType
        if kind is None:
            raise bad_request("InvalidRequestFormat", "connectionType is required.", "properties.connectionType")
        if kind not in ("IPsec", "GRE", "L3"):
            raise bad_request(
                "FeatureNotSupported", f"connectionType {kind} is not supported.", "properties.connectionType"
            )
        if existing is not None and existing.body["properties"]["connectionType"] != kind:
            raise bad_request(
                "ConnectionTypeCannotBeChanged",
                "The type of a connection cannot change.",
                "properties.connectionType",
            )
        refs: dict[str, str] = {}
        if props.virtualNetworkGateway1 is None:
            raise bad_request(
                "InvalidRequestFormat",
                "virtualNetworkGateway1 is required.",
                "properties.virtualNetworkGateway1",
            )
        gw_id, _gw = resolve(
            tx,
            rid,
            props.virtualNetworkGateway1,
            "properties.virtualNetworkGateway1",
            "virtualNetworkGateways",
        )
        refs["virtualNetworkGateway1"] = gw_id.key
        if props.localNetworkGateway2 is None:
            raise bad_request(
                "InvalidRequestFormat", "localNetworkGateway2 is required.", "properties.localNetworkGateway2"
            )
        lgw_id, lgw = resolve(
            tx, rid, props.localNetworkGateway2, "properties.localNetworkGateway2", "localNetworkGateways"
        )
        refs["localNetworkGateway2"] = lgw_id.key
        properties: dict[str, Any] = {
            "connectionType": kind,
            "virtualNetworkGateway1": {"id": str(gw_id)},
            "localNetworkGateway2": {"id": str(lgw_id)},
            "routingWeight": props.routingWeight or 0,
            "enableBgp": bool(props.enableBgp),
            "provisioningState": SUCCEEDED,
            "resourceGuid": guid(existing),
        }
        if props.enableBgp and "bgpSettings" not in lgw.body["properties"]:
            raise bad_request(
                "BgpSettingsMissingOnLocalNetworkGateway",
                "enableBgp needs bgpSettings on the local network gateway.",
                "properties.enableBgp",
            )
        _check_site_prefixes(tx, _gw, lgw.name, lgw.body["properties"]["localNetworkAddressSpace"]["addressPrefixes"],
                             "properties.localNetworkGateway2")  # fmt: skip
        _check_pool_serves(tx, _gw, kind)
        if kind == "IPsec":
            properties.update(self._ipsec(tx, rid, props, existing))
        else:
            for name in ("sharedKey", "ipsecPolicies"):
                if getattr(props, name):
                    raise bad_request(
                        "InvalidRequestFormat",
                        f"{name} applies only to IPsec connections.",
                        f"properties.{name}",
                    )
        if kind == "GRE":
            properties["greSettings"] = self._gre(
                tx, rid, props, gw_id.key, lgw.body["properties"].get("gatewayIpAddress")
            )
        if kind == "L3":
            properties["l3ForwardingSettings"] = self._l3(tx, rid, props, gw_id.key)
        if properties["enableBgp"]:
            bgp_rules.check_connection(tx, kind, properties, _gw, lgw.body["properties"], bgp_rules.ON_CONNECTION)
        site = lgw.body["properties"].get("gatewayIpAddress")
        mine = shared_address.steered(str(rid), properties, _gw.body, site, shared_address.pools(tx).values())
        shared_address.check_connection(tx, mine, "properties.localNetworkGateway2")
        return Prepared(properties, refs)

    def after_put(self, tx: Tx, doc: Doc, existing: Doc | None) -> None:
        if not doc.body["properties"].get("enableBgp"):
            learned_routes.forget(tx, doc.key)  # what its site advertised no longer reaches the VNet

    @staticmethod
    def _ipsec(tx: Tx, rid: ResourceId, props: arm.ConnectionProperties, existing: Doc | None) -> dict[str, Any]:
        if (props.connectionProtocol or "IKEv2") != "IKEv2":
            raise bad_request(
                "FeatureNotSupported",
                "Only IKEv2 connections are supported.",
                "properties.connectionProtocol",
            )
        # The key is stored sealed (isthmus.sealing); a PUT without one keeps the sealed key it had.
        kept = existing.body["properties"].get(SEALED) if existing else None
        if props.sharedKey:
            check_shared_key(props.sharedKey, "properties.sharedKey")
        shared_key = tx.seal(props.sharedKey, rid.key) if props.sharedKey else kept
        if not shared_key:
            raise bad_request("SharedKeyRequired", "An IPsec connection needs sharedKey.", "properties.sharedKey")
        policies = []
        for index, policy in enumerate(props.ipsecPolicies):
            gcm_encryption = policy.ipsecEncryption in GCM
            if gcm_encryption != (policy.ipsecIntegrity in GCM) or (
                gcm_encryption and policy.ipsecEncryption != policy.ipsecIntegrity
            ):
                raise bad_request(
                    "IpsecPolicyGcmMismatch",
                    "With a GCMAES ipsecEncryption, ipsecIntegrity must be the same GCMAES algorithm.",
                    f"properties.ipsecPolicies[{index}].ipsecIntegrity",
                )
            if policy.ikeIntegrity in GCM and policy.ikeEncryption != policy.ikeIntegrity:
                raise bad_request(
                    "IpsecPolicyGcmMismatch",
                    "A GCMAES ikeIntegrity needs the same GCMAES ikeEncryption.",
                    f"properties.ipsecPolicies[{index}].ikeIntegrity",
                )
            if policy.dhGroup == "None":
                raise bad_request(
                    "InvalidIpsecPolicy",
                    "dhGroup None cannot key an IKEv2 SA: choose a Diffie-Hellman group.",
                    f"properties.ipsecPolicies[{index}].dhGroup",
                )
            if policy.ipsecEncryption == "None" and policy.ipsecIntegrity in GCM:
                raise bad_request(
                    "IpsecPolicyGcmMismatch",
                    "ipsecEncryption None goes with a SHA or MD5 ipsecIntegrity.",
                    f"properties.ipsecPolicies[{index}].ipsecIntegrity",
                )
            policies.append(policy.model_dump())
        selectors = []
        for index, selector in enumerate(props.trafficSelectorPolicies):
            target = f"properties.trafficSelectorPolicies[{index}]"
            selectors.append({
                "localAddressRanges": [str(cidr(r, f"{target}.localAddressRanges[{i}]"))
                                       for i, r in enumerate(selector.localAddressRanges)],
                "remoteAddressRanges": [str(cidr(r, f"{target}.remoteAddressRanges[{i}]"))
                                        for i, r in enumerate(selector.remoteAddressRanges)],
            })  # fmt: skip
        return {
            "connectionProtocol": "IKEv2",
            SEALED: shared_key,
            RESET_GENERATION: existing.body["properties"].get(RESET_GENERATION, 0) if existing else 0,
            "ipsecPolicies": policies,
            "usePolicyBasedTrafficSelectors": bool(props.usePolicyBasedTrafficSelectors),
            "trafficSelectorPolicies": selectors,
            "dpdTimeoutSeconds": props.dpdTimeoutSeconds or 45,
            "connectionMode": props.connectionMode or "Default",
        }

    @staticmethod
    def _gre(tx: Tx, rid: ResourceId, props: arm.ConnectionProperties, gateway: str, remote: str | None
             ) -> dict[str, Any]:  # fmt: skip
        settings = props.greSettings or arm.GreSettings()
        if remote is None:
            raise bad_request(
                "GatewayIpAddressRequired",
                "A GRE connection needs the local network gateway's gatewayIpAddress (the remote endpoint).",
                "properties.localNetworkGateway2",
            )
        out: dict[str, Any] = {"checksum": bool(settings.checksum)}
        if settings.key is not None:
            out["key"] = settings.key
        for other, body, other_remote in _sibling_connections(tx, rid, gateway):
            other_key = body["properties"].get("greSettings", {}).get("key")
            if body["properties"]["connectionType"] == "GRE" and other_remote == remote and other_key == settings.key:
                keyed = f"key {settings.key}" if settings.key is not None else "no key"
                raise bad_request(
                    "GreKeyInUse",
                    f"Connection {other} already runs GRE with {keyed} between this gateway and {remote}: "
                    "two tunnels between the same endpoints need different keys.",
                    "properties.greSettings.key",
                )
        if settings.tunnelAddress is not None:
            target = "properties.greSettings.tunnelAddress"
            inner = _link_network(tx, rid, gateway, settings.tunnelAddress, target)
            out["tunnelAddress"] = settings.tunnelAddress
            if settings.remoteTunnelAddress is not None:
                remote_inner = address(settings.remoteTunnelAddress, "properties.greSettings.remoteTunnelAddress")
                if remote_inner not in inner or remote_inner == ip_interface(settings.tunnelAddress).ip:
                    raise bad_request(
                        "InvalidTunnelAddress",
                        f"{remote_inner} is not another address of the tunnel network {inner}.",
                        "properties.greSettings.remoteTunnelAddress",
                    )
                out["remoteTunnelAddress"] = str(remote_inner)
        elif settings.remoteTunnelAddress is not None:
            raise bad_request(
                "InvalidTunnelAddress",
                "remoteTunnelAddress needs tunnelAddress (this side's address on the tunnel network).",
                "properties.greSettings.remoteTunnelAddress",
            )
        return out

    @staticmethod
    def _l3(tx: Tx, rid: ResourceId, props: arm.ConnectionProperties, gateway: str) -> dict[str, Any]:
        settings = props.l3ForwardingSettings
        if settings is None or not settings.localAddress or not settings.nextHop:
            raise bad_request(
                "InvalidRequestFormat",
                "An L3 connection needs l3ForwardingSettings.localAddress and nextHop.",
                "properties.l3ForwardingSettings",
            )
        link = _link_network(tx, rid, gateway, settings.localAddress, "properties.l3ForwardingSettings.localAddress")
        hop = address(settings.nextHop, "properties.l3ForwardingSettings.nextHop")
        if hop not in link or hop == ip_interface(settings.localAddress).ip:
            raise bad_request(
                "InvalidNextHop",
                f"Next hop {hop} is not another address of the link network {link}.",
                "properties.l3ForwardingSettings.nextHop",
            )
        out: dict[str, Any] = {"localAddress": settings.localAddress, "nextHop": str(hop)}
        if settings.vlanId is not None:
            for other, body, _remote in _sibling_connections(tx, rid, gateway):
                if body["properties"].get("l3ForwardingSettings", {}).get("vlanId") == settings.vlanId:
                    raise bad_request(
                        "VlanInUse",
                        f"Connection {other} of the same gateway already uses VLAN {settings.vlanId}.",
                        "properties.l3ForwardingSettings.vlanId",
                    )
            out["vlanId"] = settings.vlanId
        return out

    def render(self, tx: Tx, doc: Doc) -> dict[str, Any]:
        return self.with_status(doc, tx.connection_status(doc.key) or {})

    @staticmethod
    def with_status(doc: Doc, observed: dict[str, Any]) -> dict[str, Any]:
        """The connection as the API shows it, its status fields from `observed` (its carrier's last report)."""
        body = dict(doc.body)
        props = {k: v for k, v in body["properties"].items() if k not in (CLEAR, SEALED, RESET_GENERATION)}
        props["connectionStatus"] = observed.get("connectionStatus", "Unknown")
        props["ingressBytesTransferred"] = observed.get("ingressBytesTransferred", 0)
        props["egressBytesTransferred"] = observed.get("egressBytesTransferred", 0)
        props["tunnelConnectionStatus"] = observed.get("tunnelConnectionStatus", [])
        if "lastConnectionEstablishedUtcTime" in observed:
            props["lastConnectionEstablishedUtcTime"] = observed["lastConnectionEstablishedUtcTime"]
        if observed.get("reason"):
            props["connectionStatusReason"] = observed["reason"]  # isthmus: why it is not connected
        props["shapingDroppedPackets"] = observed.get("shapingDroppedPackets", 0)  # isthmus: what its tier dropped
        body["properties"] = props
        return body

    def placed(self, body: dict[str, Any], doc: Doc, progress: Progress | None) -> dict[str, Any]:
        gateway = body["properties"]["virtualNetworkGateway1"]["id"].lower()
        return self.runs_nowhere(body, progress.unplaced(gateway) if progress is not None else None)

    @staticmethod
    def runs_nowhere(body: dict[str, Any], why: str | None) -> dict[str, Any]:
        """The connection failed because its VNet gateway is unplaced, `why` (None: it is placed)."""
        if why is None:
            return body
        props = {**body["properties"], "provisioningState": "Failed", "connectionStatus": "NotConnected",
                 "connectionStatusReason": f"its gateway runs nowhere: {why}"}  # fmt: skip
        return {**body, "properties": props}

    def after_delete(self, tx: Tx, doc: Doc) -> None:
        tx.forget_connection_status(doc.key)
        learned_routes.forget(tx, doc.key)


SHARED_KEY_CHARACTERS = frozenset(chr(c) for c in range(0x20, 0x7F))  # printable ASCII


def check_shared_key(value: str, target: str) -> None:
    """Azure's rule for a pre-shared key: printable ASCII, at most 128 characters."""
    if len(value) > limits.SHARED_KEY_LENGTH or not set(value) <= SHARED_KEY_CHARACTERS:
        raise bad_request(
            "InvalidSharedKey",
            f"A shared key is 1 to {limits.SHARED_KEY_LENGTH} printable ASCII characters.",
            target,
        )


def _with_tunnel_addresses(body: dict[str, Any], addresses: list[str]) -> dict[str, Any]:
    """`body` with bgpSettings.bgpPeeringAddresses naming `addresses` as the tunnels' public endpoints."""
    props = body["properties"]
    bgp = props.get("bgpSettings") or {}
    config = props["ipConfigurations"][0]
    peering = {
        "ipconfigurationId": config["id"],
        "defaultBgpIpAddresses": [bgp["bgpPeeringAddress"]] if bgp.get("bgpPeeringAddress") else [],
        "customBgpIpAddresses": [],
        "tunnelIpAddresses": addresses,
    }
    return {**body, "properties": {**props, "bgpSettings": {**bgp, "bgpPeeringAddresses": [peering]}}}


def _check_shared_address_after_resize(tx: Tx, gateway: Doc, sku: str) -> None:
    """A new SKU may place the gateway in pools with another shared address: its connections must still be
    told apart there."""
    resized = {**gateway.body, "properties": {**gateway.body["properties"], "sku": {"name": sku}}}
    pool_props = shared_address.pools(tx).values()
    for source, path, _target in tx.referrers(gateway.key, below=False):
        connection = tx.get(source) if path == "virtualNetworkGateway1" else None
        if connection is None:
            continue
        local = tx.get(connection.body["properties"]["localNetworkGateway2"]["id"].lower())
        site = local.body["properties"].get("gatewayIpAddress") if local else None
        mine = shared_address.steered(connection.body["id"], connection.body["properties"], resized, site, pool_props)
        shared_address.check_connection(tx, mine, "properties.sku.name")


def _check_site_prefixes(tx: Tx, gateway: Doc, local: str, prefixes: list[str], target: str) -> None:
    """The site's prefixes may not overlap the address space of the gateway's VNet."""
    config = gateway.body["properties"]["ipConfigurations"][0]["properties"]
    vnet = tx.get(vnet_key_of(config["subnet"]["id"]))
    space = [ip_network(p) for p in (vnet.body["properties"]["addressSpace"]["addressPrefixes"] if vnet else [])]
    for i, text in enumerate(prefixes):
        prefix = ip_network(text)
        clash = next((s for s in space if s.version == prefix.version and s.overlaps(prefix)), None)
        if clash is not None:
            raise bad_request(
                "LocalNetworkAddressSpaceOverlapsVirtualNetwork",
                f"Prefix {prefix} of local network gateway {local} overlaps {clash} of virtual network "
                f"{vnet.name if vnet else ''}.",
                f"{target}[{i}]",
            )


def _check_pool_serves(tx: Tx, gateway: Doc, kind: str) -> None:
    """Some gateway pool sold at the gateway's tier must carry connections of `kind`."""
    sku = gateway.body["properties"]["sku"]["name"]
    pools = [d.body["properties"] for d in tx.list_docs("admin", POOLS)]
    tier = SKU_MBPS.get(sku, 0) * 1000
    at_tier = [p for p in pools if tier in (p.get("tierBandwidthKbps"), *p.get("additionalTiersKbps", []))]
    if at_tier and not any(kind in POOL_SERVES.get(p.get("type", ""), set()) for p in at_tier):
        raise bad_request(
            "GatewayPoolCannotCarryConnectionType",
            f"No {sku}-tier gateway pool carries {kind} connections (pool types: "
            f"{', '.join(sorted({p.get('type', '') for p in at_tier}))}).",
            "properties.connectionType",
        )


def _sibling_connections(tx: Tx, rid: ResourceId, gateway: str) -> list[tuple[str, dict[str, Any], str | None]]:
    """The other connections of virtual network gateway `gateway`: (name, body, their remote endpoint)."""
    out = []
    for source, path, _target in tx.referrers(gateway, below=False):
        if path != "virtualNetworkGateway1" or source == rid.key:
            continue
        doc = tx.get(source)
        if doc is None:
            continue
        local = tx.get(doc.body["properties"]["localNetworkGateway2"]["id"].lower())
        out.append((doc.name, doc.body, local.body["properties"].get("gatewayIpAddress") if local else None))
    return out


def _link_network(tx: Tx, rid: ResourceId, gateway: str, text: str, target: str) -> IPv4Network | IPv6Network:
    """A tunnel's or link's network: an address with its prefix, inside the tenants' transit range and apart
    from every other connection's of the same gateway."""
    network = _interface_address(text, target)
    if not (network.version == 4 and network.subnet_of(TENANT_TRANSIT)):
        raise bad_request(
            "InvalidTunnelAddress",
            f"{text} is outside the transit range tunnels and link networks use ({TENANT_TRANSIT}).",
            target,
        )
    for other, body, _remote in _sibling_connections(tx, rid, gateway):
        props = body["properties"]
        theirs = props.get("greSettings", {}).get("tunnelAddress") or props.get("l3ForwardingSettings", {}).get(
            "localAddress"
        )
        if theirs and ip_interface(theirs).network.overlaps(network):
            raise bad_request(
                "TunnelAddressOverlaps",
                f"{network} overlaps {ip_interface(theirs).network} of connection {other} on the same gateway.",
                target,
            )
    return network


def _interface_address(text: str, target: str) -> IPv4Network | IPv6Network:
    """'198.19.0.1/30' -> its network, checking the address is a usable host of it."""
    try:
        iface = ip_interface(text)
    except ValueError:
        raise bad_request("InvalidCIDRNotation", f"'{text}' is not an address with a prefix length.", target) from None
    if "/" not in text or (iface.ip == iface.network.network_address and iface.network.prefixlen < 31):
        raise bad_request("InvalidCIDRNotation", f"'{text}' is not a host address with a prefix length.", target)
    return iface.network
