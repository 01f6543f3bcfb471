"""Documents brought forward change by change equal documents compiled from scratch."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from isthmus.compile.documents import Compiler
from isthmus.model.documents import Document, receive
from isthmus.store.db import reading
from isthmus.store.snapshots import load_snapshot, refresh
from tests.api.test_admin_and_agents import declare_fabric, register
from tests.conftest import Controller, gateway_body, net, vnet_body


def full(c: Controller) -> dict[str, Any]:
    with reading(c.engine) as conn:
        return Compiler(load_snapshot(conn)).all_documents()


def operations(rng: random.Random) -> list[tuple[str, str, Any]]:
    """A bounded, seeded mix of creates, updates and deletes across every kind that reaches a node."""
    ops: list[tuple[str, str, Any]] = []
    for v in range(3):
        ops.append(
            (
                "PUT",
                net("virtualNetworks", f"v{v}"),
                vnet_body(
                    f"100.64.{v}.0/24",
                    subnets={"a": f"100.64.{v}.0/26", "GatewaySubnet": f"100.64.{v}.224/27"},
                ),
            )
        )
    ops.append(
        (
            "PUT",
            net("networkSecurityGroups", "nsg"),
            {
                "location": "local",
                "properties": {
                    "securityRules": [
                        {
                            "name": "ssh",
                            "properties": {
                                "protocol": "Tcp",
                                "sourcePortRange": "*",
                                "destinationPortRange": "22",
                                "sourceAddressPrefix": "*",
                                "destinationAddressPrefix": "*",
                                "access": "Allow",
                                "priority": 100,
                                "direction": "Inbound",
                            },
                        }
                    ]
                },
            },
        )
    )
    for i in range(8):
        v = rng.randrange(3)
        ops.append(("PUT", net("publicIPAddresses", f"p{i}"), {"location": "local"}))
        config: dict[str, Any] = {"subnet": {"id": net("virtualNetworks", f"v{v}") + "/subnets/a"}}
        if rng.random() < 0.6:
            config["publicIPAddress"] = {"id": net("publicIPAddresses", f"p{i}")}
        body: dict[str, Any] = {
            "location": "local",
            "properties": {"ipConfigurations": [{"name": "c", "properties": config}]},
        }
        if rng.random() < 0.3:
            body["properties"]["networkSecurityGroup"] = {"id": net("networkSecurityGroups", "nsg")}
        ops.append(("PUT", net("networkInterfaces", f"n{i}"), body))
        ops.append(("BIND", f"n{i}", f"host{rng.randrange(1, 3)}"))
    ops.append(("PUT", net("publicIPAddresses", "gwip"), {"location": "local"}))
    ops.append(
        (
            "PUT",
            net("virtualNetworkGateways", "gw"),
            gateway_body(net("virtualNetworks", "v0"), net("publicIPAddresses", "gwip")),
        )
    )
    for i in rng.sample(range(8), 4):  # detach, re-tag, delete
        choice = rng.randrange(3)
        if choice == 0:
            ops.append(
                (
                    "PUT",
                    net("networkInterfaces", f"n{i}"),
                    {
                        "location": "local",
                        "properties": {
                            "ipConfigurations": [
                                {
                                    "name": "c",
                                    "properties": {"subnet": {"id": net("virtualNetworks", "v1") + "/subnets/a"}},
                                }
                            ]
                        },
                    },
                )
            )
        elif choice == 1:
            ops.append(("PATCH", net("virtualNetworks", "v2"), {"tags": {"round": str(i)}}))
        else:
            ops.append(("UNBIND", f"n{i}", ""))
            ops.append(("DELETE", net("networkInterfaces", f"n{i}"), None))
    ops.append(
        (
            "PUT",
            net("networkSecurityGroups", "nsg"),
            {
                "location": "local",
                "properties": {
                    "securityRules": [
                        {
                            "name": "web",
                            "properties": {
                                "protocol": "Tcp",
                                "sourcePortRange": "*",
                                "destinationPortRange": "80",
                                "sourceAddressPrefix": "Internet",
                                "destinationAddressPrefix": "*",
                                "access": "Allow",
                                "priority": 110,
                                "direction": "Inbound",
                            },
                        }
                    ]
                },
            },
        )
    )
    for v in range(3):  # a subnet NSG on every VNet, and the address space grows
        ops.append(
            (
                "PUT",
                net("virtualNetworks", f"v{v}"),
                {
                    "location": "local",
                    "properties": {
                        "addressSpace": {"addressPrefixes": [f"100.64.{v}.0/24", f"100.65.{v}.0/24"]},
                        "subnets": [
                            {
                                "name": "a",
                                "properties": {
                                    "addressPrefix": f"100.64.{v}.0/26",
                                    "networkSecurityGroup": {"id": net("networkSecurityGroups", "nsg")},
                                },
                            },
                            {"name": "GatewaySubnet", "properties": {"addressPrefix": f"100.64.{v}.224/27"}},
                        ],
                    },
                },
            )
        )
    return ops


def perform(c: Controller, method: str, path: str, body: Any) -> None:
    """One of `operations`: an API call, or binding a NIC to a host (BIND/UNBIND)."""
    if method == "BIND":
        response = c.admin(
            "PUT",
            f"/portBindings/{path}",
            {"properties": {"networkInterface": net("networkInterfaces", path), "host": body}},
        )
    elif method == "UNBIND":
        response = c.admin("DELETE", f"/portBindings/{path}")
    else:
        response = c.call(method, path, body)
    assert response.status_code < 300, (method, path, response.text)


def test_incremental_equals_full(seeded: Controller) -> None:
    declare_fabric(seeded)
    for node, role, address in (
        ("host1", "host", "198.18.0.11"),
        ("host2", "host", "198.18.0.12"),
        ("mux1", "mux", "198.18.0.21"),
        ("gw1", "gateway", "198.18.0.31"),
    ):
        register(seeded, node, role, address)
    with reading(seeded.engine) as conn:
        compiler = Compiler(load_snapshot(conn))
    for method, path, body in operations(random.Random(7)):
        perform(seeded, method, path, body)
        with reading(seeded.engine) as conn:
            snapshot, changed = refresh(conn, compiler.snapshot)
        compiler.advance(snapshot, changed)
        assert compiler.all_documents() == full(seeded), (method, path)


def test_agents_following_deltas_hold_what_a_full_compile_gives(seeded: Controller) -> None:
    """Every node follows the protocol with deltas after each operation: what it holds equals its document
    compiled from scratch, and a node the operation did not reach is not answered at all."""
    declare_fabric(seeded)
    nodes = {
        "host1": ("host", "198.18.0.11"),
        "host2": ("host", "198.18.0.12"),
        "mux1": ("mux", "198.18.0.21"),
        "gw1": ("gateway", "198.18.0.31"),
    }
    node_tokens = {node: register(seeded, node, role, address) for node, (role, address) in nodes.items()}
    held: dict[str, Document | None] = dict.fromkeys(nodes)
    revisions = dict.fromkeys(nodes, 0)
    deltas_seen = 0
    for method, path, body in operations(random.Random(7)):
        perform(seeded, method, path, body)
        expected = full(seeded)
        for node in nodes:
            answer = seeded.client.get(
                f"/v1/nodes/{node}/desired",
                params={"after": revisions[node], "timeout": 0, "deltas": "true"},
                headers=seeded.headers(node_tokens[node]),
            )
            if answer.status_code == 304:
                assert held[node] is not None
                assert replace(expected[node], revision=0) == replace(held[node], revision=0), (node, method, path)
                continue
            assert answer.status_code == 200, answer.text
            document, deltas = receive(held[node], answer.json())
            deltas_seen += len(deltas)
            assert replace(document, revision=0) == replace(expected[node], revision=0), (node, method, path)
            assert document.revision == int(answer.headers["X-Isthmus-Revision"]) > revisions[node]
            held[node], revisions[node] = document, document.revision
    assert deltas_seen > 10  # the deltas were exercised, not only whole documents
