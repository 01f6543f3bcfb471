"""Planned moves through the API: drain step by step, undrain, the failover drill, M+N refusals, events."""

from __future__ import annotations

import time

import pytest

from isthmus.api.admin import moves
from tests.api.test_admin_and_agents import register
from tests.api.test_placement_sticky import events, gateways, placement, set_gateway, where, world
from tests.conftest import SUB_A, Controller, net
from tests.support import wait_for


def connected(c: Controller, node: str, *connections: str) -> None:
    token = register(c, node, "gateway", "198.18.0.60")
    revision = c.client.get("/healthz").json()["revision"]
    body = {"appliedRevision": revision, "connections": {k: {"connectionStatus": "Connected"} for k in connections}}
    response = c.client.post(f"/v1/nodes/{node}/status", json=body, headers=c.headers(token))
    assert response.status_code == 200, response.text


def test_drain_moves_one_at_a_time_waiting_for_connected(seeded: Controller, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moves, "STEP_WAIT_SECONDS", 60.0)
    monkeypatch.setattr(moves, "POLL_SECONDS", 0.05)
    a, b = world(seeded)
    set_gateway(seeded, "gw2", "OutOfService")  # b to the standby gw3: gw1 and gw3 active, no standby
    seeded.admin("PUT", "/gateways/gw2", {"properties": {"node": "gw2", "pool": "ipsec"}})  # back: gw2 standby
    assert where(seeded) == {a: "gw1", b: "gw3"} and gateways(seeded)["gw2"]["role"] == "standby"
    response = seeded.admin("POST", "/gateways/gw1/drain")
    assert response.status_code == 202 and response.json()["properties"]["serviceState"] == "Draining"
    [step] = wait_for(lambda: events(seeded, "drain.step"))
    assert where(seeded) == {a: "gw2", b: "gw3"}  # the standby took it, as a takeover would
    assert {k: step["details"][k] for k in ("node", "virtualNetworkGateway", "from", "to")} == {
        "node": "gw2", "virtualNetworkGateway": a, "from": "gw1", "to": "gw2"}  # fmt: skip
    assert gateways(seeded)["gw2"]["role"] == "active"
    time.sleep(0.5)
    assert events(seeded, "drain.done") == []  # a is not Connected on gw2 yet
    connected(seeded, "gw2", net("connections", "conn", SUB_A).lower())
    [done] = wait_for(lambda: events(seeded, "drain.done"))
    [up] = events(seeded, "drain.connected")
    assert up["details"]["node"] == "gw2" and up["details"]["ms"] >= 0
    assert done["details"]["node"] == "gw1" and done["details"]["moved"] == 1
    gw1 = seeded.admin("GET", "/gateways/gw1").json()["properties"]
    assert gw1["serviceState"] == "OutOfService" and gateways(seeded)["gw1"]["role"] == "standby"


