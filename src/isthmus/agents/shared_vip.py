"""A gateway node's half of a shared public IP: the MUXes send it the packets of the sites whose connections it
carries; it steers each into the compartment of that connection by the same keys (model/steering.py), since
every compartment of the pool answers on the same address. What no compartment here takes is dropped."""

from __future__ import annotations

from collections.abc import Iterable

from isthmus.linux.steering import Entry, Target, ensure_steering
from isthmus.model.documents import Compartment
from isthmus.model.steering import steer_keys

MARK_BASE = 0x1000000  # a compartment's mark and routing table: this plus its VNI (24 bits)


class NodeSteering:
    """What this node steered: a node that steers nothing, and did not before, spends no process on it (its
    first pass looks once, for what an earlier agent left)."""

    def __init__(self) -> None:
        self.steering: bool | None = None  # None: not looked yet

    def ensure(self, compartments: list[tuple[Compartment, str, str]]) -> int:
        if not compartments and self.steering is False:
            return 0
        changes = steer_compartments(compartments)
        self.steering = bool(compartments)
        return changes


def steer_compartments(compartments: Iterable[tuple[Compartment, str, str]]) -> int:
    """(compartment, its uplink device on the node, the compartment's address on that link) of every shared
    compartment this node runs: make the node steer exactly their sites' traffic; the number of changes."""
    entries, vips = [], set()
    for compartment, device, via in compartments:
        if compartment.vip is None or compartment.vni is None or compartment.vip.version != 4:
            continue
        vips.add(str(compartment.vip))
        target = Target(MARK_BASE + compartment.vni, device, via)
        entries += [Entry(str(compartment.vip), key, target) for key in steer_keys(compartment.connections)]
    return ensure_steering(None, entries, vips)
