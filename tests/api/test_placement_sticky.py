"""Sticky M+N placement through the API: scale out, out of service and back, deletes, replicas, liveness."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from isthmus.api.app import create_app
from isthmus.api.deps import write
from isthmus.api.placement import persist, replan
from isthmus.api.state import State
from isthmus.compile.documents import Compiler
from isthmus.compile.placement import plan
from isthmus.model.documents import to_json
from isthmus.model.placement import ACTIVE, FAILED, UP, GatewayState
from isthmus.store import placements, tables
from isthmus.store.db import reading, writing
from isthmus.store.repo import Tx
from isthmus.store.snapshots import load_snapshot, refresh
from tests.api.test_admin_and_agents import declare_fabric, register
from tests.conftest import SUB_A, SUB_B, Controller, gateway_body, net, vnet_body


def tenant_gateway(c: Controller, sub: str, token: str, octet: int) -> str:
    """A VNet with a gateway (one IPsec connection, 100 Mbps) in subscription `sub`; its id."""

    def put(collection: str, name: str, body: dict[str, Any]) -> None:
        response = c.call("PUT", net(collection, name, sub), body, token=token)
        assert response.status_code == 201, response.text

    vnet = net("virtualNetworks", "v", sub)
    put("virtualNetworks", "v", vnet_body(f"100.64.{octet}.0/24", subnets={"GatewaySubnet": f"100.64.{octet}.0/27"}))
    put("publicIPAddresses", "gwip", {"location": "local"})
    put("virtualNetworkGateways", "gw", gateway_body(vnet, net("publicIPAddresses", "gwip", sub)))
    site = {
        "gatewayIpAddress": f"198.51.100.{octet}",
        "localNetworkAddressSpace": {"addressPrefixes": ["192.0.2.0/24"]},
    }
    put("localNetworkGateways", "site", {"location": "local", "properties": site})
    connection = {
        "connectionType": "IPsec",
        "sharedKey": "psk",
        "virtualNetworkGateway1": {"id": net("virtualNetworkGateways", "gw", sub)},
        "localNetworkGateway2": {"id": net("localNetworkGateways", "site", sub)},
    }
    put("connections", "conn", {"location": "local", "properties": connection})
    return net("virtualNetworkGateways", "gw", sub)


def world(c: Controller) -> tuple[str, str]:
    """The 2+1 pool of gw1..gw3 (1 Gbit/s each), two tenants' VNet gateways, gateway nodes registered."""
    declare_fabric(c)
    for index, node in enumerate(("gw1", "gw2", "gw3", "gw4"), start=1):
        register(c, node, "gateway", f"198.18.0.{50 + index}")
    return tenant_gateway(c, SUB_A, c.tenant_a, 1), tenant_gateway(c, SUB_B, c.tenant_b, 2)


def placement(c: Controller) -> dict[str, Any]:
    response = c.admin("GET", "/placement")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def where(c: Controller) -> dict[str, str]:
    return {p["virtualNetworkGateway"]: p["gateway"] for p in placement(c)["placed"]}


def gateways(c: Controller) -> dict[str, dict[str, Any]]:
    return {g["name"]: g for pool in placement(c)["pools"] for g in pool["gateways"]}


def documents(c: Controller, *nodes: str) -> dict[str, Any]:
    """The nodes' documents as the controller serves them, without the revision (which every write moves)."""
    state: State = c.client.app.state.isthmus  # type: ignore[attr-defined]
    wire = {node: to_json(state.documents.document(node)) for node in nodes}
    return {node: {k: v for k, v in document.items() if k != "revision"} for node, document in wire.items()}


def events(c: Controller, kind: str) -> list[dict[str, Any]]:
    return [e for e in c.admin("GET", "/events?limit=1000").json()["value"] if e["kind"] == kind]


def set_gateway(c: Controller, name: str, service_state: str) -> None:
    body = {"properties": {"node": name, "pool": "ipsec", "serviceState": service_state}}
    response = c.admin("PUT", f"/gateways/{name}", body)
    assert response.status_code == 200, response.text


