"""M+N placement, sticky: where each virtual network gateway runs, what has to move, and why.

`plan(snapshot, assignment, states)` takes the stored assignment (VNet gateway -> admin gateway) and
gateway states (role, liveness) and returns the next ones, with every move and its reason:

- A VNet gateway stays where it is while its gateway is Up, InService (or Draining), still in its pool, and
  the pool still serves it (type, tier) with room for it. Adding gateways or VNet gateways moves nothing.
- A Draining gateway keeps what it still carries and is given nothing new: no new VNet gateway, no takeover.
  The controller moves its load one VNet gateway at a time (`drain_step`, api/admin/moves.py).
- What a gateway carried when it goes Down, OutOfService or away moves as a whole onto a standby of its
  pool, which becomes active (M+N takeover); without a standby (or room on it) each VNet gateway goes to
  an active elsewhere, as a new one would.
- A new VNet gateway goes to a pool whose type serves all its connections and whose tier is its SKU's,
  onto the active with the most capacity left that fits all its connections (each takes the tier's kbps; a
  VNet gateway without connections yet holds one tier's worth, as a gateway of that SKU would).
- Roles are explicit and sticky. A pool that carries nothing takes them from name order (the last
  `redundantGatewayCount` by name are standbys). A gateway that joins, or comes back, is a standby while
  its pool has fewer available standbys than that, else an active. A gateway that is not available
  (Failed or OutOfService) is a standby that carries nothing and takes nothing over; a Draining one is an
  active while it carries something, and counts as no standby.

What-ifs for the operator's checks are the same planner with gateways taken out: `leaving` (as if
OutOfService: a drain's targets) and `without` (as if deleted).

Pure and deterministic: everything is visited in sorted order. `place(snapshot)` is the plan of the
snapshot's own stored state, so it is exactly the stored assignment once the controller has persisted
its plan (compile/ and GET /admin/placement use it). Decisions carry reasons: an unplaced VNet gateway
says which constraint failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from isthmus.model.placement import ACTIVE, IN_SERVICE, OUT_OF_SERVICE, STANDBY, UP, Assigned, GatewayState
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
    reason: str = ""  # why it runs there
    moved_from: str | None = None  # the gateway it last moved away from


@dataclass(frozen=True)
class Unplaced:
    virtual_network_gateway: str
    reason: str


@dataclass(frozen=True)
class Member:
    """One gateway of a pool as the operator sees it."""

    name: str
    node: str
    role: str
    service_state: str
    liveness: str


@dataclass
class Pool:
    name: str
    type: str
    tier_kbps: int
    capacity_kbps: int
    actives: list[tuple[str, str]] = field(default_factory=list)  # (gateway name, node)
    standbys: list[tuple[str, str]] = field(default_factory=list)
    redundant: int = 0  # redundantGatewayCount (N)
    members: list[Member] = field(default_factory=list)  # by name


@dataclass(frozen=True)
class Placement:
    placed: tuple[Placed, ...]
    unplaced: tuple[Unplaced, ...]
    pools: tuple[Pool, ...]
    used_kbps: dict[str, int]  # gateway name -> kbps placed on it

    def for_node(self, node: str) -> list[Placed]:
        return [p for p in self.placed if p.node == node]

    def _gateway_json(self, pool: Pool, role: str, name: str, node: str) -> dict[str, Any]:
        member = next((m for m in pool.members if m.name == name), None)
        return {
            "name": name,
            "node": node,
            "role": role,
            "serviceState": member.service_state if member else IN_SERVICE,
            "liveness": member.liveness if member else UP,
            "usedKbps": self.used_kbps.get(name, 0),
            "capacityKbps": pool.capacity_kbps,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "pools": [
                {
                    "name": pool.name,
                    "type": pool.type,
                    "tierBandwidthKbps": pool.tier_kbps,
                    "redundantGatewayCount": pool.redundant,
                    "gateways": [
                        self._gateway_json(pool, role, name, node)
                        for role, members in ((ACTIVE, pool.actives), (STANDBY, pool.standbys))
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
                    "reason": p.reason,
                    "movedFrom": p.moved_from,
                }
                for p in self.placed
            ],
            "unplaced": [
                {"virtualNetworkGateway": u.virtual_network_gateway, "reason": u.reason} for u in self.unplaced
            ],
        }


@dataclass(frozen=True)
class Move:
    """A VNet gateway leaving the gateway that carried it: for another (`target`), or for none."""

    virtual_network_gateway: str  # ARM id
    source: str
    target: str | None
    reason: str


@dataclass(frozen=True)
class RoleChange:
    gateway: str
    role: str
    reason: str


@dataclass(frozen=True)
class Plan:
    assignment: dict[str, Assigned]  # VNet gateway key -> where it runs
    states: dict[str, GatewayState]  # gateway name (lower) -> role, liveness
    moves: tuple[Move, ...]
    roles: tuple[RoleChange, ...]  # gateways whose role (or availability) differs from the stored one
    placement: Placement

    def changes(self, assignment: Mapping[str, Assigned], states: Mapping[str, GatewayState]) -> bool:
        """Whether persisting this plan over the stored `assignment` and `states` writes anything."""
        return dict(assignment) != self.assignment or dict(states) != self.states


def place(snapshot: Snapshot) -> Placement:
    """Where every VNet gateway runs at `snapshot`: its stored assignment, planned forward."""
    return plan(snapshot, snapshot.assignment, snapshot.gateway_states).placement


def stored_state_changed(old: Snapshot, new: Snapshot) -> bool:
    """Whether the stored assignment or gateway states differ between two snapshots."""
    if old.assignment is new.assignment and old.gateway_states is new.gateway_states:
        return False
    return old.assignment != new.assignment or old.gateway_states != new.gateway_states


def plan(
    snapshot: Snapshot,
    assignment: Mapping[str, Assigned],
    states: Mapping[str, GatewayState],
    *,
    leaving: frozenset[str] = frozenset(),
    without: frozenset[str] = frozenset(),
) -> Plan:
    """The next assignment and states. `leaving` (gateway names, lower case) plan as if OutOfService and
    `without` as if deleted: what-ifs, never persisted as such."""
    return _Planner(snapshot, assignment, states, leaving, without).run()


@dataclass(frozen=True)
class DrainStep:
    """What draining one gateway does next: move one VNet gateway (`move`, `assignment` the stored one with
    that entry changed), nothing (it carries nothing: done), and what could go nowhere (`stranded`)."""

    carried: tuple[str, ...]  # the VNet gateway keys it still carries
    move: Move | None
    assignment: dict[str, Assigned]
    stranded: tuple[Unplaced, ...]


def drain_step(
    snapshot: Snapshot, assignment: Mapping[str, Assigned], states: Mapping[str, GatewayState], gateway: str
) -> DrainStep:
    """The next step of draining `gateway`: its first VNet gateway (by id) that has somewhere to go, where
    the planner sends it if the gateway were OutOfService (a standby first, else the active with most room:
    the pool keeps its M+N as a takeover would). Pure; the caller persists `assignment` through `plan`."""
    name = gateway.lower()
    carried = tuple(sorted(k for k, a in assignment.items() if a.gateway.lower() == name))
    what_if = plan(snapshot, assignment, states, leaving=frozenset({name}))
    moves = {m.virtual_network_gateway.lower(): m for m in what_if.moves if m.source.lower() == name}
    stranded = tuple(u for u in what_if.placement.unplaced if u.virtual_network_gateway.lower() in carried)
    stepped = dict(assignment)
    for key in carried:
        move = moves.get(key)
        if move is not None and move.target is not None:
            target = what_if.assignment[key]
            reason = target.reason.replace(f"gateway {move.source} is OutOfService", f"gateway {move.source} is "
                                           "Draining", 1)  # fmt: skip
            stepped[key] = replace(target, reason=reason)
            return DrainStep(carried, replace(move, reason=reason), stepped, stranded)
    return DrainStep(carried, None, stepped, stranded)


def failover_target(
    snapshot: Snapshot, assignment: Mapping[str, Assigned], states: Mapping[str, GatewayState], vnet_gateway: str
) -> tuple[Move, dict[str, Assigned]] | str:
    """A drill: `vnet_gateway` (its key) to its pool's first available standby (which becomes active), else
    to the active with most room (as a new one would be placed), never back onto its own gateway. The move
    and the stored assignment with it, or why it cannot move."""
    key = vnet_gateway.lower()
    current = assignment.get(key)
    if current is None:
        return "it is placed on no gateway"
    planner = _Planner(snapshot, assignment, states, frozenset(), frozenset())
    settled = planner.run()
    if settled.assignment.get(key) != current:
        return "its placement is being planned again: try again"
    vgw = planner.vnet_gateways[key]
    source = planner.gateways.get(current.gateway.lower())
    pool = planner.pool_of.get(source.pool) if source is not None else None
    if source is None or pool is None:
        return f"gateway {current.gateway} no longer exists"
    for standby in pool.accepting(STANDBY):
        if standby.used + vgw.need <= pool.capacity:
            reason = f"failover drill: moved from {source.name} to standby {standby.name}"
            break
    else:
        source.serving = False  # never its own gateway again
        found = planner._best_active(vgw)
        if isinstance(found, str):
            return f"pool {pool.name} has no standby with room for it, and {found}"
        standby, reason = found, f"failover drill: moved from {source.name} to active {found.name}"
    target = Assigned(standby.name, planner.pool_of[standby.pool].name, standby.node, vgw.need, reason, source.name)
    return Move(vgw.id, source.name, standby.name, reason), {**assignment, key: target}


# --- the planner -----------------------------------------------------------------------------------------


@dataclass
class _Gateway:
    name: str
    node: str
    pool: str  # pool key
    service_state: str  # InService | Draining | OutOfService
    liveness: str
    stored: GatewayState | None
    role: str | None = None  # None: joining, decided after takeovers
    used: int = 0
    role_reason: str = ""
    serving: bool = True  # False: takes nothing new (Draining, or a what-if's source)

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def available(self) -> bool:
        """Up and InService or Draining: it keeps what it carries."""
        return self.service_state != OUT_OF_SERVICE and self.liveness == UP

    @property
    def accepting(self) -> bool:
        """Available and not draining: it may be given something new (a VNet gateway, a takeover)."""
        return self.available and self.service_state == IN_SERVICE and self.serving

    @property
    def unavailable_because(self) -> str:
        return f"gateway {self.name} is {self.service_state if self.service_state != IN_SERVICE else self.liveness}"


@dataclass
class _Pool:
    name: str
    type: str
    redundant: int
    capacity: int
    tier: int
    members: list[_Gateway]  # by (name, node)
    tiers: frozenset[int] = frozenset()  # every tier it is sold at (tier among them)

    @property
    def key(self) -> str:
        return self.name.lower()

    def accepting(self, role: str | None) -> list[_Gateway]:
        """The gateways of `role` that may be given something new (a Draining one never is)."""
        return [g for g in self.members if g.accepting and g.role == role]


@dataclass(frozen=True)
class _VnetGateway:
    key: str
    id: str
    sku: str
    tier: int
    connections: tuple[str, ...]
    kinds: frozenset[str]

    @property
    def need(self) -> int:
        return self.tier * max(1, len(self.connections))  # a gateway holds its tier before its first connection


class _Planner:
    def __init__(
        self,
        snapshot: Snapshot,
        assignment: Mapping[str, Assigned],
        states: Mapping[str, GatewayState],
        leaving: frozenset[str],
        without: frozenset[str],
    ) -> None:
        self.pools = _pools(snapshot, states, leaving, without)
        self.pool_of = {pool.key: pool for pool in self.pools}
        self.gateways = {g.key: g for pool in self.pools for g in pool.members}
        self.vnet_gateways = _vnet_gateways(snapshot)
        self.previous = {key: assignment[key] for key in sorted(assignment) if key in self.vnet_gateways}
        self.result: dict[str, Assigned] = {}
        self.unplaced: dict[str, str] = {}
        self.homeless: dict[str, str] = {}  # VNet gateway key -> why it left (for reasons)
        self.takeovers: dict[tuple[str, str], tuple[str, str, list[_VnetGateway]]] = {}

    def run(self) -> Plan:
        for pool in self.pools:
            self._sticky_roles(pool)
        self._keep_what_stays()
        self._take_over()
        busy = {self.gateways[a.gateway.lower()].pool for a in self.result.values()}
        for pool in self.pools:
            self._join(pool)
            if pool.key not in busy:
                self._roles_by_name(pool)
        for key in sorted(set(self.vnet_gateways) - set(self.result)):
            self._place_one(self.vnet_gateways[key], self.homeless.get(key))
        return self._plan()

    def _sticky_roles(self, pool: _Pool) -> None:
        for g in pool.members:
            if not g.available:
                g.role, g.role_reason = STANDBY, f"{g.unavailable_because}: it carries nothing"
            elif not g.accepting:  # Draining: active again below while it still carries something
                g.role, g.role_reason = STANDBY, f"{g.unavailable_because}: it takes nothing new"
            elif g.stored is not None and g.stored.available:
                g.role = g.stored.role  # else None: it joins (new, or back from Down/OutOfService)

    def _roles_by_name(self, pool: _Pool) -> None:
        """A pool that carries nothing: the last N available gateways by name are standbys. (Never more
        actives than sticky roles give, so this cannot make room for what is left unplaced.)"""
        available = [g for g in pool.members if g.accepting]
        split = max(0, len(available) - pool.redundant)
        for index, g in enumerate(available):
            g.role = ACTIVE if index < split else STANDBY
            g.role_reason = f"pool {pool.name} carries nothing: the last {pool.redundant} by name are standbys"

    def _keep_what_stays(self) -> None:
        """Everything on an available gateway of the pool it was placed in, served and with room, stays."""
        staying: dict[str, list[tuple[_VnetGateway, Assigned]]] = {}
        for key, a in self.previous.items():
            vgw = self.vnet_gateways[key]
            g = self.gateways.get(a.gateway.lower())
            if g is None:
                self._leaves(vgw, a, f"gateway {a.gateway} was removed")
            elif g.pool != a.pool.lower():
                self._leaves(vgw, a, f"gateway {g.name} left pool {a.pool}")
            elif not g.available:
                self._leaves(vgw, a, g.unavailable_because)
            elif (why := _unserved(self.pool_of[g.pool], vgw)) is not None:
                self.homeless[key] = why
            else:
                staying.setdefault(g.key, []).append((vgw, a))
        for name in sorted(staying):
            g = self.gateways[name]
            pool = self.pool_of[g.pool]
            # What did not grow keeps its place first: a VNet gateway that grew is the one to move.
            for vgw, a in sorted(staying[name], key=lambda e: (e[0].need > e[1].kbps, e[0].key)):
                if g.used + vgw.need > pool.capacity:
                    free = pool.capacity - g.used
                    self.homeless[vgw.key] = f"gateway {g.name} has no room left for it ({free} kbps free)"
                    continue
                self._assign(vgw, g, a.reason, a.moved_from)
                if g.role != ACTIVE:
                    g.role, g.role_reason = ACTIVE, "it carries virtual network gateways"

    def _leaves(self, vgw: _VnetGateway, a: Assigned, why: str) -> None:
        """`vgw` loses its gateway: it goes with the rest of that gateway's load to a standby if it can."""
        group = self.takeovers.setdefault((a.pool.lower(), a.gateway.lower()), (a.gateway, why, []))
        group[2].append(vgw)

    def _take_over(self) -> None:
        for (pool_key, _gateway), (source, why, vgws) in sorted(self.takeovers.items()):
            pool = self.pool_of.get(pool_key)
            standby = None
            if pool is not None:
                standby = next(iter(pool.accepting(STANDBY) + pool.accepting(None)), None)
            if standby is None or pool is None:
                for vgw in vgws:
                    self.homeless[vgw.key] = f"{why}, and pool {pool.name if pool else pool_key} has no standby left"
                continue
            standby.role, standby.role_reason = ACTIVE, f"took over from {source} ({why})"
            for vgw in vgws:
                if _unserved(pool, vgw) is None and standby.used + vgw.need <= pool.capacity:
                    self._assign(vgw, standby, f"{why}: moved to standby {standby.name}", source)
                else:
                    self.homeless[vgw.key] = f"{why}, and standby {standby.name} cannot take it"

    def _join(self, pool: _Pool) -> None:
        for g in pool.accepting(None):
            standbys = len(pool.accepting(STANDBY))
            if standbys < pool.redundant:
                g.role = STANDBY
                g.role_reason = f"joined pool {pool.name}, which had {standbys} of {pool.redundant} standbys"
            else:
                g.role, g.role_reason = ACTIVE, f"joined pool {pool.name}, which has its {pool.redundant} standbys"
        surplus = pool.accepting(STANDBY)
        for g in surplus[: max(0, len(surplus) - pool.redundant)]:
            g.role, g.role_reason = ACTIVE, f"pool {pool.name} keeps {pool.redundant} standbys"

    def _place_one(self, vgw: _VnetGateway, why: str | None) -> None:
        """Onto the active with the most capacity left that fits, as any new VNet gateway."""
        found = self._best_active(vgw)
        if isinstance(found, str):
            self.unplaced[vgw.key] = f"{why}; {found}" if why else found
        elif why is None:
            pool = self.pool_of[found.pool].name
            self._assign(vgw, found, f"placed on active {found.name} of pool {pool}, the one with most room left")
        else:
            self._assign(vgw, found, f"{why}: moved to active {found.name}", self.previous[vgw.key].gateway)

    def _best_active(self, vgw: _VnetGateway) -> _Gateway | str:
        """The available active with the most capacity left that fits `vgw`, or why there is none."""
        candidates = [p for p in self.pools if vgw.tier in p.tiers]
        if not candidates:
            return f"no gateway pool is sold at the {vgw.sku} tier ({vgw.tier} kbps)"
        candidates = [p for p in candidates if vgw.kinds <= POOL_SERVES[p.type]]
        if not candidates:
            return f"no {vgw.sku}-tier pool serves connection types {sorted(vgw.kinds)}"
        best: tuple[int, _Gateway] | None = None
        for pool in candidates:
            for g in pool.accepting(ACTIVE):
                left = pool.capacity - g.used
                if left >= vgw.need and (best is None or left > best[0]):
                    best = (left, g)
        if best is not None:
            return best[1]
        if not any(pool.accepting(ACTIVE) for pool in candidates):
            return f"pool {candidates[0].name} has no active gateway"
        most = max(pool.capacity - g.used for pool in candidates for g in pool.accepting(ACTIVE))
        return (f"capacity exhausted on pool {candidates[0].name} (needs {vgw.need} kbps, the most an active "
                f"gateway has left is {most} kbps: {vgw.need - most} kbps short)")  # fmt: skip

    def _assign(self, vgw: _VnetGateway, g: _Gateway, reason: str, moved_from: str | None = None) -> None:
        g.used += vgw.need
        self.result[vgw.key] = Assigned(g.name, self.pool_of[g.pool].name, g.node, vgw.need, reason, moved_from)

    def _plan(self) -> Plan:
        moves = []
        for key, a in self.previous.items():
            now = self.result.get(key)
            if now is None or now.gateway.lower() != a.gateway.lower():
                reason = now.reason if now else self.unplaced[key]
                moves.append(Move(self.vnet_gateways[key].id, a.gateway, now.gateway if now else None, reason))
        states, roles = {}, []
        for name in sorted(self.gateways):
            g = self.gateways[name]
            state = GatewayState(g.role or STANDBY, g.liveness, g.accepting, g.stored.epoch if g.stored else 0)
            states[name] = state
            if g.stored is None or (g.stored.role, g.stored.available) != (state.role, state.available):
                roles.append(RoleChange(g.name, state.role, g.role_reason))
        placed = []
        for key, a in sorted(self.result.items()):
            vgw = self.vnet_gateways[key]
            placed.append(Placed(vgw.id, a.pool, a.gateway, a.node, vgw.connections, a.kbps, a.reason, a.moved_from))
        unplaced = tuple(Unplaced(self.vnet_gateways[k].id, reason) for k, reason in sorted(self.unplaced.items()))
        used = {g.name: g.used for _k, g in sorted(self.gateways.items()) if g.used}
        placement = Placement(tuple(placed), unplaced, tuple(_public(pool) for pool in self.pools), used)
        return Plan(dict(sorted(self.result.items())), states, tuple(moves), tuple(roles), placement)


