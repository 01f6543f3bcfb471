"""IPsec connections through the API: status reported by the gateway carrying them, what the hosts get, the
refusals that change nothing, and a connection whose gateway runs nowhere."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.api.test_admin_and_agents import declare_fabric, register, tenant_world
from tests.conftest import Controller, net

CONNECTION = net("connections", "conn")
POLICY = {
    "saLifeTimeSeconds": 3600,
    "saDataSizeKilobytes": 102400000,
    "ipsecEncryption": "GCMAES256",
    "ipsecIntegrity": "GCMAES256",
    "ikeEncryption": "AES256",
    "ikeIntegrity": "SHA384",
    "dhGroup": "ECP384",
    "pfsGroup": "ECP384",
}


def _carrier(c: Controller) -> tuple[str, str]:
    node = c.admin("GET", "/placement").json()["placed"][0]["node"]
    return node, register(c, node, "gateway", "198.18.0.51")


def _connection_body(**properties: Any) -> dict[str, Any]:
    return {
        "location": "local",
        "properties": {
            "connectionType": "IPsec",
            "sharedKey": "psk",
            "virtualNetworkGateway1": {"id": net("virtualNetworkGateways", "gw")},
            "localNetworkGateway2": {"id": net("localNetworkGateways", "site")},
            **properties,
        },
    }


def test_the_carrying_gateway_reports_status_counters_and_reasons(seeded: Controller) -> None:
    declare_fabric(seeded)
    tenant_world(seeded)
    node, token = _carrier(seeded)
    assert seeded.call("GET", CONNECTION).json()["properties"]["connectionStatus"] == "Unknown"
    report = {
        "connectionStatus": "Connected",
        "ingressBytesTransferred": 1200,
        "egressBytesTransferred": 3400,
        "lastConnectionEstablishedUtcTime": "2026-12-03T12:00:00Z",
        "tunnelConnectionStatus": [
            {
                "tunnel": "100.64.0.0/16==192.0.2.0/24",
                "connectionStatus": "Connected",
                "ingressBytesTransferred": 1200,
                "egressBytesTransferred": 3400,
            }
        ],
    }
    sent = seeded.client.post(
        f"/v1/nodes/{node}/status",
        headers=seeded.headers(token),
        json={"appliedRevision": 1, "connections": {CONNECTION: report}},
    )
    assert sent.status_code == 200, sent.text
    props = seeded.call("GET", CONNECTION).json()["properties"]
    assert props["connectionStatus"] == "Connected" and props["ingressBytesTransferred"] == 1200
    assert (
        props["egressBytesTransferred"] == 3400
        and props["tunnelConnectionStatus"][0]["connectionStatus"] == "Connected"
    )
    assert props["lastConnectionEstablishedUtcTime"] == "2026-12-03T12:00:00Z"
    down = {"connectionStatus": "NotConnected", "reason": "authentication failed: the pre-shared keys differ"}
    sent = seeded.client.post(
        f"/v1/nodes/{node}/status",
        headers=seeded.headers(token),
        json={"appliedRevision": 1, "connections": {CONNECTION: down}},
    )
    assert sent.status_code == 200, sent.text
    props = seeded.call("GET", CONNECTION).json()["properties"]
    assert props["connectionStatus"] == "NotConnected" and "authentication failed" in props["connectionStatusReason"]
    assert "psk" not in seeded.call("GET", CONNECTION).text
    with_events = seeded.admin("GET", f"/events?scope={CONNECTION.split('/')[2]}&limit=100")
    kinds = [e["kind"] for e in with_events.json()["value"]]
    assert "connections.connected" in kinds and "connections.notConnected" in kinds
    assert "psk" not in with_events.text


def test_a_gateway_may_report_only_the_connections_it_carries(seeded: Controller) -> None:
    declare_fabric(seeded)
    tenant_world(seeded)
    node, _token = _carrier(seeded)
    other = next(n for n in ("gw1", "gw2", "gw3") if n != node)
    token = register(seeded, other, "gateway", "198.18.0.52")
    sent = seeded.client.post(
        f"/v1/nodes/{other}/status",
        headers=seeded.headers(token),
        json={"appliedRevision": 1, "connections": {CONNECTION: {"connectionStatus": "Connected"}}},
    )
    assert sent.status_code == 400 and sent.json()["error"]["code"] == "ResourceNotCarriedByNode"
    assert seeded.call("GET", CONNECTION).json()["properties"]["connectionStatus"] == "Unknown"


def test_hosts_route_the_site_through_the_gateway_and_the_vnet_tag_covers_it(seeded: Controller) -> None:
    declare_fabric(seeded)
    tenant_world(seeded)
    node, _gateway_token = _carrier(seeded)
    token = register(seeded, "host1", "host", "198.18.0.11")
    doc = seeded.client.get("/v1/nodes/host1/desired", headers=seeded.headers(token)).json()
    [vnet] = doc["virtualNetworks"]
    [site] = vnet["siteRoutes"]
    assert site["node"] == node and site["prefixes"] == ["192.0.2.0/24"] and site["nextHop"] == "100.64.255.4"
    assert site["vtep"] == "198.18.0.51"


@pytest.mark.parametrize(
    ("change", "code", "target"),
    [
        ({"sharedKey": "clé"}, "InvalidSharedKey", "properties.sharedKey"),
        ({"sharedKey": "k" * 129}, "InvalidRequestFormat", "properties.sharedKey"),
        (
            {"ipsecPolicies": [{**POLICY, "dhGroup": "None"}]},
            "InvalidIpsecPolicy",
            "properties.ipsecPolicies[0].dhGroup",
        ),
        (
            {"ipsecPolicies": [{**POLICY, "ipsecIntegrity": "SHA256"}]},
            "IpsecPolicyGcmMismatch",
            "properties.ipsecPolicies[0].ipsecIntegrity",
        ),
        (
            {"ipsecPolicies": [{**POLICY, "ikeIntegrity": "GCMAES128"}]},
            "IpsecPolicyGcmMismatch",
            "properties.ipsecPolicies[0].ikeIntegrity",
        ),
        (
            {"ipsecPolicies": [{**POLICY, "ikeEncryption": "CHACHA20"}]},
            "InvalidRequestFormat",
            "properties.ipsecPolicies[0].ikeEncryption",
        ),
        (
            {"ipsecPolicies": [{**POLICY, "saLifeTimeSeconds": 299}]},
            "InvalidRequestFormat",
            "properties.ipsecPolicies[0].saLifeTimeSeconds",
        ),
        ({"dpdTimeoutSeconds": 8}, "InvalidRequestFormat", "properties.dpdTimeoutSeconds"),
        (
            {
                "trafficSelectorPolicies": [
                    {"localAddressRanges": ["100.64.0.0/33"], "remoteAddressRanges": ["192.0.2.0/24"]}
                ]
            },
            "InvalidCIDRNotation",
            "properties.trafficSelectorPolicies[0].localAddressRanges[0]",
        ),
    ],
)
def test_bad_connections_are_refused_naming_the_field_and_change_nothing(
    seeded: Controller, change: dict[str, Any], code: str, target: str
) -> None:
    declare_fabric(seeded)
    tenant_world(seeded)
    before = seeded.call("GET", CONNECTION).json()
    refused = seeded.call("PUT", CONNECTION, _connection_body(**change))
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == code and error["target"] == target, error
    assert seeded.call("GET", CONNECTION).json() == before
    fresh = seeded.call("PUT", net("connections", "fresh"), _connection_body(**change))
    assert fresh.status_code == 400 and seeded.call("GET", net("connections", "fresh")).status_code == 404


def test_a_site_overlapping_the_vnet_is_refused(seeded: Controller) -> None:
    declare_fabric(seeded)
    tenant_world(seeded)
    site = {
        "location": "local",
        "properties": {
            "gatewayIpAddress": "198.51.100.30",
            "localNetworkAddressSpace": {"addressPrefixes": ["100.64.8.0/24"]},
        },
    }
    assert seeded.call("PUT", net("localNetworkGateways", "inside"), site).status_code == 201
    body = copy.deepcopy(_connection_body())
    body["properties"]["localNetworkGateway2"] = {"id": net("localNetworkGateways", "inside")}
    refused = seeded.call("PUT", net("connections", "inside"), body)
    assert (
        refused.status_code == 400
        and refused.json()["error"]["code"] == "LocalNetworkAddressSpaceOverlapsVirtualNetwork"
    )
    assert seeded.call("GET", net("connections", "inside")).status_code == 404
    # A local network gateway in use may not grow into its connection's VNet either.
    grown = {
        "location": "local",
        "properties": {
            "gatewayIpAddress": "198.51.100.20",
            "localNetworkAddressSpace": {"addressPrefixes": ["100.64.0.0/24"]},
        },
    }
    refused = seeded.call("PUT", net("localNetworkGateways", "site"), grown)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["target"] == "properties.localNetworkAddressSpace.addressPrefixes[0]"
    prefixes = seeded.call("GET", net("localNetworkGateways", "site")).json()["properties"]["localNetworkAddressSpace"]
    assert prefixes == {"addressPrefixes": ["192.0.2.0/24"]}


def test_a_pool_type_that_cannot_carry_ipsec_is_refused(seeded: Controller) -> None:
    pool = {
        "type": "S2sGre",
        "redundantGatewayCount": 0,
        "gatewayCapacityKbps": 1_000_000,
        "tierBandwidthKbps": 100_000,
    }
    assert seeded.admin("PUT", "/gatewayPools/gre", {"properties": pool}).status_code == 201
    assert seeded.admin("PUT", "/gateways/g1", {"properties": {"node": "g1", "pool": "gre"}}).status_code == 201
    with pytest.raises(AssertionError):
        tenant_world(seeded, bind=False)  # everything but the connection is made
    refused = seeded.call("PUT", CONNECTION, _connection_body())
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "GatewayPoolCannotCarryConnectionType"
    assert "S2sGre" in refused.json()["error"]["message"]


def test_a_shared_key_set_outside_azures_characters_is_refused(seeded: Controller) -> None:
    declare_fabric(seeded)
    tenant_world(seeded)
    refused = seeded.call("PUT", CONNECTION + "/sharedkey", {"value": "tab\there"})
    assert refused.status_code == 400 and refused.json()["error"] == {
        "code": "InvalidSharedKey",
        "message": refused.json()["error"]["message"],
        "target": "value",
    }
    assert seeded.call("GET", CONNECTION + "/sharedkey").json() == {"value": "psk"}


def test_a_connection_whose_gateway_runs_nowhere_is_failed_naming_the_pool_and_the_shortfall(
    seeded: Controller,
) -> None:
    """A pool with room for one connection of the tier: a second one on the gateway needs twice that."""
    pool = {"type": "S2sIpsec", "redundantGatewayCount": 0, "gatewayCapacityKbps": 100_000}
    pool["tierBandwidthKbps"] = 100_000
    assert seeded.admin("PUT", "/gatewayPools/small", {"properties": pool}).status_code == 201
    assert seeded.admin("PUT", "/gateways/g1", {"properties": {"node": "g1", "pool": "small"}}).status_code == 201
    tenant_world(seeded, bind=False)
    assert seeded.call("GET", CONNECTION).json()["properties"]["provisioningState"] == "Succeeded"
    assert seeded.call("PUT", net("connections", "conn2"), _connection_body()).status_code == 201
    for name in ("conn", "conn2"):
        props = seeded.call("GET", net("connections", name)).json()["properties"]
        assert props["provisioningState"] == "Failed" and props["connectionStatus"] == "NotConnected"
        reason = props["connectionStatusReason"]
        assert "pool small" in reason and "needs 200000 kbps" in reason and "100000 kbps short" in reason, reason


def _pool_serving_every_type(c: Controller) -> None:
    pool = c.admin("GET", "/gatewayPools/ipsec").json()
    changed = c.admin("PUT", "/gatewayPools/ipsec", {"properties": {**pool["properties"], "type": "All"}})
    assert changed.status_code == 200, changed.text


def _tunnel_body(kind: str, **settings: Any) -> dict[str, Any]:
    body = _connection_body(connectionType=kind)
    del body["properties"]["sharedKey"]
    body["properties"]["greSettings" if kind == "GRE" else "l3ForwardingSettings"] = settings
    return body


@pytest.mark.parametrize(
    ("kind", "settings", "code", "target"),
    [
        ("GRE", {"key": 7}, "GreKeyInUse", "properties.greSettings.key"),
        ("GRE", {"key": 8, "tunnelAddress": "198.19.200.1/30"}, "InvalidTunnelAddress",
         "properties.greSettings.tunnelAddress"),
        ("GRE", {"key": 8, "tunnelAddress": "100.64.9.1/30"}, "InvalidTunnelAddress",
         "properties.greSettings.tunnelAddress"),
        ("GRE", {"key": 8, "tunnelAddress": "198.19.0.2/30"}, "TunnelAddressOverlaps",
         "properties.greSettings.tunnelAddress"),
        ("GRE", {"key": 8, "tunnelAddress": "198.19.0.5/30", "remoteTunnelAddress": "198.19.0.5"},
         "InvalidTunnelAddress", "properties.greSettings.remoteTunnelAddress"),
        ("GRE", {"key": 8, "remoteTunnelAddress": "198.19.0.6"}, "InvalidTunnelAddress",
         "properties.greSettings.remoteTunnelAddress"),
        ("GRE", {"key": 4294967296}, "InvalidRequestFormat", "properties.greSettings.key"),
        ("L3", {"localAddress": "198.19.1.1/30", "nextHop": "198.19.1.9"}, "InvalidNextHop",
         "properties.l3ForwardingSettings.nextHop"),
        ("L3", {"localAddress": "198.19.0.1/29", "nextHop": "198.19.0.3"}, "TunnelAddressOverlaps",
         "properties.l3ForwardingSettings.localAddress"),
        ("L3", {"localAddress": "203.0.113.1/30", "nextHop": "203.0.113.2"}, "InvalidTunnelAddress",
         "properties.l3ForwardingSettings.localAddress"),
    ],
)  # fmt: skip
def test_bad_gre_and_l3_settings_are_refused_naming_the_field_and_change_nothing(
    seeded: Controller, kind: str, settings: dict[str, Any], code: str, target: str
) -> None:
    """Another connection of the same gateway runs GRE to the same site with key 7 on 198.19.0.0/30."""
    declare_fabric(seeded)
    tenant_world(seeded)
    _pool_serving_every_type(seeded)
    first = seeded.call("PUT", net("connections", "gre1"), _tunnel_body("GRE", key=7, tunnelAddress="198.19.0.1/30"))
    assert first.status_code in (200, 201), first.text
    refused = seeded.call("PUT", net("connections", "second"), _tunnel_body(kind, **settings))
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == code and error["target"] == target, error
    assert seeded.call("GET", net("connections", "second")).status_code == 404
    if code == "GreKeyInUse":
        assert "gre1" in error["message"]


def test_a_second_gre_tunnel_to_the_same_site_with_another_key_is_accepted(seeded: Controller) -> None:
    declare_fabric(seeded)
    tenant_world(seeded)
    _pool_serving_every_type(seeded)
    for name, key, inner in (("gre1", 7, "198.19.0.1/30"), ("gre2", 8, "198.19.0.5/30")):
        done = seeded.call("PUT", net("connections", name), _tunnel_body("GRE", key=key, tunnelAddress=inner))
        assert done.status_code in (200, 201), done.text
    props = seeded.call("GET", net("connections", "gre2")).json()["properties"]
    assert props["greSettings"] == {"key": 8, "checksum": False, "tunnelAddress": "198.19.0.5/30"}
    again = seeded.call("PUT", net("connections", "gre2"), _tunnel_body("GRE", key=8, tunnelAddress="198.19.0.5/30"))
    assert again.status_code == 200, again.text  # a PUT of itself collides with nothing


def test_metrics_show_the_connections_counters_gateways_and_nodes_to_operators_only(seeded: Controller) -> None:
    declare_fabric(seeded)
    tenant_world(seeded)
    node, token = _carrier(seeded)
    report = {"connectionStatus": "Connected", "ingressBytesTransferred": 1200, "egressBytesTransferred": 3400,
              "lastConnectionEstablishedUtcTime": "2026-12-03T12:00:00Z", "shapingDroppedPackets": 7,
              "ingressPackets": 12, "egressPackets": 34}  # fmt: skip
    sent = seeded.client.post(f"/v1/nodes/{node}/status", headers=seeded.headers(token),
                              json={"appliedRevision": 1, "connections": {CONNECTION: report}})  # fmt: skip
    assert sent.status_code == 200, sent.text
    scraped = seeded.client.get("/metrics", headers=seeded.headers(seeded.operator))
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    assert f'direction="in",node="{node}",subscription="' in text and "isthmus_connection_bytes_total{" in text
    assert "1200.0" in text and "3400.0" in text
    assert 'isthmus_connection_shaping_dropped_packets_total{connection="conn"' in text
    assert "isthmus_connection_packets_total{" in text and "34.0" in text
    assert 'isthmus_connection_established_timestamp_seconds{connection="conn"} 1.7962992e+09' in text
    assert 'isthmus_gateway_role{gateway="' in text and 'role="active"' in text and 'role="standby"' in text
    assert 'isthmus_node_revision_lag{node="' in text and "isthmus_request_seconds_bucket" in text
    assert seeded.client.get("/metrics", headers=seeded.headers(seeded.tenant_a)).status_code == 403
    assert seeded.client.get("/metrics").status_code == 401
    assert "psk" not in text  # no shared key, ever
