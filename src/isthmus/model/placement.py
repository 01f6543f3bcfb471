"""The stored M+N state: where each virtual network gateway runs, and each gateway's role and liveness.

Not intent. The controller writes it: the assignment and roles after planning (compile.placement.plan),
liveness and lease epoch from the gateway's lease (api/leases.py). The operator's intent about a gateway is its
`serviceState` on the admin object. store/ reads and writes it; compile/ reads it from the Snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass

from isthmus.model.snapshot import CONNECTION, GATEWAYS, LOCAL_GATEWAY, POOLS, VNET_GATEWAY

ACTIVE, STANDBY = "active", "standby"
UP, FAILED = "Up", "Failed"  # liveness: Failed once its lease ended (leases.py), until it acquires a new one
IN_SERVICE, OUT_OF_SERVICE = "InService", "OutOfService"
GATEWAY_STATES = "gatewayStates"  # what a write of gateway states touches (next to resource types)
# What planning reads: a write touching any of these may move placement.
INPUTS = frozenset({VNET_GATEWAY, CONNECTION, LOCAL_GATEWAY, GATEWAYS, POOLS, GATEWAY_STATES})


@dataclass(frozen=True)
class Assigned:
    """Where one virtual network gateway runs, and why there."""

    gateway: str  # the admin gateway object's name
    pool: str
    node: str
    kbps: int
    reason: str
    moved_from: str | None = None  # the gateway it last moved away from


@dataclass(frozen=True)
class GatewayState:
    """One admin gateway's role (explicit, not name order) and liveness."""

    role: str  # active | standby
    liveness: str = UP  # Up | Failed
    available: bool = True  # Up and InService when its role was last decided (False: it must join again)
    epoch: int = 0  # the lease epoch: a new one with every lease acquired after the last one ended
