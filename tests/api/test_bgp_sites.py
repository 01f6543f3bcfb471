"""BGP with sites through the API: the refusals that change nothing (at PUT of the connection, its local and
its virtual network gateway)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.test_admin_and_agents import declare_fabric, tenant_world
from tests.api.test_connections import _connection_body, _pool_serving_every_type, _tunnel_body
from tests.conftest import Controller, gateway_body, net

GATEWAY = net("virtualNetworkGateways", "gw")
ASN = 65515  # the gateway's (Azure's default)


def bgp_gateway(c: Controller, asn: int = ASN, enable: bool = True) -> Any:
    body = gateway_body(net("virtualNetworks", "v"), net("publicIPAddresses", "gw"))
    body["properties"].update(enableBgp=enable, bgpSettings={"asn": asn})
    return c.call("PUT", GATEWAY, body)


def site(c: Controller, name: str, peer: str, asn: int = 65050, prefixes: tuple[str, ...] = (),
         gateway_ip: str = "198.51.100.21") -> Any:  # fmt: skip
    properties: dict[str, Any] = {"gatewayIpAddress": gateway_ip,
                                  "localNetworkAddressSpace": {"addressPrefixes": list(prefixes)},
                                  "bgpSettings": {"asn": asn, "bgpPeeringAddress": peer}}  # fmt: skip
    return c.call("PUT", net("localNetworkGateways", name), {"location": "local", "properties": properties})


def bgp_connection(kind: str, local: str, **settings: Any) -> dict[str, Any]:
    body = _connection_body(enableBgp=True) if kind == "IPsec" else _tunnel_body(kind, **settings)
    body["properties"]["enableBgp"] = True
    body["properties"]["localNetworkGateway2"] = {"id": net("localNetworkGateways", local)}
    return body


GRE = {"key": 9, "tunnelAddress": "198.19.1.1/30"}
L3 = {"localAddress": "198.19.2.1/30", "nextHop": "198.19.2.2"}


def bgp_world(c: Controller) -> None:
    """The tenant world with BGP on its gateway and three sites that speak it: over GRE, L3 and IPsec."""
    declare_fabric(c)  # the MUX is AS 65001, its ToR AS 65000
    tenant_world(c)
    _pool_serving_every_type(c)
    assert bgp_gateway(c).status_code == 200
    for name, peer, asn, prefixes in (("gre-site", "198.19.1.2", 65050, ()), ("l3-site", "198.19.2.2", 65060, ()),
                                      ("vpn-site", "192.0.2.254", 65070, ("192.0.2.254/32",))):  # fmt: skip
        made = site(c, name, peer, asn, prefixes)
        assert made.status_code == 201, made.text


@pytest.mark.parametrize(
    ("kind", "peer", "settings", "code", "target"),
    [
        ("GRE", "198.19.5.2", GRE, "InvalidBgpPeeringAddress", "properties.localNetworkGateway2"),
        ("GRE", "198.19.1.1", GRE, "InvalidBgpPeeringAddress", "properties.localNetworkGateway2"),
        ("GRE", "198.19.1.2", {"key": 9}, "InvalidBgpPeeringAddress", "properties.greSettings.tunnelAddress"),
        ("L3", "198.19.2.9", L3, "InvalidBgpPeeringAddress", "properties.localNetworkGateway2"),
        ("L3", "198.19.2.1", L3, "InvalidBgpPeeringAddress", "properties.localNetworkGateway2"),
        ("IPsec", "192.0.2.200", {}, "InvalidBgpPeeringAddress", "properties.localNetworkGateway2"),
        ("IPsec", "100.64.1.9", {}, "InvalidBgpPeeringAddress", "properties.localNetworkGateway2"),
    ],
)
def test_a_peering_address_off_the_tunnel_link_or_declared_prefixes_is_refused_and_changes_nothing(
    seeded: Controller, kind: str, peer: str, settings: dict[str, Any], code: str, target: str
) -> None:
    bgp_world(seeded)
    assert site(seeded, "odd", peer, prefixes=("192.0.2.254/32",)).status_code == 201
    before = seeded.dump()
    refused = seeded.call("PUT", net("connections", "bgp"), bgp_connection(kind, "odd", **settings))
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == code and refused.json()["error"]["target"] == target, refused.text
    assert peer in refused.json()["error"]["message"] or "tunnelAddress" in refused.json()["error"]["message"]
    assert seeded.dump() == before


@pytest.mark.parametrize(("kind", "local", "settings"),
                         [("GRE", "gre-site", GRE), ("L3", "l3-site", L3), ("IPsec", "vpn-site", {})])  # fmt: skip
def test_a_bgp_connection_of_each_kind_is_accepted_and_4_byte_asns_too(
    seeded: Controller, kind: str, local: str, settings: dict[str, Any]
) -> None:
    bgp_world(seeded)
    made = seeded.call("PUT", net("connections", "bgp"), bgp_connection(kind, local, **settings))
    assert made.status_code == 201, made.text
    assert made.json()["properties"]["enableBgp"] is True
    peer = seeded.call("GET", net("localNetworkGateways", local)).json()["properties"]["bgpSettings"]
    for asn in (4_200_000_000, 4_294_967_295):  # 4-byte ASNs (Azure Stack Hub has none)
        grown = site(seeded, local, peer["bgpPeeringAddress"], asn, ("192.0.2.254/32",) if kind == "IPsec" else ())
        assert grown.status_code == 200, grown.text
    assert bgp_gateway(seeded, 4_200_000_001).status_code == 200


def test_enable_bgp_needs_bgp_on_the_virtual_network_gateway(seeded: Controller) -> None:
    bgp_world(seeded)
    assert bgp_gateway(seeded, enable=False).status_code == 200
    before = seeded.dump()
    refused = seeded.call("PUT", net("connections", "bgp"), bgp_connection("GRE", "gre-site", **GRE))
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "BgpNotEnabledOnVirtualNetworkGateway"
    assert refused.json()["error"]["target"] == "properties.enableBgp"
    assert seeded.dump() == before


@pytest.mark.parametrize(
    ("asn", "code"),
    [(65001, "BgpAsnConflictsWithFabric"), (65000, "BgpAsnConflictsWithFabric"), (23456, "BgpAsnReserved"),
     (65515, "BgpAsnReserved"), (0, "InvalidRequestFormat"), (4_294_967_296, "InvalidRequestFormat")],
)  # fmt: skip
def test_a_site_asn_of_the_fabric_or_reserved_is_refused(seeded: Controller, asn: int, code: str) -> None:
    bgp_world(seeded)
    before = seeded.dump()
    refused = site(seeded, "gre-site", "198.19.1.2", asn)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == code and refused.json()["error"]["target"] == "properties.bgpSettings.asn"
    assert seeded.dump() == before


@pytest.mark.parametrize(("asn", "code"), [(65001, "BgpAsnConflictsWithFabric"), (65000, "BgpAsnConflictsWithFabric"),
                                           (23456, "BgpAsnReserved")])  # fmt: skip
def test_a_gateway_asn_of_the_fabric_or_reserved_is_refused(seeded: Controller, asn: int, code: str) -> None:
    bgp_world(seeded)
    before = seeded.dump()
    refused = bgp_gateway(seeded, asn)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == code and refused.json()["error"]["target"] == "properties.bgpSettings.asn"
    assert seeded.dump() == before


def test_the_same_asn_on_both_sides_is_refused_wherever_it_is_written(seeded: Controller) -> None:
    """eBGP only: at the connection's PUT, the site's, and the gateway's."""
    bgp_world(seeded)
    assert bgp_gateway(seeded, 65050).status_code == 200  # gre-site's ASN: no BGP connection yet
    before = seeded.dump()
    refused = seeded.call("PUT", net("connections", "bgp"), bgp_connection("GRE", "gre-site", **GRE))
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "BgpAsnSameAsGateway", refused.text
    assert refused.json()["error"]["target"] == "properties.localNetworkGateway2"
    assert seeded.dump() == before
    assert bgp_gateway(seeded, 65100).status_code == 200
    assert seeded.call("PUT", net("connections", "bgp"), bgp_connection("GRE", "gre-site", **GRE)).status_code == 201
    before = seeded.dump()
    on_site = site(seeded, "gre-site", "198.19.1.2", 65100)
    assert on_site.status_code == 400 and on_site.json()["error"]["code"] == "BgpAsnSameAsGateway"
    assert on_site.json()["error"]["target"] == "properties.bgpSettings.asn"
    on_gateway = bgp_gateway(seeded, 65050)
    assert on_gateway.status_code == 400 and on_gateway.json()["error"]["code"] == "BgpAsnSameAsGateway"
    assert on_gateway.json()["error"]["target"] == "properties.bgpSettings.asn"
    assert seeded.dump() == before


