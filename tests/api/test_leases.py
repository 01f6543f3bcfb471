"""Gateway leases through the agent protocol: acquire, renew, expiry (a fact in the store that placement
follows), refused stale epochs and renewals, a MUX's lease, restore at start-up."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from isthmus.api.app import create_app
from isthmus.api.leases import Leases
from isthmus.api.state import State
from isthmus.store import tokens
from tests.api.test_placement_sticky import events, gateways, where, world
from tests.conftest import Controller

TOKENS: dict[tuple[int, str], str] = {}


def renew(c: Controller, node: str, epoch: int | None, sequence: int | None = None, client: Any = None) -> Any:
    token = node_token(c, node)
    body = {"epoch": epoch, "sequence": sequence if sequence is not None else time.monotonic_ns() // 1_000_000}
    return (client or c.client).post(f"/v1/nodes/{node}/lease", json=body, headers=c.headers(token))


def node_token(c: Controller, node: str) -> str:
    key = (id(c.engine), node)
    if key not in TOKENS:
        TOKENS[key] = tokens.create(c.engine, "node", node)
    return TOKENS[key]


def leases(c: Controller) -> Leases:
    state: State = c.client.app.state.isthmus  # type: ignore[attr-defined]
    return state.leases


def until(check: Any, seconds: float = 5.0, *, bystander: tuple[Controller, str, Any] | None = None) -> None:
    """Until `check()`; meanwhile `bystander` (controller, node, client) renews: a controller that hears
    nobody fails nobody."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the deadline"
        if bystander is not None:
            c, node, client = bystander
            assert renew(c, node, None, client=client).status_code == 200
        time.sleep(0.02)


def test_a_lease_that_ends_fails_the_gateway_and_its_load_moves_to_the_standby(seeded: Controller) -> None:
    a, b = world(seeded)
    assert where(seeded) == {a: "gw1", b: "gw2"}
    first = renew(seeded, "gw2", None)
    assert first.status_code == 200, first.text
    assert {k: v for k, v in first.json().items() if k != "document"} == {
        "epoch": 1,
        "durationMs": 600,
        "intervalMs": 100,
    }
    assert gateways(seeded)["gw2"]["liveness"] == "Up"
    for _ in range(3):
        assert renew(seeded, "gw2", 1).status_code == 200
        time.sleep(0.1)
    assert where(seeded)[b] == "gw2"  # renewed: nothing moves
    until(lambda: where(seeded)[b] == "gw3", bystander=(seeded, "mux1", None))  # silent: the standby takes over
    assert gateways(seeded)["gw2"]["liveness"] == "Failed"
    [lost] = events(seeded, "lease.lost")
    assert lost["details"]["node"] == "gw2" and lost["details"]["epoch"] == 1
    assert 550 <= lost["details"]["silentMs"] < 2000
    assert where(seeded)[a] == "gw1"  # what did not fail did not move

    for _ in range(2):  # the ended epoch is refused, and recorded once
        stale = renew(seeded, "gw2", 1)
        assert stale.status_code == 409 and stale.json()["error"]["code"] == "LeaseEpochStale"
    assert len(events(seeded, "lease.stale")) == 1
    back = renew(seeded, "gw2", None)  # a new lease: it is a standby, and takes nothing back
    assert back.json()["epoch"] == 2
    assert gateways(seeded)["gw2"]["role"] == "standby" and gateways(seeded)["gw2"]["liveness"] == "Up"
    assert where(seeded) == {a: "gw1", b: "gw3"}


def test_a_renewal_older_than_the_last_is_refused_and_recorded(seeded: Controller) -> None:
    world(seeded)
    assert renew(seeded, "gw1", None, sequence=5000).status_code == 200
    assert renew(seeded, "gw1", 1, sequence=5100).status_code == 200
    older = renew(seeded, "gw1", 1, sequence=4000)  # the gateway's clock went back
    assert older.status_code == 409 and older.json()["error"]["code"] == "LeaseRenewalStale"
    assert [e["details"]["node"] for e in events(seeded, "lease.ignored")] == ["gw1"]


def test_a_controller_that_hears_nobody_fails_nobody(seeded: Controller) -> None:
    a, b = world(seeded)
    assert renew(seeded, "gw2", None).status_code == 200
    time.sleep(1.0)  # nobody renews: this controller may be the one cut off
    assert leases(seeded).held("gw2") is not None
    assert where(seeded) == {a: "gw1", b: "gw2"} and not events(seeded, "lease.lost")


def test_a_mux_holds_a_lease_and_nothing_is_stored(seeded: Controller) -> None:
    world(seeded)
    node_token(seeded, "mux1")
    before = seeded.dump()
    answer = renew(seeded, "mux1", None)
    assert answer.status_code == 200 and answer.json()["epoch"] == 0
    assert renew(seeded, "mux1", 0).status_code == 200
    assert leases(seeded).held("mux1") is not None
    assert seeded.dump() == before


def test_a_restarted_controller_holds_leased_gateways_for_its_grace(seeded: Controller) -> None:
    if seeded.engine.dialect.name == "postgresql":
        pytest.skip("two apps on PostgreSQL are replicas, one leads: tests/integration/test_controller_ha.py")
    a, b = world(seeded)
    assert renew(seeded, "gw2", None).json()["epoch"] == 1
    leases(seeded).hold("gw2", 1, seconds=3600)  # this replica keeps it: the other one must expire it
    grace = Leases(grace=0.5)
    with TestClient(create_app(seeded.engine, secrets_key=seeded.secrets_key, leases=grace)) as other:
        assert grace.held("gw2") is not None and grace.held("gw1") is None  # gw1 never held a lease
        assert renew(seeded, "gw2", 1, client=other).status_code == 200  # renewed within the grace
        until(lambda: grace.held("gw2") is None, 3.0, bystander=(seeded, "mux1", other))  # then silent: failed
        assert gateways(seeded)["gw2"]["liveness"] == "Failed"
        assert where(seeded) == {a: "gw1", b: "gw3"}
