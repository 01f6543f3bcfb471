"""The chaos suite's lab: a 2+1 gateway pool (gw1, gw2 active, gw3 standby), two MUXes, two hosts, and two
tenants each with a VPN to an independent strongSwan site: tenant a's on one active, tenant b's on the other.
A fresh lab per test (about 10 s here), so no fault outlives its test; it is removed even when a test fails,
and nothing of it may be left behind.

Every test probes each tenant's tunnel with sequence-numbered datagrams every 10 ms both ways
(lab/outage.py) and samples who answers for each VIP every 20 ms (lab/actives.py)."""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from isthmus.lab import fabric
from isthmus.lab.actives import ActivesSampler, lab_gateway_nodes
from isthmus.lab.outage import OutageProbe, Stream
from isthmus.lab.topology import Topology
from isthmus.linux.run import list_netns
from tests.support import Side, vpn_side, wait_for

SUB_A = "00000000-0000-0000-0000-0000000000a1"
SUB_B = "00000000-0000-0000-0000-0000000000b1"
LONG = os.environ.get("ISTHMUS_CHAOS_LONG") == "1"  # the longer variants (more trials, longer outages)


@dataclass
class Chaos:
    lab: fabric.LabState
    sides: dict[str, Side]
    started_events: int = 0
    probe: OutageProbe | None = None
    sampler: ActivesSampler | None = None
    extra: list[Any] = field(default_factory=list)

    def placed(self) -> dict[str, str]:
        """VNet gateway id (lower) -> the node carrying it."""
        with self.lab.operator() as client:
            body = client.get("/admin/placement").json()
        return {p["virtualNetworkGateway"].lower(): p["node"] for p in body["placed"]}

    def node_of(self, side: str) -> str | None:
        return self.placed().get(self.sides[side].tenant.id("virtualNetworkGateways/gw").lower())

    def gateways(self) -> dict[str, dict[str, Any]]:
        with self.lab.operator() as client:
            body = client.get("/admin/placement").json()
        return {g["node"]: g for pool in body["pools"] for g in pool["gateways"]}

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self.lab.operator() as client:
            events = client.get("/admin/events", params={"after": self.started_events, "limit": 1000}).json()["value"]
        return [e for e in events if kind is None or e["kind"] == kind]

    def netns(self, node: str) -> str:
        return self.lab.topology.netns(node)

    def connected(self, side: str, timeout: float = 20.0) -> dict[str, Any]:
        return self.sides[side].tenant.wait_connection("to-onprem", timeout=timeout)

    def measure(self) -> tuple[OutageProbe, ActivesSampler]:
        """Start probing both tunnels and sampling who answers for both VIPs (stopped by the fixture)."""
        streams = [
            Stream(name, s.vm.netns, s.vm.addresses[0], s.site.host_netns, s.site.host_address, 7300 + i, reverse=True)
            for i, (name, s) in enumerate(sorted(self.sides.items()))
        ]
        self.probe = OutageProbe(streams, 0.01, limit=240).start()
        vips = [s.vip for s in self.sides.values()]
        self.sampler = ActivesSampler(lab_gateway_nodes(self.lab), vips, limit=240).start()
        time.sleep(0.5)  # a clean stretch before any fault
        return self.probe, self.sampler


def _prefix(request: pytest.FixtureRequest) -> str:
    return f"ch{os.getpid() % 1000}x{zlib.crc32(request.node.name.encode()) % 1000:03d}-"


@pytest.fixture
def chaos(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Chaos]:
    """The lab; parametrised indirectly with a number, that many controller replicas (on PostgreSQL)."""
    prefix = _prefix(request)
    topology = Topology(prefix, hosts=2, muxes=2, gateways=3, controllers=getattr(request, "param", 1))
    state = fabric.up(tmp_path / "lab", topology, log_level="info")
    lab: Chaos | None = None
    try:
        with state.operator() as client:  # room for one tenant per gateway: a second failure strands one
            pool = {"type": "All", "redundantGatewayCount": 1, "gatewayCapacityKbps": 150_000,
                    "tierBandwidthKbps": 100_000}  # fmt: skip
            assert client.put("/admin/gatewayPools/all", json={"properties": pool}).status_code == 200
        sides = {
            "a": vpn_side(state, SUB_A, "a", "h1", "198.51.100.21"),
            "b": vpn_side(state, SUB_B, "b", "h2", "198.51.100.22"),
        }
        lab = Chaos(state, sides)
        for name in sides:
            assert lab.connected(name, 40)["properties"]["connectionStatus"] == "Connected"
        assert wait_for(lambda: lab is not None and {lab.node_of("a"), lab.node_of("b")} == {"gw1", "gw2"}, 10)
        with state.operator() as client:
            lab.started_events = client.get("/admin/events", params={"limit": 1}).json()["value"][-1]["id"]
        yield lab
    finally:
        if lab is not None:
            for running in (lab.probe, lab.sampler):
                if running is not None:
                    running.stop()
        fabric.down(tmp_path / "lab", prefix)
        leftovers = [n for n in list_netns() if n.startswith(prefix)]
        assert not leftovers, leftovers


def back(probe: OutageProbe, name: str, at_ns: int) -> bool:
    """Whether stream `name` lost datagrams after `at_ns` (a fault) and is through again."""
    gap = probe.report().get(name).outage_after(at_ns)
    return gap is not None and gap.end_ns is not None
