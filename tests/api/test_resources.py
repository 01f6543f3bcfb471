"""Tenant API semantics, as a tenant with the Azure docs open would expect them."""

from __future__ import annotations

from tests.conftest import SUB_A, SUB_B, Controller, net, rg, vnet_body


def test_vnet_create_get_update_delete(seeded: Controller) -> None:
    path = net("virtualNetworks", "vnet1")
    body = vnet_body("100.64.0.0/16", subnets={"web": "100.64.1.0/24", "GatewaySubnet": "100.64.255.0/27"})
    created = seeded.call("PUT", path, body)
    assert created.status_code == 201, created.text
    doc = created.json()
    assert doc["id"] == path
    assert doc["type"] == "Microsoft.Network/virtualNetworks"
    assert doc["properties"]["provisioningState"] == "Succeeded"
    assert [s["name"] for s in doc["properties"]["subnets"]] == ["web", "GatewaySubnet"]
    assert doc["properties"]["subnets"][0]["id"] == f"{path}/subnets/web"
    etag = doc["etag"]

    again = seeded.call("PUT", path, {**body, "tags": {"env": "test"}})
    assert again.status_code == 200
    assert again.json()["tags"] == {"env": "test"}
    assert again.json()["etag"] != etag
    assert again.json()["properties"]["resourceGuid"] == doc["properties"]["resourceGuid"]

    got = seeded.call("GET", path)
    assert got.status_code == 200 and got.json() == again.json()

    assert seeded.call("DELETE", path).status_code == 202
    assert seeded.call("GET", path).status_code == 404
    assert seeded.call("DELETE", path).status_code == 204


def test_delete_answers_with_async_operation_that_succeeded(seeded: Controller) -> None:
    path = net("virtualNetworks", "vnet1")
    seeded.call("PUT", path, vnet_body("100.64.0.0/16"))
    deleted = seeded.call("DELETE", path)
    assert deleted.status_code == 202
    status = seeded.client.get(deleted.headers["Azure-AsyncOperation"], headers=seeded.headers(seeded.tenant_a))
    assert status.json()["status"] == "Succeeded"
    result = seeded.client.get(deleted.headers["Location"], headers=seeded.headers(seeded.tenant_a))
    assert result.status_code == 204


def test_paths_are_case_insensitive_and_keep_first_casing(seeded: Controller) -> None:
    seeded.call("PUT", net("virtualNetworks", "MyVnet"), vnet_body("100.64.0.0/16"))
    lower = f"/SUBSCRIPTIONS/{SUB_A}/resourcegroups/RG1/providers/microsoft.network/virtualnetworks/myvnet"
    got = seeded.call("GET", lower)
    assert got.status_code == 200, got.text
    assert got.json()["name"] == "MyVnet"


def test_list_pages_with_next_link(seeded: Controller) -> None:
    for index in range(12):  # page size is 5 in tests
        seeded.call("PUT", net("virtualNetworks", f"v{index:02d}"), vnet_body(f"100.64.{index}.0/24"))
    names: list[str] = []
    url = f"{rg()}/providers/Microsoft.Network/virtualNetworks"
    page = seeded.call("GET", url).json()
    pages = 1
    while True:
        names += [v["name"] for v in page["value"]]
        if "nextLink" not in page:
            break
        page = seeded.client.get(page["nextLink"], headers=seeded.headers(seeded.tenant_a)).json()
        pages += 1
    assert pages == 3
    assert names == [f"v{i:02d}" for i in range(12)]
    everything = seeded.call("GET", f"/subscriptions/{SUB_A}/providers/Microsoft.Network/virtualNetworks").json()
    assert len(everything["value"]) == 5 and "nextLink" in everything


def test_two_subscriptions_may_use_the_same_address_space(seeded: Controller) -> None:
    body = vnet_body("100.64.0.0/16", subnets={"a": "100.64.0.0/24"})
    assert seeded.call("PUT", net("virtualNetworks", "v"), body).status_code == 201
    other = seeded.call("PUT", net("virtualNetworks", "v", sub=SUB_B), body, token=seeded.tenant_b)
    assert other.status_code == 201


