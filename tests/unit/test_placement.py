"""M+N placement on hand-made snapshots: actives and standbys, tiers, capacity, reasons."""

from __future__ import annotations

from typing import Any

from isthmus.compile.placement import place
from isthmus.model.snapshot import CONNECTION, GATEWAYS, POOLS, VNET_GATEWAY, Snapshot, build

SUB = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network"


def snapshot(
    pools: dict[str, dict[str, Any]],
    gateways: dict[str, str],
    vnet_gateways: dict[str, str],
    connections: dict[str, tuple[str, str]],
) -> Snapshot:
    documents: dict[str, Any] = {}
    types: dict[str, str] = {}

    def add(key: str, type_: str, body: dict[str, Any]) -> None:
        documents[key.lower()] = body
        types[key.lower()] = type_

    for name, props in pools.items():
        add(f"admin/gatewaypools/{name}", POOLS, {"name": name, "properties": props})
    for name, pool in gateways.items():
        add(f"admin/gateways/{name}", GATEWAYS, {"name": name, "properties": {"node": name, "pool": pool}})
    for name, sku in vnet_gateways.items():
        gid = f"{SUB}/virtualNetworkGateways/{name}"
        add(gid, VNET_GATEWAY, {"id": gid, "properties": {"sku": {"name": sku}}})
    for name, (gateway, kind) in connections.items():
        cid = f"{SUB}/connections/{name}"
        add(
            cid,
            CONNECTION,
            {
                "id": cid,
                "properties": {
                    "connectionType": kind,
                    "virtualNetworkGateway1": {"id": f"{SUB}/virtualNetworkGateways/{gateway}"},
                },
            },
        )
    return build(1, documents, types, {}, {}, {})


def pool(kind: str = "S2sIpsec", n: int = 1, capacity: int = 300_000, tier: int = 100_000) -> dict[str, Any]:
    return {"type": kind, "redundantGatewayCount": n, "gatewayCapacityKbps": capacity, "tierBandwidthKbps": tier}


def test_two_plus_one_spreads_over_actives_and_keeps_the_standby_free() -> None:
    result = place(
        snapshot(
            {"p": pool()},
            {"g1": "p", "g2": "p", "g3": "p"},
            {"a": "Standard", "b": "Standard"},
            {"ca": ("a", "IPsec"), "cb": ("b", "IPsec")},
        )
    )
    assert sorted(p.gateway for p in result.placed) == ["g1", "g2"]
    assert [name for name, _node in result.pools[0].standbys] == ["g3"]


def test_capacity_exhausted_says_so() -> None:
    connections = {f"c{i}": ("a", "IPsec") for i in range(4)}  # 4 x 100 Mbps > 300 Mbps per gateway
    result = place(snapshot({"p": pool()}, {"g1": "p", "g2": "p"}, {"a": "Standard"}, connections))
    assert not result.placed
    assert "capacity exhausted on pool p" in result.unplaced[0].reason


def test_type_and_tier_must_fit() -> None:
    gre_only = place(snapshot({"p": pool("S2sGre")}, {"g1": "p", "g2": "p"}, {"a": "Standard"}, {"c": ("a", "IPsec")}))
    assert "serves connection types" in gre_only.unplaced[0].reason
    wrong_tier = place(snapshot({"p": pool()}, {"g1": "p", "g2": "p"}, {"a": "HighPerformance"}, {}))
    assert "tier" in wrong_tier.unplaced[0].reason


def test_no_active_when_every_gateway_is_a_standby() -> None:
    result = place(snapshot({"p": pool(n=1)}, {"g1": "p"}, {"a": "Standard"}, {}))
    assert "no active gateway" in result.unplaced[0].reason


def test_deterministic() -> None:
    world = snapshot(
        {"p": pool(capacity=1_000_000)},
        {f"g{i}": "p" for i in range(4)},
        {f"v{i}": "Standard" for i in range(6)},
        {f"c{i}": (f"v{i}", "IPsec") for i in range(6)},
    )
    assert place(world).as_json() == place(world).as_json()


def test_a_pool_sold_at_several_tiers_takes_each_and_reserves_each_ones_bandwidth() -> None:
    two_tiers = {**pool(capacity=300_000), "additionalTiersKbps": [200_000]}
    result = place(snapshot({"p": two_tiers}, {"g1": "p", "g2": "p"}, {"a": "HighPerformance", "b": "Standard"},
                            {"ca": ("a", "IPsec"), "cb": ("b", "IPsec")}))  # fmt: skip
    assert sorted(p.virtual_network_gateway.rsplit("/", 1)[1] for p in result.placed) == ["a", "b"]
    assert {p.virtual_network_gateway.rsplit("/", 1)[1]: p.kbps for p in result.placed} == {"a": 200_000, "b": 100_000}
