"""One public IP for all pools through the API: the operator shares an address on two pools (allocated, then
named), tenants see it as their gateway's tunnel endpoint, the MUXes get the steering, and connections that
could not be told apart on it are refused (409, nothing stored, the other tenant not named; the operator's
event names both)."""

from __future__ import annotations

from typing import Any

from tests.api.test_admin_and_agents import register
from tests.conftest import SUB_A, SUB_B, Controller, gateway_body, net, vnet_body

SITE = "198.51.100.20"


def pool(tier: int, **shared: Any) -> dict[str, Any]:
    props = {"type": "All", "redundantGatewayCount": 1, "gatewayCapacityKbps": 1_000_000, "tierBandwidthKbps": tier}
    return {"properties": {**props, **shared}}


def shared_fabric(c: Controller, share_b: bool = True) -> str:
    """Pools a (Standard) and b (HighPerformance), two gateways each; a's address allocated, b naming it."""
    made = c.admin("PUT", "/gatewayPools/a", pool(100_000, publicIpAllocationMethod="Dynamic"))
    assert made.status_code == 201, made.text
    address: str = made.json()["properties"]["publicIpAddress"]
    assert address.startswith("203.0.113.")
    again = c.admin("PUT", "/gatewayPools/a", pool(100_000, publicIpAllocationMethod="Dynamic"))
    assert again.json()["properties"]["publicIpAddress"] == address  # kept while Dynamic
    made = c.admin("PUT", "/gatewayPools/b", pool(200_000, **({"publicIpAddress": address} if share_b else {})))
    assert made.status_code == 201, made.text
    for name, pool_name in (("gw1", "a"), ("gw2", "a"), ("gw3", "b"), ("gw4", "b")):
        assert c.admin("PUT", f"/gateways/{name}", {"properties": {"node": name, "pool": pool_name}}).status_code == 201
    mux = {"node": "mux1", "asn": 65001, "routerId": "198.18.0.21", "peers": [{"address": "198.18.0.1", "asn": 65000}]}
    assert c.admin("PUT", "/loadBalancerMuxes/mux1", {"properties": mux}).status_code == 201
    return address


def tenant(c: Controller, sub: str, sku: str, token: str) -> None:
    """A VNet with a gateway of `sku` (its pool by tier) in subscription `sub`."""
    vnet = net("virtualNetworks", "v", sub)
    calls = [
        (vnet, vnet_body("100.64.0.0/16", subnets={"a": "100.64.1.0/24", "GatewaySubnet": "100.64.255.0/27"})),
        (net("publicIPAddresses", "gw", sub), {"location": "local"}),
        (net("virtualNetworkGateways", "gw", sub), gateway_body(vnet, net("publicIPAddresses", "gw", sub), sku)),
    ]
    for path, body in calls:
        response = c.call("PUT", path, body, token=token)
        assert response.status_code == 201, response.text


def site(c: Controller, sub: str, token: str, name: str, address: str = SITE) -> Any:
    space = {"addressPrefixes": ["192.0.2.0/26"]}
    body = {"location": "local", "properties": {"gatewayIpAddress": address, "localNetworkAddressSpace": space}}
    return c.call("PUT", net("localNetworkGateways", name, sub), body, token=token)


def connection(c: Controller, sub: str, token: str, name: str, local: str, gre_key: int | None = None,
               kind: str = "IPsec") -> Any:  # fmt: skip
    props: dict[str, Any] = {
        "connectionType": kind,
        "virtualNetworkGateway1": {"id": net("virtualNetworkGateways", "gw", sub)},
        "localNetworkGateway2": {"id": net("localNetworkGateways", local, sub)},
    }
    if kind == "IPsec":
        props["sharedKey"] = f"psk-{name}"
    elif gre_key is not None:
        props["greSettings"] = {"key": gre_key}
    return c.call("PUT", net("connections", name, sub), {"location": "local", "properties": props}, token=token)


def two_tenants(c: Controller, share_b: bool = True) -> str:
    address = shared_fabric(c, share_b)
    tenant(c, SUB_A, "Standard", c.tenant_a)
    tenant(c, SUB_B, "HighPerformance", c.tenant_b)
    for sub, token in ((SUB_A, c.tenant_a), (SUB_B, c.tenant_b)):
        assert site(c, sub, token, "site").status_code == 201
    return address