def _unserved(pool: _Pool, vgw: _VnetGateway) -> str | None:
    """Why `pool` cannot carry `vgw` (tier, connection types), if it cannot."""
    if vgw.tier not in pool.tiers:
        return f"pool {pool.name} is not sold at the {vgw.sku} tier ({vgw.tier} kbps)"
    if not vgw.kinds <= POOL_SERVES[pool.type]:
        return f"pool {pool.name} does not serve connection types {sorted(vgw.kinds - POOL_SERVES[pool.type])}"
    return None


def _pools(
    snapshot: Snapshot, states: Mapping[str, GatewayState], leaving: frozenset[str], without: frozenset[str]
) -> list[_Pool]:
    pools = {
        doc["name"].lower(): _Pool(
            name=doc["name"],
            type=doc["properties"]["type"],
            redundant=doc["properties"].get("redundantGatewayCount", 0),
            capacity=doc["properties"]["gatewayCapacityKbps"],
            tier=doc["properties"]["tierBandwidthKbps"],
            members=[],
            tiers=frozenset(
                [doc["properties"]["tierBandwidthKbps"], *doc["properties"].get("additionalTiersKbps", [])]
            ),
        )
        for _key, doc in snapshot.of_type(POOLS)
    }
    for _key, doc in snapshot.of_type(GATEWAYS):
        props = doc["properties"]
        pool = pools.get(props["pool"].lower())
        if pool is not None and doc["name"].lower() not in without:
            service = props.get("serviceState", IN_SERVICE)
            stored = states.get(doc["name"].lower())
            pool.members.append(
                _Gateway(
                    name=doc["name"],
                    node=props["node"],
                    pool=pool.key,
                    service_state=OUT_OF_SERVICE if doc["name"].lower() in leaving else service,
                    liveness=stored.liveness if stored else UP,
                    stored=stored,
                )
            )
    for pool in pools.values():
        pool.members.sort(key=lambda g: (g.name, g.node))
    return [pools[name] for name in sorted(pools)]