def incremental_equals_full(c: Controller, compiler: Compiler) -> None:
    with reading(c.engine) as conn:
        snapshot, changed = refresh(conn, compiler.snapshot)
        full = Compiler(load_snapshot(conn)).all_documents()
    compiler.advance(snapshot, changed)
    assert compiler.all_documents() == full


def test_scale_out_moves_nothing(seeded: Controller) -> None:
    a, b = world(seeded)
    assert where(seeded) == {a: "gw1", b: "gw2"}
    before, placed = documents(seeded, "gw1", "gw2", "gw3", "mux1"), placement(seeded)["placed"]
    response = seeded.admin("PUT", "/gateways/gw4", {"properties": {"node": "gw4", "pool": "ipsec"}})
    assert response.status_code == 201, response.text
    assert placement(seeded)["placed"] == placed
    assert documents(seeded, "gw1", "gw2", "gw3", "mux1") == before
    roles = {name: g["role"] for name, g in gateways(seeded).items()}
    assert roles == {"gw1": "active", "gw2": "active", "gw3": "standby", "gw4": "active"}  # the pool has its N=1
    assert events(seeded, "placement.moved") == []
    [joined] = events(seeded, "placement.role")[-1:]
    assert joined["subject"] == "/admin/gateways/gw4" and "joined pool ipsec" in joined["message"]


def test_out_of_service_moves_to_the_standby_and_back_in_service_is_a_standby(seeded: Controller) -> None:
    a, b = world(seeded)
    with reading(seeded.engine) as conn:
        compiler = Compiler(load_snapshot(conn))
    untouched = documents(seeded, "gw2")
    mux_before = documents(seeded, "mux1")["mux1"]["vips"]

    set_gateway(seeded, "gw1", "OutOfService")
    assert where(seeded) == {a: "gw3", b: "gw2"}
    [moved] = [p for p in placement(seeded)["placed"] if p["virtualNetworkGateway"] == a]
    assert moved["reason"] == "gateway gw1 is OutOfService: moved to standby gw3" and moved["movedFrom"] == "gw1"
    states = gateways(seeded)
    assert (states["gw3"]["role"], states["gw1"]["role"], states["gw1"]["serviceState"]) == (
        "active",
        "standby",
        "OutOfService",
    )
    assert states["gw1"]["liveness"] == "Up" and states["gw1"]["usedKbps"] == 0
    [event] = events(seeded, "placement.moved")
    assert event["subject"] == a and event["message"] == moved["reason"]
    with reading(seeded.engine) as conn:
        stored, roles = placements.load(conn)  # persisted, not only planned on read
    assert (stored[a.lower()].gateway, stored[a.lower()].moved_from, roles["gw3"].role) == ("gw3", "gw1", "active")
    docs = documents(seeded, "gw1", "gw2", "gw3", "mux1")
    assert docs["gw1"]["compartments"] == [] and docs["gw3"]["state"] == "active"
    assert [x["virtualNetworkGateway"] for x in docs["gw3"]["compartments"]] == [a]
    assert docs["gw3"]["compartments"][0]["connections"][0]["sharedKey"] == "psk"
    assert {"gw2": docs["gw2"]} == untouched
    hops = {v["owner"]: v["nextHop"] for v in docs["mux1"]["vips"].values()}
    assert hops[net("publicIPAddresses", "gwip", SUB_A).lower()] == "198.18.0.53"  # gw3 carries tenant A now
    assert hops[net("publicIPAddresses", "gwip", SUB_B).lower()] == "198.18.0.52"
    assert mux_before != docs["mux1"]["vips"]
    incremental_equals_full(seeded, compiler)

    set_gateway(seeded, "gw1", "InService")
    assert where(seeded) == {a: "gw3", b: "gw2"}  # nothing moves back
    assert {name: g["role"] for name, g in gateways(seeded).items()} == {
        "gw1": "standby",
        "gw2": "active",
        "gw3": "active",
    }
    assert len(events(seeded, "placement.moved")) == 1
    incremental_equals_full(seeded, compiler)


