"""`GET /metrics`: the controller's Prometheus metrics (prometheus-client), for an operator token.

Collected when scraped, from what the controller already holds: the connections' last reports (the same
counters the connection API renders), the gateways' leases and roles (the current placement), every node's
revision lag and what each MUX announces (their status reports); and, measured here, request latencies.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from isthmus.api.deps import operator, read, state
from isthmus.api.state import State
from isthmus.model.ids import parse
from isthmus.store.tokens import Principal

router = APIRouter(tags=["metrics"])
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0)


class FabricCollector(Collector):
    def __init__(self, st: State) -> None:
        self.st = st

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        st = self.st
        with read(st) as tx:
            reports = tx.connection_statuses()
            nodes = tx.nodes()
        revision = st.revision()
        transferred = CounterMetricFamily("isthmus_connection_bytes", "Bytes a connection carried (inner packets)",
                                          labels=["connection", "subscription", "direction", "node"])  # fmt: skip
        packets = CounterMetricFamily("isthmus_connection_packets", "Packets a connection carried (inner)",
                                      labels=["connection", "subscription", "direction", "node"])  # fmt: skip
        dropped = CounterMetricFamily("isthmus_connection_shaping_dropped_packets",
                                      "Packets a connection's tier dropped, both ways",
                                      labels=["connection", "node"])  # fmt: skip
        up = GaugeMetricFamily("isthmus_connection_up", "1 while the connection is Connected",
                               labels=["connection", "subscription", "node", "status"])  # fmt: skip
        since = GaugeMetricFamily("isthmus_connection_established_timestamp_seconds",
                                  "When the connection's tunnel last came up (Unix time)",
                                  labels=["connection"])  # fmt: skip
        for key, (carrier, body) in sorted(reports.items()):
            name, subscription = _names(key)
            status = str(body.get("connectionStatus", "Unknown"))
            transferred.add_metric([name, subscription, "in", carrier], body.get("ingressBytesTransferred", 0))
            transferred.add_metric([name, subscription, "out", carrier], body.get("egressBytesTransferred", 0))
            packets.add_metric([name, subscription, "in", carrier], body.get("ingressPackets", 0))
            packets.add_metric([name, subscription, "out", carrier], body.get("egressPackets", 0))
            dropped.add_metric([name, carrier], body.get("shapingDroppedPackets", 0))
            up.add_metric([name, subscription, carrier, status], 1.0 if status == "Connected" else 0.0)
            if established := body.get("lastConnectionEstablishedUtcTime"):
                since.add_metric([name], datetime.fromisoformat(established.replace("Z", "+00:00")).timestamp())
        yield from (transferred, packets, dropped, up, since)

        lag = GaugeMetricFamily("isthmus_node_revision_lag", "Store revisions since the node's applied one",
                                labels=["node", "role"])  # fmt: skip
        announced = GaugeMetricFamily("isthmus_mux_announced_vips", "VIPs the MUX announces over BGP", labels=["node"])
        for node in nodes:
            lag.add_metric([node["name"], node["role"]], max(0, revision - (node["appliedRevision"] or 0)))
            details = json.loads(node["status"] or "{}").get("details", {})
            if node["role"] == "mux" and "announced" in details:
                announced.add_metric([node["name"]], details["announced"])
        yield from (lag, announced)

        role = GaugeMetricFamily("isthmus_gateway_role", "1 for the gateway's role in its pool",
                                 labels=["gateway", "node", "pool", "role", "liveness"])  # fmt: skip
        compartments = GaugeMetricFamily("isthmus_gateway_compartments", "Virtual network gateways it carries",
                                         labels=["gateway", "node"])  # fmt: skip
        load = GaugeMetricFamily("isthmus_gateway_used_kbps", "Tier bandwidth placed on it", labels=["gateway"])
        lease_age = GaugeMetricFamily("isthmus_gateway_lease_age_seconds",
                                      "Since the lease was last renewed here", labels=["node"])  # fmt: skip
        placement = st.documents.placement()
        for pool in placement.as_json()["pools"]:
            for g in pool["gateways"]:
                role.add_metric([g["name"], g["node"], pool["name"], g["role"], g["liveness"]], 1.0)
                compartments.add_metric([g["name"], g["node"]], len(placement.for_node(g["node"])))
                load.add_metric([g["name"]], g["usedKbps"])
        now = time.monotonic()
        for node in (n["name"] for n in nodes if n["role"] == "gateway"):
            held = st.leases.held(node)
            if held is not None and held.sequence >= 0:
                lease_age.add_metric([node], round(now - held.received, 3))
        yield from (role, compartments, load, lease_age)


def _names(key: str) -> tuple[str, str]:
    rid = parse(key)
    return (rid.name, rid.subscription) if rid is not None else (key, "")


class RequestTimer:
    """Every request's latency, by method, route template and status class (plain ASGI: no body buffering)."""

    def __init__(self, app: Any, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "other")
            self.histogram.labels(scope["method"], route, f"{status[0] // 100}xx").observe(
                time.perf_counter() - started
            )


def registry(st: State) -> tuple[CollectorRegistry, Histogram]:
    """The app's own registry (several apps in one process, as the tests run them, keep theirs apart)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(FabricCollector(st))
    latency = Histogram("isthmus_request_seconds", "Controller request latency", ["method", "route", "status"],
                        registry=reg, buckets=LATENCY_BUCKETS)  # fmt: skip
    return reg, latency


@router.get("/metrics", include_in_schema=False)
async def get_metrics(request: Request, _who: Principal = Depends(operator), st: State = Depends(state)) -> Response:
    reg: CollectorRegistry = request.app.state.metrics
    body = await run_in_threadpool(generate_latest, reg)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