def test_drain_refused_when_it_strands_forced_drains_anyway_and_a_bounded_wait(
    seeded: Controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(moves, "STEP_WAIT_SECONDS", 0.2)
    a, b = world(seeded)
    set_gateway(seeded, "gw3", "OutOfService")
    set_gateway(seeded, "gw2", "OutOfService")  # b has no standby: onto gw1, which carries all
    assert where(seeded) == {a: "gw1", b: "gw1"}
    before = seeded.dump()
    refused = seeded.admin("POST", "/gateways/gw1/drain")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "DrainWouldStrandConnections"
    assert "nowhere to go" in refused.json()["error"]["message"]
    assert seeded.dump() == before
    put = seeded.admin(
        "PUT", "/gateways/gw1", {"properties": {"node": "gw1", "pool": "ipsec", "serviceState": "Draining"}}
    )
    assert put.status_code == 400 and put.json()["error"]["code"] == "InvalidServiceStateChange"
    assert seeded.admin("POST", "/gateways/gw1/drain?force=true").status_code == 202
    [done] = wait_for(lambda: events(seeded, "drain.done"))
    assert sorted(done["details"]["stranded"]) == sorted([a, b])
    assert len(placement(seeded)["unplaced"]) == 2


def test_undrain_stops_a_drain_and_takes_nothing_back(seeded: Controller, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moves, "STEP_WAIT_SECONDS", 60.0)
    a, b = world(seeded)
    assert seeded.admin("POST", "/gateways/gw1/drain").status_code == 202
    wait_for(lambda: events(seeded, "drain.step"))
    assert where(seeded) == {a: "gw3", b: "gw2"}
    response = seeded.admin("POST", "/gateways/gw1/undrain")
    assert response.status_code == 200 and response.json()["properties"]["serviceState"] == "InService"
    [stopped] = events(seeded, "drain.stopped")
    assert stopped["details"]["was"] == "Draining"
    assert where(seeded) == {a: "gw3", b: "gw2"} and gateways(seeded)["gw1"]["role"] == "standby"
    assert events(seeded, "drain.done") == []


def test_failover_drill(seeded: Controller) -> None:
    a, b = world(seeded)
    response = seeded.admin("POST", "/placement/failover", {"virtualNetworkGateway": a})
    assert response.status_code == 200, response.text
    assert where(seeded) == {a: "gw3", b: "gw2"} and gateways(seeded)["gw3"]["role"] == "active"
    [drill] = events(seeded, "placement.failover")
    assert drill["details"] == {"node": "gw3", "virtualNetworkGateway": a, "from": "gw1", "to": "gw3",
                                "fromNode": "gw1"}  # fmt: skip
    again = seeded.admin("POST", "/placement/failover", {"virtualNetworkGateway": b})
    assert again.status_code == 200 and where(seeded)[b] == "gw1"  # no standby: the active with most room
    missing = seeded.admin("POST", "/placement/failover", {"virtualNetworkGateway": a + "x"})
    assert missing.status_code == 404
    set_gateway(seeded, "gw3", "OutOfService")
    set_gateway(seeded, "gw2", "OutOfService")
    before = seeded.dump()
    nowhere = seeded.admin("POST", "/placement/failover", {"virtualNetworkGateway": a})
    assert nowhere.status_code == 409 and nowhere.json()["error"]["code"] == "FailoverNotPossible"
    assert seeded.dump() == before


def test_m_plus_n_refusals_and_a_gateway_added_moves_nothing(seeded: Controller) -> None:
    a, _b = world(seeded)
    before = seeded.dump()
    pool = {"type": "S2sIpsec", "redundantGatewayCount": 2, "gatewayCapacityKbps": 1_000_000,
            "tierBandwidthKbps": 100_000}  # fmt: skip
    refused = seeded.admin("PUT", "/gatewayPools/ipsec", {"properties": pool})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "InvalidRedundantGatewayCount"
    carrying = seeded.admin("DELETE", "/gateways/gw1")
    assert carrying.status_code == 409 and carrying.json()["error"]["code"] == "GatewayNotDrained"
    assert "drain it first" in carrying.json()["error"]["message"]
    thin = seeded.admin("DELETE", "/gateways/gw3")
    assert thin.status_code == 409 and thin.json()["error"]["code"] == "PoolWouldLoseRedundancy"
    assert seeded.dump() == before
    placed = placement(seeded)["placed"]
    for name in ("gw4", "gw5"):
        assert (
            seeded.admin("PUT", f"/gateways/{name}", {"properties": {"node": name, "pool": "ipsec"}}).status_code == 201
        )
    assert placement(seeded)["placed"] == placed and gateways(seeded)["gw4"]["role"] == "active"
    assert seeded.admin("PUT", "/gatewayPools/ipsec", {"properties": pool}).status_code == 200  # 5 gateways: 3+2
    assert seeded.admin("PUT", "/gateways/gw6", {"properties": {"node": "gw6", "pool": "ipsec"}}).status_code == 201
    assert gateways(seeded)["gw6"]["role"] == "standby" and placement(seeded)["placed"] == placed
    last = seeded.admin("DELETE", "/gateways/gw3")
    assert last.status_code == 409 and last.json()["error"]["code"] == "PoolWouldLoseStandby", last.text
    assert seeded.admin("DELETE", "/gateways/gw5").status_code == 200  # an active carrying nothing
    assert seeded.admin("DELETE", "/gateways/gw1?force=true").status_code == 200
    assert where(seeded)[a] in ("gw3", "gw6")