def _vnet_gateways(snapshot: Snapshot) -> dict[str, _VnetGateway]:
    connections: dict[str, list[tuple[str, str]]] = {}
    for _key, doc in snapshot.of_type(CONNECTION):
        gateway = doc["properties"]["virtualNetworkGateway1"]["id"].lower()
        connections.setdefault(gateway, []).append((doc["id"], doc["properties"]["connectionType"]))
    out = {}
    for key, doc in snapshot.of_type(VNET_GATEWAY):
        mine = sorted(connections.get(key, []))
        sku = doc["properties"]["sku"]["name"]
        out[key] = _VnetGateway(
            key=key,
            id=doc["id"],
            sku=sku,
            tier=SKU_MBPS.get(sku, 0) * 1000,
            connections=tuple(c for c, _kind in mine),
            kinds=frozenset(kind for _c, kind in mine),
        )
    return out


def _public(pool: _Pool) -> Pool:
    return Pool(
        name=pool.name,
        type=pool.type,
        tier_kbps=pool.tier,
        capacity_kbps=pool.capacity,
        actives=[(g.name, g.node) for g in pool.members if g.role == ACTIVE],
        standbys=[(g.name, g.node) for g in pool.members if g.role != ACTIVE],
        redundant=pool.redundant,
        members=[Member(g.name, g.node, g.role or STANDBY, g.service_state, g.liveness) for g in pool.members],
    )
