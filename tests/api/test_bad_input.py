"""Bad input: a 4xx ARM error naming the field, and the store byte-for-byte unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import SUB_A, SUB_B, Controller, net, vnet_body

VNET = net("virtualNetworks", "v")
SUBNET = {"id": VNET + "/subnets/a"}
NSG = net("networkSecurityGroups", "nsg")


def rule(name: str = "r1", **overrides: Any) -> dict[str, Any]:
    props = {
        "protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": "22", "sourceAddressPrefix": "*",
        "destinationAddressPrefix": "*", "access": "Allow", "priority": 100, "direction": "Inbound",
    }  # fmt: skip
    props.update(overrides)
    return {"name": name, "properties": props}


def nsg(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"location": "local", "properties": {"securityRules": list(rules)}}


def nic(**ip: Any) -> dict[str, Any]:
    return {
        "location": "local",
        "properties": {"ipConfigurations": [{"name": "ipc", "properties": {"subnet": SUBNET, **ip}}]},
    }


CASES: list[tuple[str, str, str, Any, int, str, str | None]] = [
    (
        "bad CIDR",
        "PUT",
        net("virtualNetworks", "x"),
        vnet_body("100.64.0.0/33"),
        400,
        "InvalidCIDRNotation",
        "properties.addressSpace.addressPrefixes[0]",
    ),
    (
        "host bits set",
        "PUT",
        net("virtualNetworks", "x"),
        vnet_body("100.64.1.0/16"),
        400,
        "InvalidCIDRNotation",
        "properties.addressSpace.addressPrefixes[0]",
    ),
    (
        "address space overlaps itself",
        "PUT",
        net("virtualNetworks", "x"),
        vnet_body("100.64.0.0/16", "100.64.128.0/17"),
        400,
        "VnetAddressSpacesOverlap",
        "properties.addressSpace.addressPrefixes[1]",
    ),
    (
        "subnet outside the space",
        "PUT",
        net("virtualNetworks", "x"),
        vnet_body("100.64.0.0/16", subnets={"a": "100.65.0.0/24"}),
        400,
        "NetcfgSubnetRangeOutsideVnet",
        "properties.subnets[0].properties.addressPrefix",
    ),
    (
        "subnets overlap",
        "PUT",
        net("virtualNetworks", "x"),
        vnet_body("100.64.0.0/16", subnets={"a": "100.64.0.0/24", "b": "100.64.0.128/25"}),
        400,
        "NetcfgSubnetRangesOverlap",
        "properties.subnets[1].properties.addressPrefix",
    ),
    (
        "duplicate subnet names",
        "PUT",
        net("virtualNetworks", "x"),
        {
            "location": "local",
            "properties": {
                "addressSpace": {"addressPrefixes": ["100.64.0.0/16"]},
                "subnets": [
                    {"name": "a", "properties": {"addressPrefix": "100.64.0.0/24"}},
                    {"name": "A", "properties": {"addressPrefix": "100.64.1.0/24"}},
                ],
            },
        },
        400,
        "DuplicateResourceName",
        "properties.subnets[1].name",
    ),
    (
        "unknown field",
        "PUT",
        net("virtualNetworks", "x"),
        {"location": "local", "properties": {"adressSpace": {"addressPrefixes": ["100.64.0.0/16"]}}},
        400,
        "InvalidRequestFormat",
        "properties.adressSpace",
    ),
    (
        "mistyped field",
        "PUT",
        net("virtualNetworks", "x"),
        {"location": "local", "properties": {"addressSpace": {"addressPrefixes": "100.64.0.0/16"}}},
        400,
        "InvalidRequestFormat",
        "properties.addressSpace.addressPrefixes",
    ),
    (
        "missing location",
        "PUT",
        net("virtualNetworks", "x"),
        {"properties": {"addressSpace": {"addressPrefixes": ["100.64.0.0/16"]}}},
        400,
        "LocationRequired",
        "location",
    ),
    ("priority out of range", "PUT", NSG, nsg(rule(priority=99)), 400, "SecurityRuleInvalidPriority", None),
    ("priority above range", "PUT", NSG, nsg(rule(priority=4097)), 400, "SecurityRuleInvalidPriority", None),
    (
        "priority duplicated in a direction",
        "PUT",
        NSG,
        nsg({**rule(), "name": "a"}, {**rule(), "name": "b"}),
        400,
        "SecurityRuleConflict",
        "properties.securityRules[1].properties.priority",
    ),
    (
        "port out of range",
        "PUT",
        NSG,
        nsg(rule(destinationPortRange="65536")),
        400,
        "SecurityRuleInvalidPortRange",
        "properties.securityRules[0].properties.destinationPortRange",
    ),
    (
        "nic on a missing subnet",
        "PUT",
        net("networkInterfaces", "x"),
        {
            "location": "local",
            "properties": {
                "ipConfigurations": [{"name": "ipc", "properties": {"subnet": {"id": VNET + "/subnets/missing"}}}]
            },
        },
        400,
        "InvalidResourceReference",
        "properties.ipConfigurations[0].properties.subnet",
    ),
    (
        "nic on another tenant's subnet",
        "PUT",
        net("networkInterfaces", "x"),
        {
            "location": "local",
            "properties": {
                "ipConfigurations": [
                    {
                        "name": "ipc",
                        "properties": {"subnet": {"id": net("virtualNetworks", "v", sub=SUB_B) + "/subnets/a"}},
                    }
                ]
            },
        },
        400,
        "InvalidResourceReference",
        "properties.ipConfigurations[0].properties.subnet",
    ),
    (
        "static address outside the subnet",
        "PUT",
        net("networkInterfaces", "x"),
        nic(privateIPAllocationMethod="Static", privateIPAddress="100.64.9.9"),
        400,
        "PrivateIPAddressNotInSubnet",
        "properties.ipConfigurations[0].properties.privateIPAddress",
    ),
    (
        "static address Azure reserves",
        "PUT",
        net("networkInterfaces", "x"),
        nic(privateIPAllocationMethod="Static", privateIPAddress="100.64.1.1"),
        400,
        "PrivateIPAddressInReservedRange",
        "properties.ipConfigurations[0].properties.privateIPAddress",
    ),
    (
        "subnet in use cannot be deleted",
        "DELETE",
        VNET + "/subnets/a",
        None,
        400,
        "InUseSubnetCannotBeDeleted",
        None,
    ),
    (
        "nsg in use cannot be deleted",
        "DELETE",
        NSG,
        None,
        400,
        "InUseNetworkSecurityGroupCannotBeDeleted",
        None,
    ),
    ("missing api-version", "GET", VNET, None, 400, "MissingApiVersionParameter", "api-version"),
    ("unknown api-version", "GET", VNET, None, 400, "InvalidApiVersionParameter", "api-version"),
    (
        "missing resource group",
        "PUT",
        net("virtualNetworks", "x", group="nope"),
        vnet_body("100.64.0.0/16"),
        404,
        "ResourceGroupNotFound",
        None,
    ),
    (
        "another tenant's subscription",
        "GET",
        net("virtualNetworks", "v", sub=SUB_B),
        None,
        404,
        "SubscriptionNotFound",
        None,
    ),
    (
        "ipsec connection without a key",
        "PUT",
        net("connections", "c"),
        {
            "location": "local",
            "properties": {
                "connectionType": "IPsec",
                "virtualNetworkGateway1": {"id": net("virtualNetworkGateways", "gw")},
                "localNetworkGateway2": {"id": net("localNetworkGateways", "site")},
            },
        },
        400,
        "SharedKeyRequired",
        "properties.sharedKey",
    ),
    (
        "ikev1",
        "PUT",
        net("connections", "c"),
        {
            "location": "local",
            "properties": {
                "connectionType": "IPsec",
                "connectionProtocol": "IKEv1",
                "sharedKey": "k",
                "virtualNetworkGateway1": {"id": net("virtualNetworkGateways", "gw")},
                "localNetworkGateway2": {"id": net("localNetworkGateways", "site")},
            },
        },
        400,
        "FeatureNotSupported",
        "properties.connectionProtocol",
    ),
    (
        "gateway outside GatewaySubnet",
        "PUT",
        net("virtualNetworkGateways", "gw2"),
        {
            "location": "local",
            "properties": {
                "gatewayType": "Vpn",
                "vpnType": "RouteBased",
                "sku": {"name": "Basic"},
                "ipConfigurations": [
                    {
                        "name": "ipc",
                        "properties": {
                            "subnet": SUBNET,
                            "publicIPAddress": {"id": net("publicIPAddresses", "p2")},
                        },
                    }
                ],
            },
        },
        400,
        "GatewaySubnetRequired",
        "properties.ipConfigurations[0].properties.subnet",
    ),
    (
        "bad local gateway address",
        "PUT",
        net("localNetworkGateways", "x"),
        {
            "location": "local",
            "properties": {
                "gatewayIpAddress": "198.51.100.300",
                "localNetworkAddressSpace": {"addressPrefixes": ["192.0.2.0/24"]},
            },
        },
        400,
        "InvalidGatewayIpAddress",
        "properties.gatewayIpAddress",
    ),
]


def setup_world(c: Controller) -> None:
    """A VNet with a NIC on subnet a, an NSG on it, a gateway with a connection target."""
    ok = [
        c.call("PUT", NSG, nsg()),
        c.call(
            "PUT",
            VNET,
            {
                "location": "local",
                "properties": {
                    "addressSpace": {"addressPrefixes": ["100.64.0.0/16"]},
                    "subnets": [
                        {
                            "name": "a",
                            "properties": {
                                "addressPrefix": "100.64.1.0/24",
                                "networkSecurityGroup": {"id": NSG},
                            },
                        },
                        {"name": "GatewaySubnet", "properties": {"addressPrefix": "100.64.255.0/27"}},
                    ],
                },
            },
        ),
        c.call("PUT", net("networkInterfaces", "n"), nic()),
        c.call("PUT", net("publicIPAddresses", "p"), {"location": "local"}),
        c.call("PUT", net("publicIPAddresses", "p2"), {"location": "local"}),
        c.call(
            "PUT",
            net("virtualNetworkGateways", "gw"),
            {
                "location": "local",
                "properties": {
                    "gatewayType": "Vpn",
                    "vpnType": "RouteBased",
                    "sku": {"name": "Standard"},
                    "ipConfigurations": [
                        {
                            "name": "ipc",
                            "properties": {
                                "subnet": {"id": VNET + "/subnets/GatewaySubnet"},
                                "publicIPAddress": {"id": net("publicIPAddresses", "p")},
                            },
                        }
                    ],
                },
            },
        ),
        c.call(
            "PUT",
            net("localNetworkGateways", "site"),
            {
                "location": "local",
                "properties": {
                    "gatewayIpAddress": "198.51.100.10",
                    "localNetworkAddressSpace": {"addressPrefixes": ["192.0.2.0/24"]},
                },
            },
        ),
    ]
    for response in ok:
        assert response.status_code in (200, 201), response.text


@pytest.mark.parametrize(
    ("what", "method", "path", "body", "status", "code", "target"), CASES, ids=[case[0] for case in CASES]
)
def test_rejected_and_nothing_changed(
    seeded: Controller,
    what: str,
    method: str,
    path: str,
    body: Any,
    status: int,
    code: str,
    target: str | None,
) -> None:
    setup_world(seeded)
    before = seeded.dump()
    version = (
        None if what == "missing api-version" else ("1999-01-01" if what == "unknown api-version" else "2026-03-01")
    )
    response = seeded.call(method, path, body, api_version=version)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    if target is not None:
        assert error["target"] == target
    assert seeded.dump() == before


def test_malformed_json(seeded: Controller) -> None:
    before = seeded.dump()
    response = seeded.client.put(
        VNET,
        params={"api-version": "2026-03-01"},
        content=b"{not json",
        headers={**seeded.headers(seeded.tenant_a), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidRequestFormat"
    assert seeded.dump() == before


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc", "Bearer "])
def test_missing_or_bad_token(seeded: Controller, header: str | None) -> None:
    before = seeded.dump()
    headers = {"Authorization": header} if header is not None else {}
    response = seeded.client.put(
        VNET, params={"api-version": "2026-03-01"}, json=vnet_body("100.64.0.0/16"), headers=headers
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] in ("AuthenticationFailed", "InvalidAuthenticationToken")
    assert seeded.dump() == before


def test_tenant_cannot_see_or_touch_another_tenant(seeded: Controller) -> None:
    setup_world(seeded)
    mine = seeded.call("GET", VNET)
    assert mine.status_code == 200
    theirs = seeded.call("GET", VNET, token=seeded.tenant_b)
    assert theirs.status_code == 404
    assert theirs.json()["error"]["code"] == "SubscriptionNotFound"
    assert seeded.call("DELETE", VNET, token=seeded.tenant_b).status_code == 404
    listing = seeded.call(
        "GET", f"/subscriptions/{SUB_A}/providers/Microsoft.Network/virtualNetworks", token=seeded.tenant_b
    )
    assert listing.status_code == 404
    assert seeded.call("GET", "/admin/gatewayPools", token=seeded.tenant_a).status_code == 403


def test_shared_key_is_write_only(seeded: Controller) -> None:
    setup_world(seeded)
    path = net("connections", "c")
    body = {
        "location": "local",
        "properties": {
            "connectionType": "IPsec",
            "sharedKey": "s3cret-psk",
            "virtualNetworkGateway1": {"id": net("virtualNetworkGateways", "gw")},
            "localNetworkGateway2": {"id": net("localNetworkGateways", "site")},
        },
    }
    created = seeded.call("PUT", path, body)
    assert created.status_code == 201, created.text
    assert "s3cret-psk" not in created.text
    assert "s3cret-psk" not in seeded.call("GET", path).text
    assert "s3cret-psk" not in seeded.call("GET", f"{net('connections', 'c').rsplit('/', 1)[0]}").text
    # A PUT without the key keeps it (the client can never read it back).
    body["properties"].pop("sharedKey")
    assert seeded.call("PUT", path, body).status_code == 200
    assert seeded.call("GET", f"/subscriptions/{SUB_A}/providers/Microsoft.Network/connections").status_code == 200
