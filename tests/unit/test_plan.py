"""Sticky M+N planning as properties: random pools, gateways and VNet gateways, changed one step at a time.

Each step plans from the previous step's plan (as the controller does from the stored assignment) and
checks what that step may and may not move.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.compile.placement import Plan, drain_step, failover_target, plan
from isthmus.model.placement import ACTIVE, FAILED, STANDBY, UP, Assigned, GatewayState
from isthmus.model.snapshot import CONNECTION, GATEWAYS, POOLS, VNET_GATEWAY, Snapshot, build

SUB = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network"


def vgw_key(name: str) -> str:
    return f"{SUB}/virtualNetworkGateways/{name}".lower()


@dataclass
class World:
    pools: dict[str, dict[str, Any]]
    gateways: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (pool, serviceState)
    vnet_gateways: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # name -> (SKU, kinds)

    def snapshot(self, shuffle: int | None = None) -> Snapshot:
        entries: list[tuple[str, str, dict[str, Any]]] = []
        for name, props in self.pools.items():
            entries.append((f"admin/gatewaypools/{name}", POOLS, {"name": name, "properties": props}))
        for name, (pool, service) in self.gateways.items():
            props = {"node": f"node-{name}", "pool": pool, "serviceState": service}
            entries.append((f"admin/gateways/{name}", GATEWAYS, {"name": name, "properties": props}))
        for name, (sku, kinds) in self.vnet_gateways.items():
            gid = f"{SUB}/virtualNetworkGateways/{name}"
            entries.append((gid.lower(), VNET_GATEWAY, {"id": gid, "properties": {"sku": {"name": sku}}}))
            for index, kind in enumerate(kinds):
                cid = f"{SUB}/connections/{name}-c{index}"
                body = {"id": cid, "properties": {"connectionType": kind, "virtualNetworkGateway1": {"id": gid}}}
                entries.append((cid.lower(), CONNECTION, body))
        if shuffle is not None:  # the same store read in another order
            random.Random(shuffle).shuffle(entries)
        return build(1, {k: body for k, _t, body in entries}, {k: type_ for k, type_, _b in entries}, {}, {}, {})


def pool_of(world: World, gateway: str) -> dict[str, Any]:
    return world.pools[world.gateways[gateway][0]]


def carried(p: Plan, gateway: str) -> set[str]:
    return {k for k, a in p.assignment.items() if a.gateway == gateway}


def check_invariants(world: World, p: Plan, states: dict[str, GatewayState]) -> None:
    """What holds after any step: capacity, who carries, idempotence, determinism."""
    used: dict[str, int] = {}
    for key, a in p.assignment.items():
        used[a.gateway] = used.get(a.gateway, 0) + a.kbps
        assert p.states[a.gateway.lower()].role == ACTIVE, (key, a)
        assert world.gateways[a.gateway][1] in ("InService", "Draining") and p.states[a.gateway.lower()].liveness == UP
        assert world.gateways[a.gateway][0] == a.pool
    for gateway, kbps in used.items():
        assert kbps <= pool_of(world, gateway)["gatewayCapacityKbps"], (gateway, kbps)
    for name, props in world.pools.items():
        standbys = [g for g, (pool, _s) in world.gateways.items() if pool == name and p.states[g].role == STANDBY]
        available = [g for g in standbys if p.states[g].available]
        assert len(available) <= props["redundantGatewayCount"], (name, available)
    assert {u.virtual_network_gateway.lower() for u in p.placement.unplaced} | set(p.assignment) == {
        vgw_key(n) for n in world.vnet_gateways
    }
    again = plan(world.snapshot(), p.assignment, p.states)
    assert again.moves == () and again.assignment == p.assignment and again.states == p.states  # settled
    shuffled = world.snapshot(shuffle=7)
    reordered = plan(shuffled, dict(reversed(p.assignment.items())), dict(reversed(p.states.items())))
    assert canonical(reordered) == canonical(plan(world.snapshot(), p.assignment, p.states))
    assert canonical(plan(world.snapshot(), {}, states)) == canonical(
        plan(shuffled, {}, dict(reversed(states.items())))
    )


def canonical(p: Plan) -> Any:
    """Everything a plan says, in its order (dict equality alone would not see an order that varies)."""
    return list(p.assignment.items()), list(p.states.items()), p.moves, p.roles, p.placement.as_json()


@st.composite
def scenario(draw: st.DrawFn) -> tuple[World, list[tuple[str, str]]]:
    pools: dict[str, dict[str, Any]] = {}
    for index in range(draw(st.integers(1, 2))):
        pools[f"p{index}"] = {
            "type": draw(st.sampled_from(["All", "S2sIpsec"])),
            "redundantGatewayCount": draw(st.integers(0, 2)),
            "gatewayCapacityKbps": draw(st.sampled_from([200_000, 300_000, 500_000])),
            "tierBandwidthKbps": 100_000,
        }
    world = World(pools)
    names = [f"g{i}" for i in range(draw(st.integers(1, 6)))]
    for name in names:
        world.gateways[name] = (draw(st.sampled_from(sorted(pools))), "InService")
    ops: list[tuple[str, str]] = [("add-gateway", name) for name in names]
    for index in range(draw(st.integers(0, 10))):
        kinds = draw(st.lists(st.sampled_from(["IPsec", "IPsec", "GRE"]), max_size=3))
        world.vnet_gateways[f"v{index:02d}"] = (draw(st.sampled_from(["Standard", "Standard", "VpnGw1"])), kinds)
        ops.append(("add-vnet-gateway", f"v{index:02d}"))
    ops = draw(st.permutations(ops))
    verbs = ["down", "up", "out-of-service", "in-service", "remove-gateway", "delete-vnet-gateway", "add-gateway",
             "drain", "drain-step", "drain-step", "failover"]  # fmt: skip
    for _ in range(draw(st.integers(0, 16))):
        verb = draw(st.sampled_from(verbs))
        vnet_gateways = sorted(world.vnet_gateways) or ["none"]
        ops.append((verb, draw(st.sampled_from(vnet_gateways)) if "vnet" in verb else ""))  # "": drawn when run
    return world, ops


def run(full: World, ops: list[tuple[str, str]], draw_gateway: Any) -> None:
    """Replay `ops` from an empty store, planning after each and checking what it may move."""
    world = World(full.pools)
    prev = plan(world.snapshot(), {}, {})
    extra = 0
    for verb, target in ops:
        states = dict(prev.states)
        gateway = None
        if verb == "add-gateway" and target:
            world.gateways[target] = full.gateways[target]
        elif verb == "add-gateway":
            extra += 1
            gateway = f"x{extra}"
            world.gateways[gateway] = (sorted(world.pools)[extra % len(world.pools)], "InService")
        elif verb == "add-vnet-gateway":
            world.vnet_gateways[target] = full.vnet_gateways[target]
        elif verb == "delete-vnet-gateway":
            if target not in world.vnet_gateways:
                continue
            del world.vnet_gateways[target]
        elif verb == "failover":
            if not prev.assignment:
                continue
            key = draw_gateway(sorted(prev.assignment))
            drill = failover_target(world.snapshot(), prev.assignment, states, key)
            if isinstance(drill, str):
                continue
            move, moved = drill
            now = plan(world.snapshot(), moved, states)
            assert now.assignment[key].gateway == move.target != prev.assignment[key].gateway, move
            assert now.states[move.target.lower()].role == ACTIVE
            assert all(now.assignment[k].gateway == a.gateway for k, a in prev.assignment.items() if k != key)
            check_invariants(world, now, states)
            prev = now
            continue
        else:
            if not world.gateways:
                continue
            gateway = draw_gateway(sorted(world.gateways))
            pool, _service = world.gateways[gateway]
            if verb == "drain-step":
                if _service != "Draining":
                    continue
                step = drain_step(world.snapshot(), prev.assignment, states, gateway)
                now = plan(world.snapshot(), step.assignment, states)
                if step.move is None:
                    assert now.assignment == prev.assignment
                else:
                    moved = vgw_key_of(step.move.virtual_network_gateway)
                    assert {k for k in prev.assignment if now.assignment.get(k) != prev.assignment[k]} == {moved}
                    target = now.assignment[moved].gateway
                    assert target != gateway and world.gateways[target][1] == "InService", step.move
                    assert "is Draining" in step.move.reason, step.move
                check_drained(world, prev, now)
                check_invariants(world, now, states)
                prev = now
                continue
            if verb == "drain":
                world.gateways[gateway] = (pool, "Draining")
            elif verb == "down":
                states[gateway] = replace(states[gateway], liveness=FAILED)
            elif verb == "up":
                states[gateway] = replace(states[gateway], liveness=UP)
            elif verb in ("out-of-service", "in-service"):
                world.gateways[gateway] = (pool, "OutOfService" if verb == "out-of-service" else "InService")
            elif verb == "remove-gateway":
                del world.gateways[gateway]
        now = plan(world.snapshot(), prev.assignment, states)
        check_step(world, prev, now, verb, gateway or target)
        check_drained(world, prev, now)
        check_invariants(world, now, states)
        prev = now


def check_drained(world: World, prev: Plan, now: Plan) -> None:
    """A Draining gateway is given nothing new: no VNet gateway, no takeover; it keeps what it has while Up."""
    for name, (_pool, service) in world.gateways.items():
        if service == "Draining":
            assert carried(now, name) <= carried(prev, name), (name, now.moves)
            assert not now.states[name.lower()].available, name  # never counted as a standby
            assert now.states[name.lower()].role == (ACTIVE if carried(now, name) else STANDBY), name


def check_step(world: World, prev: Plan, now: Plan, verb: str, subject: str) -> None:
    before = {k: a.gateway for k, a in prev.assignment.items()}
    after = {k: a.gateway for k, a in now.assignment.items()}
    if verb in ("add-gateway", "add-vnet-gateway", "up", "in-service", "delete-vnet-gateway", "drain"):
        assert now.moves == (), (verb, subject, now.moves)
        assert all(after[k] == g for k, g in before.items() if k in after), (verb, subject)
        assert set(before) - set(after) <= ({vgw_key(subject)} if verb == "delete-vnet-gateway" else set())
    joining = verb == "add-gateway" or (
        verb in ("up", "in-service") and not prev.states[subject.lower()].available and not carried(prev, subject)
    )
    if joining and now.states[subject.lower()].available:
        pool = world.gateways[subject][0]
        if any(a.pool == pool for a in prev.assignment.values()):  # a busy pool: roles are sticky
            others = [g for g, (p, _s) in world.gateways.items() if p == pool and g != subject]
            assert all(now.states[g].role == prev.states[g].role for g in others), (subject, now.roles)
            standbys = [g for g in others if now.states[g].role == STANDBY and now.states[g].available]
            wanted = STANDBY if len(standbys) < world.pools[pool]["redundantGatewayCount"] else ACTIVE
            assert now.states[subject.lower()].role == wanted, (subject, now.states, standbys)
    if verb in ("down", "out-of-service", "remove-gateway"):
        lost = carried(prev, subject)
        assert {m.source for m in now.moves} <= {subject}, now.moves  # only what it carried moves
        assert {vgw_key_of(m.virtual_network_gateway) for m in now.moves} == lost
        assert all(after.get(k) == g for k, g in before.items() if k not in lost)
        if not lost:
            return
        pool = prev.assignment[min(lost)].pool
        standbys = [
            g for g, (p, _s) in sorted(world.gateways.items())
            if p == pool and prev.states[g].role == STANDBY and prev.states[g].available and now.states[g].available
        ]  # fmt: skip
        if standbys:  # the whole node's load onto one standby, which is active now
            assert {m.target for m in now.moves} == {standbys[0]}, (standbys, now.moves)
            assert now.states[standbys[0]].role == ACTIVE
            assert all("moved to standby" in m.reason for m in now.moves)
        else:
            for move in now.moves:
                assert move.target is None or prev.states[move.target.lower()].role == ACTIVE, move
                assert "no standby left" in move.reason


def vgw_key_of(resource_id: str) -> str:
    return resource_id.lower()


@settings(max_examples=300, deadline=None)
@given(scenario(), st.data())
def test_each_step_moves_only_what_it_must(case: tuple[World, list[tuple[str, str]]], data: st.DataObject) -> None:
    world, ops = case
    run(world, ops, lambda names: data.draw(st.sampled_from(names)))


def test_out_of_service_moves_the_whole_node_to_the_standby_and_back_in_service_is_a_standby() -> None:
    world = World({"p": {"type": "All", "redundantGatewayCount": 1, "gatewayCapacityKbps": 500_000,
                         "tierBandwidthKbps": 100_000}})  # fmt: skip
    world.gateways = {name: ("p", "InService") for name in ("g1", "g2", "g3")}
    world.vnet_gateways = {f"v{i}": ("Standard", ["IPsec"]) for i in range(4)}
    first = plan(world.snapshot(), {}, {})
    assert {k[-2:]: a.gateway for k, a in first.assignment.items()} == {"v0": "g1", "v1": "g2", "v2": "g1", "v3": "g2"}
    assert (first.states["g3"].role, first.moves) == (STANDBY, ())

    world.gateways["g1"] = ("p", "OutOfService")
    drained = plan(world.snapshot(), first.assignment, first.states)
    assert sorted((m.virtual_network_gateway[-2:], m.source, m.target) for m in drained.moves) == [
        ("v0", "g1", "g3"),
        ("v2", "g1", "g3"),
    ]
    assert drained.moves[0].reason == "gateway g1 is OutOfService: moved to standby g3"
    assert drained.assignment[vgw_key("v0")] == Assigned("g3", "p", "node-g3", 100_000, drained.moves[0].reason, "g1")
    assert (drained.states["g3"].role, drained.states["g1"]) == (ACTIVE, GatewayState(STANDBY, UP, False))

    world.gateways["g1"] = ("p", "InService")
    back = plan(world.snapshot(), drained.assignment, drained.states)
    assert back.moves == () and back.assignment == drained.assignment
    assert back.states["g1"] == GatewayState(STANDBY, UP, True)
    assert [(r.gateway, r.role) for r in back.roles] == [("g1", STANDBY)]


def test_no_standby_left_spreads_over_the_actives_and_says_when_nothing_fits() -> None:
    world = World({"p": {"type": "All", "redundantGatewayCount": 0, "gatewayCapacityKbps": 200_000,
                         "tierBandwidthKbps": 100_000}})  # fmt: skip
    world.gateways = {name: ("p", "InService") for name in ("g1", "g2")}
    world.vnet_gateways = {"a": ("Standard", ["IPsec", "IPsec"]), "b": ("Standard", ["IPsec"])}
    first = plan(world.snapshot(), {}, {})
    assert {k[-1]: a.gateway for k, a in first.assignment.items()} == {"a": "g1", "b": "g2"}
    failed = {**first.states, "g1": replace(first.states["g1"], liveness=FAILED)}
    down = plan(world.snapshot(), first.assignment, failed)
    [move] = down.moves
    assert (move.source, move.target) == ("g1", None)
    assert move.reason == (
        "gateway g1 is Failed, and pool p has no standby left; capacity exhausted on pool p (needs 200000 kbps, "
        "the most an active gateway has left is 100000 kbps: 100000 kbps short)"
    )
    assert down.assignment[vgw_key("b")].gateway == "g2"
    assert [u.reason for u in down.placement.unplaced] == [move.reason]


def test_a_vnet_gateway_that_outgrows_its_gateway_moves_and_the_others_stay() -> None:
    world = World({"p": {"type": "All", "redundantGatewayCount": 0, "gatewayCapacityKbps": 300_000,
                         "tierBandwidthKbps": 100_000}})  # fmt: skip
    world.gateways = {name: ("p", "InService") for name in ("g1", "g2")}
    world.vnet_gateways = {"a": ("Standard", ["IPsec"]), "b": ("Standard", ["IPsec"]), "c": ("Standard", ["IPsec"])}
    first = plan(world.snapshot(), {}, {})
    assert {k[-1]: a.gateway for k, a in first.assignment.items()} == {"a": "g1", "b": "g2", "c": "g1"}
    world.gateways["g3"] = ("p", "InService")
    scaled = plan(world.snapshot(), first.assignment, first.states)
    assert scaled.moves == () and scaled.states["g3"].role == ACTIVE
    world.vnet_gateways["a"] = ("Standard", ["IPsec"] * 3)  # g1 would carry 300 + 100
    grown = plan(world.snapshot(), scaled.assignment, scaled.states)
    [move] = grown.moves
    assert (move.virtual_network_gateway[-1], move.source, move.target) == ("a", "g1", "g3")
    assert move.reason == "gateway g1 has no room left for it (200000 kbps free): moved to active g3"
    assert {k[-1]: a.gateway for k, a in grown.assignment.items()} == {"a": "g3", "b": "g2", "c": "g1"}


def test_drain_moves_one_at_a_time_standby_first_and_the_draining_gateway_takes_nothing_new() -> None:
    world = World({"p": {"type": "All", "redundantGatewayCount": 1, "gatewayCapacityKbps": 500_000,
                         "tierBandwidthKbps": 100_000}})  # fmt: skip
    world.gateways = {name: ("p", "InService") for name in ("g1", "g2", "g3")}
    world.vnet_gateways = {f"v{i}": ("Standard", ["IPsec"]) for i in range(4)}
    first = plan(world.snapshot(), {}, {})
    world.gateways["g1"] = ("p", "Draining")
    draining = plan(world.snapshot(), first.assignment, first.states)
    assert draining.moves == () and draining.assignment == first.assignment  # sticky: it keeps what it has
    assert draining.states["g1"] == GatewayState(ACTIVE, UP, False)
    world.vnet_gateways["v9"] = ("Standard", ["IPsec"])
    grown = plan(world.snapshot(), draining.assignment, draining.states)
    assert grown.assignment[vgw_key("v9")].gateway == "g2"  # nothing new for g1, and the standby stays one

    step = drain_step(world.snapshot(), grown.assignment, grown.states, "g1")
    assert step.move is not None and step.stranded == ()
    assert (step.move.virtual_network_gateway[-2:], step.move.target) == ("v0", "g3")
    assert step.move.reason == "gateway g1 is Draining: moved to standby g3"
    one = plan(world.snapshot(), step.assignment, grown.states)
    assert {k[-2:]: a.gateway for k, a in one.assignment.items()} == {"v0": "g3", "v1": "g2", "v2": "g1",
                                                                      "v3": "g2", "v9": "g2"}  # fmt: skip
    assert (one.states["g3"].role, one.moves) == (ACTIVE, ())
    two = plan(world.snapshot(), drain_step(world.snapshot(), one.assignment, one.states, "g1").assignment, one.states)
    assert two.assignment[vgw_key("v2")].gateway == "g3"  # the active with most room left
    done = drain_step(world.snapshot(), two.assignment, two.states, "g1")
    assert (done.carried, done.move) == ((), None)
    assert plan(world.snapshot(), two.assignment, two.states).states["g1"] == GatewayState(STANDBY, UP, False)


def test_drain_that_would_strand_says_why_and_a_drill_goes_to_the_standby_or_says_why_not() -> None:
    world = World({"p": {"type": "All", "redundantGatewayCount": 0, "gatewayCapacityKbps": 300_000,
                         "tierBandwidthKbps": 100_000}})  # fmt: skip
    world.gateways = {"g1": ("p", "InService"), "g2": ("p", "InService")}
    world.vnet_gateways = {"a": ("Standard", ["IPsec"] * 2), "b": ("Standard", ["IPsec"]), "c": ("Standard", [])}
    first = plan(world.snapshot(), {}, {})
    assert {k[-1]: a.gateway for k, a in first.assignment.items()} == {"a": "g1", "b": "g2", "c": "g2"}
    step = drain_step(world.snapshot(), first.assignment, first.states, "g1")
    assert step.move is None and [u.virtual_network_gateway[-1] for u in step.stranded] == ["a"]
    assert "capacity exhausted" in step.stranded[0].reason
    assert "no standby" in failover_target(world.snapshot(), first.assignment, first.states, vgw_key("a"))  # type: ignore[operator]
    drill = failover_target(world.snapshot(), first.assignment, first.states, vgw_key("b"))
    assert not isinstance(drill, str)
    move, moved = drill
    assert (move.source, move.target, moved[vgw_key("b")].gateway) == ("g2", "g1", "g1")
    assert move.reason == "failover drill: moved from g2 to active g1"
    world.pools["p"]["redundantGatewayCount"] = 1
    world.gateways["g3"] = ("p", "InService")
    scaled = plan(world.snapshot(), first.assignment, first.states)
    assert scaled.moves == () and scaled.states["g3"].role == STANDBY  # joins as the pool's standby
    move, moved = failover_target(world.snapshot(), scaled.assignment, scaled.states, vgw_key("a"))  # type: ignore[misc]
    assert (move.target, move.reason) == ("g3", "failover drill: moved from g1 to standby g3")
    assert plan(world.snapshot(), moved, scaled.states).states["g3"].role == ACTIVE
