"""If-Match / If-None-Match on every write, as ARM has them: an unmet condition is a 412 with an ARM body
and changes nothing. Each case used to be ignored (a conditional delete deleted unconditionally)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Controller, net, rg, vnet_body

VNET = net("virtualNetworks", "v")
SUBNET = VNET + "/subnets/a"
NSG = net("networkSecurityGroups", "nsg")
RULE = NSG + "/securityRules/r1"
STALE = 'W/"00000000-0000-0000-0000-000000000000"'
GROUPS = "2024-11-01"


def rule_body() -> dict[str, Any]:
    return {"properties": {"protocol": "Tcp", "sourcePortRange": "*", "destinationPortRange": "22",
            "sourceAddressPrefix": "*", "destinationAddressPrefix": "*", "access": "Allow", "priority": 100,
            "direction": "Inbound"}}  # fmt: skip


@pytest.fixture
def world(seeded: Controller) -> Controller:
    assert seeded.call("PUT", VNET, vnet_body("100.64.0.0/16", subnets={"a": "100.64.1.0/24"})).status_code == 201
    assert seeded.call("PUT", NSG, {"location": "local", "properties": {"securityRules": [
        {"name": "r1", **rule_body()}]}}).status_code == 201  # fmt: skip
    return seeded


def etag(c: Controller, path: str) -> str:
    return str(c.call("GET", path).json()["etag"])


WRITES: list[tuple[str, str, str, Any, str | None]] = [
    # (case, method, path, body, api-version: None for Microsoft.Network's)
    ("delete", "DELETE", VNET, None, None),
    ("patch tags", "PATCH", VNET, {"tags": {"a": "b"}}, None),
    ("put", "PUT", VNET, vnet_body("100.64.0.0/16", subnets={"a": "100.64.1.0/24"}), None),
    ("child put", "PUT", SUBNET, {"properties": {"addressPrefix": "100.64.1.0/24"}}, None),
    ("child delete", "DELETE", SUBNET, None, None),
    ("rule put", "PUT", RULE, rule_body(), None),
    ("rule delete", "DELETE", RULE, None, None),
    ("group put", "PUT", rg(), {"location": "local"}, GROUPS),
    ("group delete", "DELETE", rg(), None, GROUPS),
]


def call(c: Controller, method: str, path: str, body: Any, version: str | None, headers: dict[str, str]) -> Any:
    kwargs: dict[str, Any] = {"headers": headers}
    if version is not None:
        kwargs["api_version"] = version
    return c.call(method, path, body, **kwargs)


@pytest.mark.parametrize(("case", "method", "path", "body", "version"), WRITES, ids=[w[0] for w in WRITES])
def test_stale_if_match_is_412_and_changes_nothing(
    world: Controller, case: str, method: str, path: str, body: Any, version: str | None
) -> None:
    before = world.dump()
    response = call(world, method, path, body, version, {"If-Match": STALE})
    assert response.status_code == 412, (case, response.text)
    assert response.json()["error"]["code"] == "PreconditionFailed"
    assert world.dump() == before


@pytest.mark.parametrize(("case", "method", "path", "body", "version"), WRITES[:7], ids=[w[0] for w in WRITES[:7]])
def test_current_etag_matches(
    world: Controller, case: str, method: str, path: str, body: Any, version: str | None
) -> None:
    parent = path.split("/subnets/")[0].split("/securityRules/")[0]
    response = call(world, method, path, body, version, {"If-Match": etag(world, parent)})
    assert response.status_code in (200, 201, 202), (case, response.text)


@pytest.mark.parametrize("path", [SUBNET, RULE, VNET])
def test_if_none_match_star_refuses_to_overwrite(world: Controller, path: str) -> None:
    body = {
        SUBNET: {"properties": {"addressPrefix": "100.64.1.0/24"}},
        RULE: rule_body(),
        VNET: vnet_body("100.64.0.0/16", subnets={"a": "100.64.1.0/24"}),
    }[path]
    before = world.dump()
    response = world.call("PUT", path, body, headers={"If-None-Match": "*"})
    assert response.status_code == 412, response.text
    assert world.dump() == before
    fresh = path.rsplit("/", 1)[0] + "/new" if path != VNET else net("virtualNetworks", "new")
    if path == SUBNET:
        body = {"properties": {"addressPrefix": "100.64.2.0/24"}}
    if path == RULE:
        body = {"properties": {**rule_body()["properties"], "priority": 200}}
    assert world.call("PUT", fresh, body, headers={"If-None-Match": "*"}).status_code == 201


def test_if_match_on_a_missing_resource_is_412(world: Controller) -> None:
    before = world.dump()
    response = world.call("DELETE", net("virtualNetworks", "missing"), headers={"If-Match": "*"})
    assert response.status_code == 412
    assert world.call("DELETE", net("virtualNetworks", "missing")).status_code == 204
    assert world.dump() == before


def test_admin_writes_honour_conditions(world: Controller) -> None:
    pool = "/admin/publicIpPools/pool1"
    headers = {**world.headers(world.operator), "If-Match": STALE}
    before = world.dump()
    body = {"properties": {"addressPrefixes": ["203.0.113.0/24"]}}
    assert world.client.put(pool, json=body, headers=headers).status_code == 412
    assert world.client.delete(pool, headers=headers).status_code == 412
    assert world.dump() == before
    current = world.admin("GET", "/publicIpPools/pool1").json()["etag"]
    headers["If-Match"] = current
    assert world.client.put(pool, json=body, headers=headers).status_code == 200