def test_deleting_one_tenants_gateway_moves_nobody_else(seeded: Controller) -> None:
    a, b = world(seeded)
    set_gateway(seeded, "gw1", "OutOfService")  # roles no longer in name order: gw3 carries a
    before = [p for p in placement(seeded)["placed"] if p["virtualNetworkGateway"] == a]
    docs = documents(seeded, "gw1", "gw3")
    for path in (net("connections", "conn", SUB_B), b):
        response = seeded.call("DELETE", path, token=seeded.tenant_b)
        assert response.status_code == 202, response.text
    assert [p for p in placement(seeded)["placed"] if p["virtualNetworkGateway"] == a] == before
    assert where(seeded) == {a: "gw3"}
    assert documents(seeded, "gw1", "gw3") == docs
    assert len(events(seeded, "placement.moved")) == 1  # gw1's, nothing since


def test_bad_service_state_is_a_400_and_changes_nothing(seeded: Controller) -> None:
    world(seeded)
    before = seeded.dump()
    for value in ("Maintenance", "outofservice", 1, None):
        body = {"properties": {"node": "gw1", "pool": "ipsec", "serviceState": value}}
        response = seeded.admin("PUT", "/gateways/gw1", body)
        assert response.status_code == 400, (value, response.text)
        assert response.json()["error"]["target"] == "properties.serviceState", response.text
        assert response.json()["error"]["code"] == "InvalidRequestFormat"
    assert seeded.dump() == before


def test_replicas_agree_and_a_stale_plan_is_not_written(seeded: Controller) -> None:
    a, _b = world(seeded)
    with TestClient(create_app(seeded.engine, secrets_key=seeded.secrets_key)) as other:
        replica: State = other.app.state.isthmus  # type: ignore[attr-defined]
        assert replan(replica) is None  # the same plan: nothing to write
        stale = replica.documents.snapshot()
        set_gateway(seeded, "gw1", "OutOfService")  # through the first replica, which plans and persists
        after = seeded.dump()
        # The second replica planned from before that write (gw2 Down, say): its plan differs, and is refused.
        states = {**stale.gateway_states, "gw2": GatewayState(ACTIVE, FAILED, True)}
        outdated = plan(stale, stale.assignment, states)
        assert outdated.changes(stale.assignment, stale.gateway_states)
        with writing(seeded.engine) as conn:
            assert not persist(Tx(conn), stale, outdated)
        assert seeded.dump() == after
        assert replan(replica) is None  # it catches up: the newest plan is already stored
        assert where(seeded)[a] == "gw3"


def test_liveness_down_moves_to_the_standby_and_up_rejoins_as_standby(seeded: Controller) -> None:
    a, b = world(seeded)
    state: State = seeded.client.app.state.isthmus  # type: ignore[attr-defined]
    with write(state) as tx:
        placements.set_liveness(tx, "gw2", FAILED)
    assert where(seeded) == {a: "gw1", b: "gw3"}
    assert gateways(seeded)["gw2"]["liveness"] == "Failed"
    assert events(seeded, "placement.moved")[0]["message"] == "gateway gw2 is Failed: moved to standby gw3"
    with write(state) as tx:
        placements.set_liveness(tx, "gw2", UP)
    assert where(seeded) == {a: "gw1", b: "gw3"}
    assert gateways(seeded)["gw2"]["role"] == "standby"


def test_a_store_without_stored_placement_gets_it_at_start_up(seeded: Controller) -> None:
    a, b = world(seeded)
    with seeded.engine.begin() as conn:  # as a store from before sticky placement (migration 0002) looks
        conn.execute(tables.placements.delete())
        conn.execute(tables.gateway_states.delete())
    with TestClient(create_app(seeded.engine, secrets_key=seeded.secrets_key)):
        pass
    with reading(seeded.engine) as conn:
        stored, roles = placements.load(conn)
    assert {key: p.gateway for key, p in stored.items()} == {a.lower(): "gw1", b.lower(): "gw2"}
    assert {name: r.role for name, r in roles.items()} == {"gw1": "active", "gw2": "active", "gw3": "standby"}