def test_etag_preconditions(seeded: Controller) -> None:
    path = net("virtualNetworks", "vnet1")
    etag = seeded.call("PUT", path, vnet_body("100.64.0.0/16")).json()["etag"]
    stale = seeded.call("PUT", path, vnet_body("100.64.0.0/16"), headers={"If-Match": 'W/"stale"'})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "PreconditionFailed"
    fresh = seeded.call("PUT", path, vnet_body("100.64.0.0/16"), headers={"If-Match": etag})
    assert fresh.status_code == 200
    exists = seeded.call("PUT", path, vnet_body("100.64.0.0/16"), headers={"If-None-Match": "*"})
    assert exists.status_code == 412


def test_update_tags_with_patch(seeded: Controller) -> None:
    path = net("virtualNetworks", "vnet1")
    seeded.call("PUT", path, vnet_body("100.64.0.0/16"))
    patched = seeded.call("PATCH", path, {"tags": {"owner": "ops"}})
    assert patched.status_code == 200
    assert patched.json()["tags"] == {"owner": "ops"}
    assert patched.json()["properties"]["addressSpace"]["addressPrefixes"] == ["100.64.0.0/16"]


def test_subnet_child_resource(seeded: Controller) -> None:
    vnet = net("virtualNetworks", "vnet1")
    seeded.call("PUT", vnet, vnet_body("100.64.0.0/16", subnets={"a": "100.64.1.0/24"}))
    created = seeded.call("PUT", f"{vnet}/subnets/b", {"properties": {"addressPrefix": "100.64.2.0/24"}})
    assert created.status_code == 201, created.text
    assert created.json()["id"] == f"{vnet}/subnets/b"
    listed = seeded.call("GET", f"{vnet}/subnets").json()["value"]
    assert [s["name"] for s in listed] == ["a", "b"]
    overlapping = seeded.call("PUT", f"{vnet}/subnets/c", {"properties": {"addressPrefix": "100.64.2.128/25"}})
    assert overlapping.status_code == 400
    assert overlapping.json()["error"]["code"] == "NetcfgSubnetRangesOverlap"
    assert seeded.call("DELETE", f"{vnet}/subnets/b").status_code == 202
    assert seeded.call("GET", f"{vnet}/subnets/b").status_code == 404


def nsg_rule(name: str, priority: int, port: str = "22", direction: str = "Inbound") -> dict[str, object]:
    return {
        "name": name,
        "properties": {
            "protocol": "Tcp",
            "sourcePortRange": "*",
            "destinationPortRange": port,
            "sourceAddressPrefix": "Internet",
            "destinationAddressPrefix": "*",
            "access": "Allow",
            "priority": priority,
            "direction": direction,
        },
    }


def test_nsg_rules_and_defaults(seeded: Controller) -> None:
    path = net("networkSecurityGroups", "nsg1")
    created = seeded.call("PUT", path, {"location": "local", "properties": {"securityRules": [nsg_rule("ssh", 100)]}})
    assert created.status_code == 201, created.text
    props = created.json()["properties"]
    assert [r["name"] for r in props["securityRules"]] == ["ssh"]
    assert props["securityRules"][0]["id"] == f"{path}/securityRules/ssh"
    defaults = {r["name"]: r["properties"]["priority"] for r in props["defaultSecurityRules"]}
    assert defaults == {
        "AllowVnetInBound": 65000,
        "AllowAzureLoadBalancerInBound": 65001,
        "DenyAllInBound": 65500,
        "AllowVnetOutBound": 65000,
        "AllowInternetOutBound": 65001,
        "DenyAllOutBound": 65500,
    }
    rule = seeded.call("PUT", f"{path}/securityRules/web", nsg_rule("web", 110, "80"))
    assert rule.status_code == 201, rule.text
    assert rule.json()["properties"]["destinationPortRange"] == "80"
    default = seeded.call("GET", f"{path}/defaultSecurityRules/DenyAllInBound")
    assert default.status_code == 200
    assert default.json()["properties"]["access"] == "Deny"
    read_only = seeded.call("PUT", f"{path}/defaultSecurityRules/DenyAllInBound", nsg_rule("x", 200))
    assert read_only.status_code in (404, 405)