def test_what_a_bgp_connection_relies_on_cannot_be_taken_from_under_it(seeded: Controller) -> None:
    bgp_world(seeded)
    assert seeded.call("PUT", net("connections", "bgp"), bgp_connection("GRE", "gre-site", **GRE)).status_code == 201
    before = seeded.dump()
    moved = site(seeded, "gre-site", "198.19.7.2")
    assert moved.status_code == 400 and moved.json()["error"]["code"] == "InvalidBgpPeeringAddress", moved.text
    assert moved.json()["error"]["target"] == "properties.bgpSettings.bgpPeeringAddress"
    space = {"addressPrefixes": ["192.0.2.0/26"]}
    bare = {"location": "local", "properties": {"gatewayIpAddress": "198.51.100.21", "localNetworkAddressSpace": space}}
    dropped = seeded.call("PUT", net("localNetworkGateways", "gre-site"), bare)
    assert dropped.status_code == 400 and dropped.json()["error"]["code"] == "BgpSettingsMissingOnLocalNetworkGateway"
    assert dropped.json()["error"]["target"] == "properties.bgpSettings"
    off = bgp_gateway(seeded, enable=False)
    assert off.status_code == 400 and off.json()["error"]["code"] == "BgpNotEnabledOnVirtualNetworkGateway"
    assert off.json()["error"]["target"] == "properties.enableBgp"
    assert seeded.dump() == before
