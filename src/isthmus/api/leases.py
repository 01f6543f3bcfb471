"""Leases: how the controller knows a gateway is alive, and the one fact it writes when one ends.

Every gateway node's watchdog (agents/watchdog.py) renews its lease every `interval` (100 ms); a MUX agent
renews one too, so the MUXes can tell a gateway that asks them whether the controller is alive. A renewal is
held in memory, timed by this process's monotonic clock from when it was *received*; the renewer times its
own view from when it *sent* the renewal that was answered, so the renewer's view always ends first.

The store sees a lease only when it begins or ends: a gateway that acquires one gets a new epoch (liveness
Up); one whose lease ran out is written liveness Failed with its epoch (`lease.lost`), and planning takes
that as input like any write (its load moves onto a standby). A renewal that names an ended epoch is refused
(409 `LeaseEpochStale`) and recorded once: the node must fence what it ran and acquire a new lease, after
which it is a joining gateway (a standby) that takes nothing back by itself.

At start-up every gateway stored Up is held for `grace` seconds, so a controller restart fails nobody that
renews within it, and a gateway that died while no controller ran is failed once the grace is over. With
several controller replicas only the leader holds leases (api/replica.py): a replica that becomes the leader
starts the same way, with every stored lease held for the grace.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from isthmus.model.placement import UP
from isthmus.model.snapshot import GATEWAYS, Snapshot

log = logging.getLogger("isthmus.leases")
INTERVAL_S = 0.1  # how often a holder renews
DURATION_S = 0.6  # how long a renewal holds, from its receipt
GRACE_S = 3.0  # at start-up: how long a gateway stored Up has to renew before it is failed
CHECK_S = 0.05  # how often expiry is checked


@dataclass
class Held:
    node: str
    epoch: int
    expires: float  # this process's monotonic clock
    received: float
    sequence: int = -1  # the last renewal taken: the renewer's monotonic clock at sending, in ms
    document: int = 0  # the node's document revision when the epoch began: what it acts on must be as new


@dataclass(frozen=True)
class Stored:
    """What the store says of a gateway node's lease."""

    gateway: str  # the admin gateway object's name
    liveness: str
    epoch: int


def stored_lease(snapshot: Snapshot, node: str) -> Stored | None:
    """The stored lease state of the gateway on `node`; None when `node` is no gateway's."""
    for _key, doc in snapshot.of_type(GATEWAYS):
        if doc["properties"]["node"] == node:
            state = snapshot.gateway_states.get(doc["name"].lower())
            return Stored(doc["name"], state.liveness if state else UP, state.epoch if state else 0)
    return None


class Leases:
    """The leases this controller holds in memory (thread-safe: renewals run on the event loop and in
    threads, expiry in its task)."""

    def __init__(
        self, *, interval: float = INTERVAL_S, duration: float = DURATION_S, grace: float = GRACE_S,
        check: float = CHECK_S,
    ) -> None:  # fmt: skip
        if not 0 < interval < duration:
            raise ValueError("a lease must be renewed more often than it lasts")
        self.interval = interval
        self.duration = duration
        self.grace = grace
        self.check = check
        self._held: dict[str, Held] = {}
        self.last_heard = time.monotonic()  # the last renewal taken from any node
        self.stopped = False  # the controller is shutting down: it fails nobody any more
        self._recorded: set[tuple[str, int, str]] = set()  # (node, epoch, kind) refusals already recorded
        self._lock = threading.Lock()

    def renew(self, node: str, epoch: int | None, sequence: int) -> Held | None:
        """Extend `node`'s held lease if `epoch` is the one held (None: whichever is); None when it holds
        none or another (the caller then asks the store). A sequence number not past the last extends
        nothing (the renewer's clock went back, or the renewal was replayed)."""
        now = time.monotonic()
        with self._lock:
            held = self._held.get(node)
            if held is None or (epoch is not None and epoch != held.epoch):
                return None
            if sequence > held.sequence:
                held.expires, held.received, held.sequence = now + self.duration, now, sequence
                self.last_heard = now
            return held

    def hold(
        self, node: str, epoch: int, *, seconds: float | None = None, sequence: int = -1, document: int = 0
    ) -> Held:
        """Begin holding `node`'s lease at `epoch` (acquired, or restored at start-up for `seconds`)."""
        now = time.monotonic()
        expires = now + (self.duration if seconds is None else seconds)
        with self._lock:
            held = self._held[node] = Held(node, epoch, expires, now, sequence, document)
            if seconds is None:
                self.last_heard = now
            return held

    def renewed(self) -> int:
        """How many leases held here were renewed here (not only restored at start-up or election)."""
        with self._lock:
            return sum(held.sequence >= 0 for held in self._held.values())

    def held(self, node: str) -> Held | None:
        with self._lock:
            return self._held.get(node)

    def expired(self) -> list[Held]:
        """The leases that ran out, no longer held from here on. A controller that hears nobody (it is the
        one cut off, or shutting down) fails nobody: it holds every lease anew for the grace instead."""
        now = time.monotonic()
        if self.stopped:
            return []
        if self._held and now - self.last_heard > self.duration:
            self.extend_all(self.grace)
            return []
        with self._lock:
            gone = [h for h in self._held.values() if h.expires < now]
            for held in gone:
                del self._held[held.node]
            return gone

    def stop(self) -> None:
        self.stopped = True

    def clear(self) -> None:
        """Hold nothing (this replica no longer leads: the leader holds the leases now)."""
        with self._lock:
            self._held.clear()

    def extend_all(self, seconds: float) -> int:
        """Hold every lease at least `seconds` from now (after this process did not run); how many."""
        until = time.monotonic() + seconds
        with self._lock:
            for held in self._held.values():
                held.expires = max(held.expires, until)
            return len(self._held)

    def first_time(self, node: str, epoch: int, kind: str) -> bool:
        """Whether this is the first refusal of kind `kind` for `node`'s `epoch`: only the first is recorded."""
        with self._lock:
            if (node, epoch, kind) in self._recorded:
                return False
            self._recorded.add((node, epoch, kind))
            return True

    def restore(self, snapshot: Snapshot) -> list[str]:
        """At start-up: hold every gateway stored Up with a lease (epoch > 0) for the grace period; the nodes
        held. (A gateway that never acquired a lease is Up until its first one ends.)"""
        nodes = []
        for _key, doc in snapshot.of_type(GATEWAYS):
            state = snapshot.gateway_states.get(doc["name"].lower())
            if state is not None and state.liveness == UP and state.epoch > 0:
                self.hold(doc["properties"]["node"], state.epoch, seconds=self.grace)
                nodes.append(doc["properties"]["node"])
        return nodes