def test_public_ip_static_gets_an_address_dynamic_only_when_attached(seeded: Controller) -> None:
    static = seeded.call(
        "PUT",
        net("publicIPAddresses", "pip1"),
        {"location": "local", "properties": {"publicIPAllocationMethod": "Static"}},
    )
    assert static.status_code == 201, static.text
    assert static.json()["properties"]["ipAddress"].startswith("203.0.113.")
    dynamic = seeded.call("PUT", net("publicIPAddresses", "pip2"), {"location": "local"})
    assert dynamic.json()["properties"]["publicIPAllocationMethod"] == "Dynamic"
    assert "ipAddress" not in dynamic.json()["properties"]

    seeded.call("PUT", net("virtualNetworks", "v"), vnet_body("100.64.0.0/16", subnets={"a": "100.64.1.0/24"}))
    nic = seeded.call(
        "PUT",
        net("networkInterfaces", "nic1"),
        {
            "location": "local",
            "properties": {
                "ipConfigurations": [
                    {
                        "name": "ipc",
                        "properties": {
                            "subnet": {"id": net("virtualNetworks", "v") + "/subnets/a"},
                            "publicIPAddress": {"id": net("publicIPAddresses", "pip2")},
                        },
                    }
                ]
            },
        },
    )
    assert nic.status_code == 201, nic.text
    config = nic.json()["properties"]["ipConfigurations"][0]["properties"]
    assert config["privateIPAddress"] == "100.64.1.4"  # the first four are Azure's
    attached = seeded.call("GET", net("publicIPAddresses", "pip2")).json()["properties"]
    assert attached["ipAddress"].startswith("203.0.113.")
    assert attached["ipConfiguration"]["id"].lower().endswith("/networkinterfaces/nic1/ipconfigurations/ipc")

    in_use = seeded.call("DELETE", net("publicIPAddresses", "pip2"))
    assert in_use.status_code == 400
    assert in_use.json()["error"]["code"] == "PublicIPAddressCannotBeDeleted"
    assert seeded.call("DELETE", net("networkInterfaces", "nic1")).status_code == 202
    released = seeded.call("GET", net("publicIPAddresses", "pip2")).json()["properties"]
    assert "ipAddress" not in released


def test_nic_static_and_dynamic_private_addresses(seeded: Controller) -> None:
    seeded.call("PUT", net("virtualNetworks", "v"), vnet_body("100.64.0.0/16", subnets={"a": "100.64.1.0/24"}))
    subnet = {"id": net("virtualNetworks", "v") + "/subnets/a"}

    def nic(name: str, **ip: str) -> object:
        config = {"name": "ipc", "properties": {"subnet": subnet, **ip}}
        return seeded.call(
            "PUT",
            net("networkInterfaces", name),
            {"location": "local", "properties": {"ipConfigurations": [config]}},
        )

    static = nic("n1", privateIPAllocationMethod="Static", privateIPAddress="100.64.1.4")
    assert static.status_code == 201, static.text  # type: ignore[attr-defined]
    dynamic = nic("n2")
    assert dynamic.json()["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"] == "100.64.1.5"  # type: ignore[attr-defined]
    taken = nic("n3", privateIPAllocationMethod="Static", privateIPAddress="100.64.1.5")
    assert taken.json()["error"]["code"] == "PrivateIPAddressInUse"  # type: ignore[attr-defined]
    again = nic("n2")
    assert again.json()["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"] == "100.64.1.5"  # type: ignore[attr-defined]
    vnet = seeded.call("GET", net("virtualNetworks", "v")).json()
    users = vnet["properties"]["subnets"][0]["properties"]["ipConfigurations"]
    assert len(users) == 2


def test_resource_group_delete_removes_its_resources(seeded: Controller) -> None:
    seeded.call("PUT", net("virtualNetworks", "v"), vnet_body("100.64.0.0/16", subnets={"a": "100.64.1.0/24"}))
    seeded.call(
        "PUT",
        net("networkInterfaces", "n"),
        {
            "location": "local",
            "properties": {
                "ipConfigurations": [
                    {
                        "name": "ipc",
                        "properties": {"subnet": {"id": net("virtualNetworks", "v") + "/subnets/a"}},
                    }
                ]
            },
        },
    )
    deleted = seeded.call("DELETE", rg(), api_version="2024-11-01")
    assert deleted.status_code == 202
    assert seeded.call("GET", rg(), api_version="2024-11-01").status_code == 404
    assert seeded.call("GET", net("virtualNetworks", "v")).status_code == 404
