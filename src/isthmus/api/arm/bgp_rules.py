"""The rules of BGP with sites, checked wherever a PUT can break them: of the connection (enableBgp), of its
local network gateway (the site's bgpSettings) and of its virtual network gateway (enableBgp, the ASN).

A BGP connection is eBGP between the gateway and the site:

- the gateway's address is its GatewaySubnet address (IPsec), the connection's greSettings.tunnelAddress (GRE)
  or l3ForwardingSettings.localAddress (L3); the site's is the local network gateway's bgpPeeringAddress,
  another address of the tunnel or link network (GRE, L3), or (IPsec, Azure's rule) an address the local
  network gateway declares in its localNetworkAddressSpace (its /32) outside the VNet;
- the two ASNs differ, and neither is the fabric's: a load balancer MUX's or its routers' (the MUXes peer
  with the ToR with those; a tenant using them would confuse both); 0 and 23456 (AS_TRANS) are never ASNs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import ip_address, ip_interface, ip_network
from typing import Any

from isthmus.api.errors import bad_request
from isthmus.model.snapshot import MUXES, vnet_key_of
from isthmus.store.repo import Doc, Tx

# Where a GRE or L3 connection holds the gateway's own BGP address (with the link network's prefix).
OWN_ADDRESS = {"GRE": ("greSettings", "tunnelAddress"), "L3": ("l3ForwardingSettings", "localAddress")}
NOT_ASNS = {0, 23456}  # 23456: AS_TRANS (RFC 6793), what a 2-byte speaker sees for a 4-byte ASN


@dataclass(frozen=True)
class Targets:
    """Where the request being checked holds each part of the rule (an error names the field)."""

    enable: str = "properties.enableBgp"
    gateway_asn: str = "properties.virtualNetworkGateway1"
    site_asn: str = "properties.localNetworkGateway2"
    site_address: str = "properties.localNetworkGateway2"
    own_address: str | None = None  # the connection's own field (GRE, L3); None: the kind's default


ON_CONNECTION = Targets()
ON_SITE = Targets(
    enable="properties.bgpSettings",
    gateway_asn="properties.bgpSettings.asn",
    site_asn="properties.bgpSettings.asn",
    site_address="properties.bgpSettings.bgpPeeringAddress",
)
ON_GATEWAY = Targets(
    gateway_asn="properties.bgpSettings.asn",
    site_asn="properties.bgpSettings.asn",
    site_address="properties.bgpSettings",
)


def check_asn(tx: Tx, asn: int, target: str) -> None:
    """An ASN a gateway or a site may use: a real one, and not the fabric's."""
    if asn in NOT_ASNS:
        raise bad_request("BgpAsnReserved", f"ASN {asn} is reserved.", target)
    if asn in fabric_asns(tx):
        raise bad_request(
            "BgpAsnConflictsWithFabric",
            f"ASN {asn} is the fabric's own (a load balancer MUX or the router it peers with): choose another.",
            target,
        )


def fabric_asns(tx: Tx) -> set[int]:
    """The ASNs of the operator's MUXes and of their peers (the ToRs)."""
    out = set()
    for doc in tx.list_docs("admin", MUXES):
        props = doc.body["properties"]
        out.add(int(props["asn"]))
        out.update(int(peer["asn"]) for peer in props.get("peers", []))
    return out


def check_connection(
    tx: Tx, kind: str, connection: Mapping[str, Any], gateway: Doc, site: Mapping[str, Any], targets: Targets
) -> None:
    """The rules of one BGP connection: `connection` its stored properties, `gateway` its virtual network
    gateway, `site` its local network gateway's properties (as they will be stored)."""
    props = gateway.body["properties"]
    if not props.get("enableBgp"):
        raise bad_request(
            "BgpNotEnabledOnVirtualNetworkGateway",
            f"enableBgp on a connection needs BGP on its virtual network gateway {gateway.name} (enableBgp, "
            "bgpSettings.asn).",
            targets.enable,
        )
    bgp = site.get("bgpSettings")
    if not bgp:
        raise bad_request(
            "BgpSettingsMissingOnLocalNetworkGateway",
            "enableBgp needs bgpSettings on the local network gateway.",
            targets.enable,
        )
    ours, theirs = int(props["bgpSettings"]["asn"]), int(bgp["asn"])
    if ours == theirs:
        raise bad_request(
            "BgpAsnSameAsGateway",
            f"The site's ASN {theirs} is the virtual network gateway's: BGP with a site is eBGP, choose another.",
            targets.site_asn,
        )
    check_asn(tx, ours, targets.gateway_asn)
    check_asn(tx, theirs, targets.site_asn)
    _check_peering_address(tx, kind, connection, props, site, targets)


def _check_peering_address(
    tx: Tx, kind: str, connection: Mapping[str, Any], gateway: Mapping[str, Any], site: Mapping[str, Any],
    targets: Targets,
) -> None:  # fmt: skip
    peer = ip_address(site["bgpSettings"]["bgpPeeringAddress"])
    if kind in OWN_ADDRESS:
        settings, field = OWN_ADDRESS[kind]
        own = (connection.get(settings) or {}).get(field)
        if own is None:
            raise bad_request(
                "InvalidBgpPeeringAddress",
                f"A {kind} connection with enableBgp needs {settings}.{field}: the gateway's BGP address.",
                targets.own_address or f"properties.{settings}.{field}",
            )
        inside = ip_interface(own)
        if peer not in inside.network or peer == inside.ip:
            raise bad_request(
                "InvalidBgpPeeringAddress",
                f"The site's bgpPeeringAddress {peer} is not another address of the {kind} link network "
                f"{inside.network} ({settings}.{field} {own}).",
                targets.site_address,
            )
        return
    vnet = tx.get(vnet_key_of(gateway["ipConfigurations"][0]["properties"]["subnet"]["id"]))
    space = [ip_network(p) for p in (vnet.body["properties"]["addressSpace"]["addressPrefixes"] if vnet else [])]
    if any(peer in prefix for prefix in space):
        raise bad_request(
            "InvalidBgpPeeringAddress",
            f"The site's bgpPeeringAddress {peer} is inside the virtual network's address space.",
            targets.site_address,
        )
    declared = [ip_network(p) for p in site.get("localNetworkAddressSpace", {}).get("addressPrefixes", [])]
    if not any(peer in prefix for prefix in declared):
        raise bad_request(
            "InvalidBgpPeeringAddress",
            f"The site's bgpPeeringAddress {peer} is in none of its localNetworkAddressSpace prefixes: declare "
            f"its /32 ({peer}/{peer.max_prefixlen}) there, as Azure requires.",
            targets.site_address,
        )


def bgp_connections(tx: Tx, target: str, path: str) -> list[Doc]:
    """The connections with enableBgp that reference `target` at `path` (virtualNetworkGateway1 or
    localNetworkGateway2)."""
    out = []
    for source, ref_path, _t in tx.referrers(target, below=False):
        doc = tx.get(source) if ref_path == path else None
        if doc is not None and doc.body["properties"].get("enableBgp"):
            out.append(doc)
    return out
