"""M+N placement: which active gateway of which pool carries each virtual network gateway, and why not.

Per pool, gateways sorted by name: the last `redundantGatewayCount` are standbys, the rest actives.
A virtual network gateway goes to a pool whose type serves all its connections and whose tier is its
SKU's, onto the active with the most capacity left that still fits all its connections (each takes the
pool's tier bandwidth). Decisions carry reasons: an unplaced gateway says which constraint failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from isthmus.model.snapshot import CONNECTION, GATEWAYS, POOLS, VNET_GATEWAY, Snapshot

# Azure Stack Hub's gateway SKUs and Azure's VpnGw family, with the throughput each is sold at (Mbps).
SKU_MBPS = {
    "Basic": 100,
    "Standard": 100,
    "HighPerformance": 200,
    "VpnGw1": 650,
    "VpnGw2": 1000,
    "VpnGw3": 1250,
}
POOL_SERVES = {
    "All": {"IPsec", "GRE", "L3"},
    "S2sIpsec": {"IPsec"},
    "S2sGre": {"GRE"},
    "Forwarding": {"L3"},
}


@dataclass(frozen=True)
class Placed:
    virtual_network_gateway: str  # ARM id
    pool: str
    gateway: str  # the admin gateway object's name
    node: str
    connections: tuple[str, ...]
    kbps: int


@dataclass(frozen=True)
class Unplaced:
    virtual_network_gateway: str
    reason: str


@dataclass
class Pool:
    name: str
    type: str
    tier_kbps: int
    capacity_kbps: int
    actives: list[tuple[str, str]] = field(default_factory=list)  # (gateway name, node)
    standbys: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Placement:
    placed: tuple[Placed, ...]
    unplaced: tuple[Unplaced, ...]
    pools: tuple[Pool, ...]
    used_kbps: dict[str, int]  # gateway name -> kbps placed on it

    def for_node(self, node: str) -> list[Placed]:
        return [p for p in self.placed if p.node == node]

    def as_json(self) -> dict[str, Any]:
        return {
            "pools": [
                {
                    "name": pool.name,
                    "type": pool.type,
                    "tierBandwidthKbps": pool.tier_kbps,
                    "gateways": [
                        {
                            "name": name,
                            "node": node,
                            "role": role,
                            "usedKbps": self.used_kbps.get(name, 0),
                            "capacityKbps": pool.capacity_kbps,
                        }
                        for role, members in (("active", pool.actives), ("standby", pool.standbys))
                        for name, node in members
                    ],
                }
                for pool in self.pools
            ],
            "placed": [
                {
                    "virtualNetworkGateway": p.virtual_network_gateway,
                    "pool": p.pool,
                    "gateway": p.gateway,
                    "node": p.node,
                    "connections": list(p.connections),
                    "kbps": p.kbps,
                }
                for p in self.placed
            ],
            "unplaced": [
                {"virtualNetworkGateway": u.virtual_network_gateway, "reason": u.reason} for u in self.unplaced
            ],
        }


def pools_of(snapshot: Snapshot) -> list[Pool]:
    pools = {
        doc["name"].lower(): Pool(
            name=doc["name"],
            type=doc["properties"]["type"],
            tier_kbps=doc["properties"]["tierBandwidthKbps"],
            capacity_kbps=doc["properties"]["gatewayCapacityKbps"],
        )
        for _key, doc in snapshot.of_type(POOLS)
    }
    members: dict[str, list[tuple[str, str]]] = {name: [] for name in pools}
    for _key, doc in snapshot.of_type(GATEWAYS):
        pool = doc["properties"]["pool"].lower()
        if pool in members:
            members[pool].append((doc["name"], doc["properties"]["node"]))
    for name, pool in pools.items():
        ordered = sorted(members[name])
        redundant = next(
            d["properties"].get("redundantGatewayCount", 0)
            for k, d in snapshot.of_type(POOLS)
            if d["name"].lower() == name
        )
        split = max(0, len(ordered) - redundant)
        pool.actives, pool.standbys = ordered[:split], ordered[split:]
    return [pools[name] for name in sorted(pools)]


def place(snapshot: Snapshot) -> Placement:
    pools = pools_of(snapshot)
    connections: dict[str, list[tuple[str, str]]] = {}
    for _key, doc in snapshot.of_type(CONNECTION):
        gateway = doc["properties"]["virtualNetworkGateway1"]["id"].lower()
        connections.setdefault(gateway, []).append((doc["id"], doc["properties"]["connectionType"]))
    used: dict[str, int] = {}
    placed: list[Placed] = []
    unplaced: list[Unplaced] = []
    for key, doc in snapshot.of_type(VNET_GATEWAY):
        mine = sorted(connections.get(key, []))
        result = _place_one(doc, mine, pools, used)
        if isinstance(result, Placed):
            used[result.gateway] = used.get(result.gateway, 0) + result.kbps
            placed.append(result)
        else:
            unplaced.append(result)
    return Placement(tuple(placed), tuple(unplaced), tuple(pools), used)


def _place_one(
    doc: Any, connections: list[tuple[str, str]], pools: list[Pool], used: dict[str, int]
) -> Placed | Unplaced:
    gateway_id = doc["id"]
    sku = doc["properties"]["sku"]["name"]
    tier = SKU_MBPS.get(sku, 0) * 1000
    kinds = {kind for _id, kind in connections}
    candidates = [p for p in pools if p.tier_kbps == tier]
    if not candidates:
        return Unplaced(gateway_id, f"no gateway pool is sold at the {sku} tier ({tier} kbps)")
    candidates = [p for p in candidates if kinds <= POOL_SERVES[p.type]]
    if not candidates:
        return Unplaced(gateway_id, f"no {sku}-tier pool serves connection types {sorted(kinds)}")
    need = tier * len(connections)
    best: tuple[int, Pool, str, str] | None = None
    for pool in candidates:
        if not pool.actives:
            continue
        for name, node in pool.actives:
            left = pool.capacity_kbps - used.get(name, 0)
            if left >= need and (best is None or left > best[0]):
                best = (left, pool, name, node)
    if best is None:
        if not any(pool.actives for pool in candidates):
            return Unplaced(gateway_id, f"pool {candidates[0].name} has no active gateway")
        return Unplaced(gateway_id, f"capacity exhausted on pool {candidates[0].name} (needs {need} kbps)")
    _left, pool, name, node = best
    return Placed(gateway_id, pool.name, name, node, tuple(c for c, _k in connections), need)