def without_events(dump: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """The store but the operator's events (and the revision their write takes)."""
    return {table: rows for table, rows in dump.items() if table not in ("events", "revision")}


def test_tenants_see_the_shared_address_and_the_muxes_steer_by_site(seeded: Controller) -> None:
    address = two_tenants(seeded)
    assert connection(seeded, SUB_A, seeded.tenant_a, "ca", "site").status_code == 201
    assert site(seeded, SUB_B, seeded.tenant_b, "other", "198.51.100.21").status_code == 201
    assert connection(seeded, SUB_B, seeded.tenant_b, "cb", "other").status_code == 201
    gateway = seeded.call("GET", net("virtualNetworkGateways", "gw", SUB_A)).json()
    [peering] = gateway["properties"]["bgpSettings"]["bgpPeeringAddresses"]
    assert peering["tunnelIpAddresses"] == [address]
    script = seeded.call(
        "POST", net("connections", "ca") + "/vpndeviceconfigurationscript", {}, token=seeded.tenant_a
    ).json()
    assert f"remote_addrs = {address}" in script and f"id = {address}" in script
    for node, at in (("gw1", "198.18.0.51"), ("gw2", "198.18.0.52"), ("gw3", "198.18.0.53"), ("gw4", "198.18.0.54")):
        register(seeded, node, "gateway", at)
    token = register(seeded, "mux1", "mux", "198.18.0.21")
    mux = seeded.client.get("/v1/nodes/mux1/desired", headers=seeded.headers(token)).json()
    steering = {(s["site"], s["protocol"]): s["nextHop"] for s in mux["steering"]}
    assert steering == {(SITE, "ipsec"): "198.18.0.51", ("198.51.100.21", "ipsec"): "198.18.0.53"}
    assert all(s["vip"] == address for s in mux["steering"])
    assert "psk-" not in str(mux)


def test_a_second_tenant_from_the_same_site_address_is_refused_and_nothing_is_stored(seeded: Controller) -> None:
    address = two_tenants(seeded)
    assert connection(seeded, SUB_A, seeded.tenant_a, "ca", "site").status_code == 201
    before = without_events(seeded.dump())
    refused = connection(seeded, SUB_B, seeded.tenant_b, "cb", "site")
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "SharedPublicIpAddressConflict" and error["target"] == "properties.localNetworkGateway2"
    assert "conflicts with another connection on the shared address" in error["message"] and address in error["message"]
    assert SUB_A not in refused.text and "ca" not in error["message"].replace("cb", "")  # the other tenant unnamed
    assert without_events(seeded.dump()) == before
    events = seeded.admin("GET", "/events?scope=admin&limit=100").json()["value"]
    [event] = [e for e in events if e["kind"] == "sharedPublicIp.conflict"]
    assert net("connections", "ca", SUB_A) in event["message"] and net("connections", "cb", SUB_B) in event["message"]
    assert "psk" not in str(events)


def test_gre_keys_tell_tenants_apart_and_a_missing_or_equal_key_does_not(seeded: Controller) -> None:
    two_tenants(seeded)
    assert connection(seeded, SUB_A, seeded.tenant_a, "ga", "site", 7, "GRE").status_code == 201
    assert connection(seeded, SUB_B, seeded.tenant_b, "gb", "site", 8, "GRE").status_code == 201  # another key
    for key in (7, None):
        refused = connection(seeded, SUB_B, seeded.tenant_b, "gc", "site", key, "GRE")
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "SharedPublicIpAddressConflict"
    assert connection(seeded, SUB_B, seeded.tenant_b, "ipsec", "site").status_code == 201  # IPsec is not GRE


def test_a_site_address_changed_into_a_collision_is_refused(seeded: Controller) -> None:
    two_tenants(seeded)
    assert connection(seeded, SUB_A, seeded.tenant_a, "ca", "site").status_code == 201
    assert site(seeded, SUB_B, seeded.tenant_b, "other", "198.51.100.21").status_code == 201
    assert connection(seeded, SUB_B, seeded.tenant_b, "cb", "other").status_code == 201
    moved = site(seeded, SUB_B, seeded.tenant_b, "other", SITE)
    assert moved.status_code == 409 and moved.json()["error"]["target"] == "properties.gatewayIpAddress"
    assert (
        seeded.call("GET", net("localNetworkGateways", "other", SUB_B), token=seeded.tenant_b).json()["properties"][
            "gatewayIpAddress"
        ]
        == "198.51.100.21"
    )


def test_the_operator_cannot_share_an_address_that_would_collide_or_is_taken(seeded: Controller) -> None:
    address = two_tenants(seeded, share_b=False)  # b has its own addresses: the same site on both is fine
    assert connection(seeded, SUB_A, seeded.tenant_a, "ca", "site").status_code == 201
    assert connection(seeded, SUB_B, seeded.tenant_b, "cb", "site").status_code == 201
    refused = seeded.admin("PUT", "/gatewayPools/b", pool(200_000, publicIpAddress=address))
    assert refused.status_code == 409, refused.text
    message = refused.json()["error"]["message"]
    assert net("connections", "ca", SUB_A) in message and net("connections", "cb", SUB_B) in message
    assert "publicIpAddress" not in seeded.admin("GET", "/gatewayPools/b").json()["properties"]
    tenant_ip = seeded.call("GET", net("publicIPAddresses", "gw", SUB_A)).json()["properties"]["ipAddress"]
    taken = seeded.admin("PUT", "/gatewayPools/b", pool(200_000, publicIpAddress=tenant_ip))
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "PublicIPAddressInUse"
    outside = seeded.admin("PUT", "/gatewayPools/b", pool(200_000, publicIpAddress="198.51.100.99"))
    assert outside.status_code == 400 and outside.json()["error"]["code"] == "PublicIPAddressNotInPool"


def test_the_shared_address_is_released_when_no_pool_shares_it(seeded: Controller) -> None:
    address = shared_fabric(seeded)
    for name in ("gw3", "gw4"):
        assert seeded.admin("DELETE", f"/gateways/{name}?force=true").status_code == 200
    assert seeded.admin("DELETE", "/gatewayPools/b").status_code == 200
    assert seeded.admin("PUT", "/gatewayPools/a", pool(100_000)).status_code == 200  # no longer shared
    again = seeded.admin("PUT", "/gatewayPools/c", pool(300_000, publicIpAddress=address))
    assert again.status_code == 201, again.text  # free again, claimable
