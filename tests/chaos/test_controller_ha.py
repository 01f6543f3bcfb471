"""The controller's own failures with two replicas on PostgreSQL: the leader killed in the middle of a
gateway failover it decided. Another replica leads within the bound, the failover completes, and the data
plane does not notice the leader change (api/replica.py)."""

from __future__ import annotations

import time

import pytest

from isthmus.lab import fabric, faults
from tests.chaos.conftest import Chaos, back
from tests.chaos.test_failover import BACK_WITHIN_S
from tests.support import wait_for

TAKEOVER_BOUND_S = 5.0  # generous: bench/failover.py measures leader_takeover_s


@pytest.mark.parametrize("chaos", [2], indirect=True)
def test_leader_killed_during_a_failover_it_started(chaos: Chaos) -> None:
    lab = chaos.lab
    assert fabric.leader(lab) == 0
    probe, sampler = chaos.measure()
    victim = chaos.node_of("a")
    assert victim is not None
    at = probe.mark("kill -9 gateway")
    assert faults.kill_node(chaos.netns(victim))
    assert wait_for(lambda: bool(chaos.events("lease.lost")), 5)  # the leader has decided
    probe.mark("kill -9 leader")
    killed = time.monotonic()
    fabric.kill_replica(lab, 0)
    for side in chaos.sides.values():  # the tenants' ARM client moves to the replica left
        side.tenant.http.base_url = lab.replicas[1]
    assert wait_for(lambda: fabric.leader(lab) == 1, TAKEOVER_BOUND_S)
    took = time.monotonic() - killed
    assert wait_for(lambda: back(probe, "a", at), BACK_WITHIN_S + TAKEOVER_BOUND_S)
    assert chaos.node_of("a") == "gw3" and chaos.node_of("b") != victim
    chaos.connected("a")
    time.sleep(1.0)  # past the new leader's grace: nobody else is failed
    probe.stop()
    sampler.stop()
    report = probe.report()
    assert report.get("b").lost == 0 and report.get("b", "reverse").lost == 0, (report, took)
    assert sampler.two_actives_seen == 0
    elected = chaos.events("leader.elected")
    assert [e["details"]["replica"] for e in elected] == ["controller-2"], elected
    assert [e["details"]["node"] for e in chaos.events("lease.lost")] == [victim]
    assert all(g["liveness"] == "Up" for node, g in chaos.gateways().items() if node != victim)
