"""The lab's gateway pool as the operator sees it (GET /admin/placement): which node carries a VNet gateway, each
gateway node's role and liveness; a killed gateway node brought back (it rejoins as a standby)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from isthmus.lab import fabric

BACK_UP_SECONDS = 20.0


def placement(lab: fabric.LabState) -> dict[str, Any]:
    with lab.operator() as http:
        response = http.get("/admin/placement")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


def placed(lab: fabric.LabState, vnet_gateway_id: str) -> dict[str, Any] | None:
    """VNet gateway `vnet_gateway_id`'s placement (gateway, node, reason, movedFrom, ...; None: placed nowhere)."""
    key = vnet_gateway_id.lower()
    entries: list[dict[str, Any]] = placement(lab)["placed"]
    return next((p for p in entries if p["virtualNetworkGateway"].lower() == key), None)


def node_of(lab: fabric.LabState, vnet_gateway_id: str) -> str | None:
    """The node carrying VNet gateway `vnet_gateway_id` (None: placed nowhere)."""
    entry = placed(lab, vnet_gateway_id)
    return None if entry is None else str(entry["node"])


def gateway_nodes(lab: fabric.LabState) -> dict[str, dict[str, Any]]:
    """Node -> its gateway's entry in its pool (role, serviceState, liveness, usedKbps, ...)."""
    return {g["node"]: g for pool in placement(lab)["pools"] for g in pool["gateways"]}


def liveness(lab: fabric.LabState, node: str) -> str | None:
    return gateway_nodes(lab).get(node, {}).get("liveness")


def until(check: Callable[[], object], timeout: float, every: float = 0.02) -> bool:
    """Whether `check()` came true within `timeout` seconds (polled every `every`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return bool(check())


def back_up(lab: fabric.LabState, node: str, timeout: float = BACK_UP_SECONDS) -> bool:
    """Start killed gateway node `node`'s agent again and wait until it holds a lease (it returns as a standby);
    whether it did within `timeout`."""
    fabric.restart_agent(lab, node, log_level="warning")
    up = until(lambda: liveness(lab, node) == "Up", timeout)
    time.sleep(1.0)  # its watchdog has the new epoch, its compartments are cleared
    return up
