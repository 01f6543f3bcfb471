"""An agent's own Prometheus endpoint (`--metrics HOST:PORT`, prometheus-client's HTTP server in a thread).

Collected when scraped from what the agent last did and observed: passes and the applied revision, the numbers
of its last pass's details (a MUX's announced VIPs, a gateway's compartments), and for a gateway every
connection it carries (bytes, state, shaping drops, up since) and its lease (epoch, fenced).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from isthmus.agents.loop import Agent


class AgentCollector(Collector):
    def __init__(self, agent: Agent, role: str, node: str) -> None:
        self.agent, self.role, self.node = agent, role, node

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        from isthmus.agents.loop import Observing

        agent, labels = self.agent, [self.node, self.role]
        passes = CounterMetricFamily("isthmus_agent_passes", "Reconciliation passes", labels=["node", "role"])
        passes.add_metric(labels, agent.passes)
        applied = GaugeMetricFamily("isthmus_agent_applied_revision", "The document revision applied",
                                    labels=["node", "role"])  # fmt: skip
        applied.add_metric(labels, agent.applied)
        details = GaugeMetricFamily("isthmus_agent_detail", "A number the last pass reported",
                                    labels=["node", "role", "name"])  # fmt: skip
        lease = GaugeMetricFamily("isthmus_gateway_lease_epoch", "The lease epoch held (gateways)",
                                  labels=["node", "fenced"])  # fmt: skip
        for name, value in sorted(agent.outcome.details.items()):
            if isinstance(value, int | float) and not isinstance(value, bool):
                details.add_metric([*labels, name], value)
            elif name == "lease" and isinstance(value, dict) and isinstance(value.get("epoch"), int):
                lease.add_metric([self.node, str(bool(value.get("fenced"))).lower()], value["epoch"])
        yield from (passes, applied, details, lease)
        observed = agent.reconciler.observed() if isinstance(agent.reconciler, Observing) else {}
        if "sessions" in observed:  # a MUX's BGP sessions
            session = GaugeMetricFamily("isthmus_bgp_session_up", "1 while Established", labels=["peer", "state"])
            for peer, state in sorted(observed["sessions"].items()):
                session.add_metric([peer, state], 1.0 if state == "Established" else 0.0)
            yield session
        if "connections" not in observed:  # a gateway's connections
            return
        transferred = CounterMetricFamily("isthmus_connection_bytes", "Bytes a connection carried",
                                          labels=["connection", "direction"])  # fmt: skip
        packets = CounterMetricFamily("isthmus_connection_packets", "Packets a connection carried",
                                      labels=["connection", "direction"])  # fmt: skip
        up = GaugeMetricFamily("isthmus_connection_up", "1 while Connected", labels=["connection", "status"])
        dropped = CounterMetricFamily("isthmus_connection_shaping_dropped_packets", "Packets its tier dropped",
                                      labels=["connection"])  # fmt: skip
        since = GaugeMetricFamily("isthmus_connection_established_timestamp_seconds", "When its tunnel came up",
                                  labels=["connection"])  # fmt: skip
        for connection, report in sorted(observed["connections"].items()):
            name = connection.rsplit("/", 1)[-1]
            status = str(report.get("connectionStatus", "Unknown"))
            transferred.add_metric([name, "in"], report.get("ingressBytesTransferred", 0))
            transferred.add_metric([name, "out"], report.get("egressBytesTransferred", 0))
            packets.add_metric([name, "in"], report.get("ingressPackets", 0))
            packets.add_metric([name, "out"], report.get("egressPackets", 0))
            up.add_metric([name, status], 1.0 if status == "Connected" else 0.0)
            dropped.add_metric([name], report.get("shapingDroppedPackets", 0))
            if established := report.get("lastConnectionEstablishedUtcTime"):
                since.add_metric([name], datetime.fromisoformat(established.replace("Z", "+00:00")).timestamp())
        yield from (transferred, packets, up, dropped, since)


def serve(agent: Agent, role: str, node: str, listen: str) -> None:
    """Serve the agent's metrics on `listen` (HOST:PORT) from a daemon thread."""
    host, _, port = listen.rpartition(":")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(agent, role, node))
    start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0", registry=registry)
