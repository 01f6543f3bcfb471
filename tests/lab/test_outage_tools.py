"""The failover benchmark's and chaos tests' measuring tools, on a real tunnel: the outage probe sees nothing
lost when nothing fails and one gap of the right length when the active gateway's link is dead for 0.5 s;
the actives sampler sees exactly one node answering for the VIP throughout."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from isthmus.lab import fabric, faults, probe, sites
from isthmus.lab.actives import ActivesSampler, who_answers
from isthmus.lab.outage import REVERSE, OutageProbe, Stream
from tests.support import Side, vpn_side, wait_for

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000d1"
SITE_ADDRESS = "198.51.100.41"
PORT = 7300
DEAD_S = 0.5


@pytest.fixture(scope="module")
def vpn(gateway_lab: fabric.LabState) -> Iterator[Side]:
    """One tenant's VM on h1, its VPN gateway and a connection to one site (tests/support.py `vpn_side`)."""
    side = vpn_side(gateway_lab, SUBSCRIPTION, "d", "h1", SITE_ADDRESS)
    try:
        doc = side.tenant.wait_connection("to-onprem", timeout=30)
        assert doc["properties"]["connectionStatus"] == "Connected", doc
        assert wait_for(lambda: probe.ping(side.vm.netns, side.site.host_address), 15)
        yield side
    finally:
        sites.delete(gateway_lab, "sd")


def test_the_probe_and_the_sampler_through_a_tunnel_and_a_dead_link(gateway_lab: fabric.LabState, vpn: Side) -> None:
    once = who_answers(gateway_lab, [vpn.vip])[vpn.vip]
    active = [a.node for a in once if a.answers]
    assert len(active) == 1, once
    standby = next(a for a in once if not a.answers)
    assert "no route" in standby.reason or "via under0" in standby.reason, standby
    node = gateway_lab.topology.netns(active[0])
    stream = Stream("d1", vpn.vm.netns, vpn.vm.addresses[0], vpn.site.host_netns, vpn.site.host_address, PORT,
                    reverse=True)  # fmt: skip
    with ActivesSampler(gateway_lab, [vpn.vip], period=0.02, limit=30) as sampler, \
         OutageProbe([stream], interval=0.01, limit=30) as outage:  # fmt: skip
        time.sleep(2.0)
        quiet = outage.report()
        before = outage.mark("silence")
        faults.silence(node, "under0")
        try:
            silenced = time.monotonic_ns()
            time.sleep(DEAD_S)
            unsilencing = time.monotonic_ns()
        finally:
            faults.unsilence(node)
        after = outage.mark("unsilenced")
        time.sleep(2.0)
    for direction in ("forward", REVERSE):
        calm = quiet.get("d1", direction)
        assert calm.sent >= 120 and calm.lost == 0 and calm.gaps == [], calm.summary()
    report = outage.report()
    assert report.stray == 0 and report.mark("silence") == before
    shortest_ms, longest_ms = (unsilencing - silenced) / 1e6, (after - before) / 1e6
    for direction in ("forward", REVERSE):
        measured = report.get("d1", direction)
        print(f"{measured.summary()}; dead between {shortest_ms:.0f} and {longest_ms:.0f} ms")
        assert len(measured.gaps) == 1, measured.summary()
        gap = measured.gaps[0]
        assert gap.duration_ms is not None and shortest_ms - 20 <= gap.duration_ms <= longest_ms + 300, gap
        assert shortest_ms / 10 - 3 <= gap.lost <= (longest_ms + 300) / 10, gap
        outage_gap = measured.outage_after(before)
        assert outage_gap == gap and gap.end_ns is not None
        first = measured.first_after(after)
        assert first is not None and 0 < (first - after) / 1e6 < 500  # through again at once after the fault
    median_ms, worst_ms = sampler.cost_ms()
    print(f"sampler: {len(sampler.samples)} samples, cost median {median_ms:.2f} ms, max {worst_ms:.2f} ms, "
          f"{sampler.overruns} overruns")  # fmt: skip
    assert sampler.errors == [] and len(sampler.samples) >= 150  # ~5 s at 20 ms
    assert sampler.two_actives_seen == 0
    assert all(s.answering[vpn.vip] == (active[0],) for s in sampler.samples)  # a dead link moves nothing (yet)
    timeline = sampler.timeline(vpn.vip)
    assert len(timeline) == 1 and timeline[0].nodes == (active[0],), timeline
    assert median_ms < 20
