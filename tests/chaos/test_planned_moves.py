"""Planned moves on the lab with traffic flowing: a drain moves the tunnel to the standby and back again onto
the node that carried it before (whose earlier compartment must leave nothing in the way), the tunnel that
does not move loses nothing, and no two gateways ever answer for one VIP."""

from __future__ import annotations

import time

from isthmus.lab.outage import OutageProbe
from tests.chaos.conftest import Chaos
from tests.support import wait_for


def drain_to(chaos: Chaos, node: str, target: str) -> None:
    with chaos.lab.operator() as client:
        assert client.post(f"/admin/gateways/{node}/drain").status_code == 202
    assert wait_for(lambda: chaos.node_of("a") == target, 20)
    chaos.connected("a")
    assert wait_for(lambda: chaos.gateways()[node]["serviceState"] == "OutOfService", 20)
    with chaos.lab.operator() as client:
        assert client.post(f"/admin/gateways/{node}/undrain").status_code == 200
    assert wait_for(lambda: chaos.gateways()[node]["role"] == "standby", 10)


def lost_since(probe: OutageProbe, name: str, at_ns: int) -> int:
    report = probe.report()
    return sum(g.lost for direction in ("forward", "reverse") for g in report.get(name, direction).gaps
               if g.last_sent_ns >= at_ns)  # fmt: skip


def test_a_drain_there_and_back_leaves_the_tunnel_carrying_traffic(chaos: Chaos) -> None:
    probe, sampler = chaos.measure()
    first = chaos.node_of("a")
    assert first is not None
    drain_to(chaos, first, "gw3")
    drain_to(chaos, "gw3", first)  # back onto the node whose compartment for it was removed
    time.sleep(1.0)
    settled = probe.mark("settled")
    time.sleep(2.0)
    probe.stop()
    sampler.stop()
    assert lost_since(probe, "a", settled) == 0, probe.report()
    report = probe.report()
    assert report.get("b").lost == 0 and report.get("b", "reverse").lost == 0
    assert sampler.two_actives_seen == 0
    assert not chaos.events("apply.failed"), chaos.events("apply.failed")
    assert [e["kind"] for e in chaos.events() if e["kind"] == "drain.done"] == ["drain.done", "drain.done"]
