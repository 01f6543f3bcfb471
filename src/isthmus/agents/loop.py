"""The shell every agent runs: register, follow the node's document, reconcile, report, on two timers.

    poll thread:      register ─► long-poll (document | deltas) ─► reconcile ─┐      (backoff on errors)
                          ▲                                                  │
                          └──────────────────────────────────────────────────┘
    heartbeat thread: every HEARTBEAT s ─► report status (revision applied, per-resource results)
                                       ─► daemons unhealthy? reconcile now

Level-triggered: every pass gets the whole document (deltas only say what changed since the last, as a
hint); every RESYNC seconds a full pass re-reads everything from the kernel. A failed pass is retried with
backoff; the last document is kept, so a controller outage changes nothing in Linux. What an agent has
applied is the revision of the document it reconciled, nothing else. Every registration carries the
capabilities probed once when the agent started (linux/datapath.py), so the controller learns them again
after it lost the node.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import httpx

from isthmus.agents.client import ControllerClient
from isthmus.model.documents import Delta, Document, receive

HEARTBEAT = 5.0
RESYNC = 30.0
LONG_POLL = 25.0
log = logging.getLogger("isthmus.agent")


@dataclass
class Outcome:
    """What one pass achieved: per resource id Succeeded/Failed (+ message), and free-form details."""

    resources: dict[str, dict[str, str]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


class Reconciler(Protocol):
    def reconcile(self, document: Any, *, full: bool, deltas: tuple[Delta, ...] = ()) -> Outcome:
        """Make Linux match `document`. `deltas`, when the document came as deltas, say what changed since
        the document of the previous pass (a hint: the document is the truth)."""
        ...

    def healthy(self) -> bool:
        """A cheap check on every heartbeat (the daemons it supervises answer); False runs a pass now."""
        ...


@runtime_checkable
class Observing(Protocol):
    def observe(self) -> bool:
        """Sample observed state (a gateway's tunnels), cheaply; True if it changed since the last sample."""
        ...

    def observed(self) -> dict[str, Any]:
        """The last sample, as fields of the status report (a gateway's: connections, daemons)."""
        ...


def backoff(attempt: int, *, base: float = 0.5, cap: float = 10.0) -> float:
    """Seconds to wait after `attempt` consecutive failures: exponential, capped, with jitter so that a
    fleet of agents does not return to a recovering controller in step."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return float(delay * random.uniform(0.5, 1.0))


class Agent:
    """One node's agent: the reconciler is the node's own logic, everything else is here."""

    def __init__(
        self,
        client: ControllerClient,
        reconciler: Reconciler,
        address: str | None,
        *,
        heartbeat: float = HEARTBEAT,
        resync: float = RESYNC,
        long_poll: float = LONG_POLL,
        observe_every: float = 0.25,
        capabilities: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.reconciler = reconciler
        self.address = address
        self.capabilities = capabilities  # probed once at start; every registration repeats them
        self.heartbeat = heartbeat
        self.resync = resync
        self.long_poll = long_poll
        self.observe_every = observe_every  # how often an Observing reconciler is sampled
        self.document: Document | None = None
        self.applied = 0
        self.outcome = Outcome()
        self.passes = 0
        self.registered = False  # the heartbeat reports only once the node is registered
        self.waiting = False  # in a long-poll: nothing half-done if the process ends now
        self.last_report = time.monotonic()
        self._last_full = 0.0
        self._pass_lock = threading.Lock()  # one pass at a time, whichever thread runs it
        self._reported = threading.Event()  # a pass finished: report it now
        self.registered_once = threading.Event()  # the first registration went through

    def run(self, stop: threading.Event) -> None:
        heart = threading.Thread(target=self._heartbeats, args=(stop,), name="heartbeat", daemon=True)
        heart.start()
        try:
            self._poll(stop)
        finally:
            stop.set()
            self._reported.set()  # wakes the heartbeat thread, which then sees `stop`
            heart.join(timeout=self.heartbeat + 5)
            self.client.close()

    # --- the poll thread ----------------------------------------------------------------------------

    def _poll(self, stop: threading.Event) -> None:
        dirty = False  # a document not yet applied (a failed pass is retried after the backoff)
        failures = 0
        while not stop.is_set():
            try:
                if not self.registered:
                    self.client.register(self.address, self.capabilities)
                    if not self.registered_once.is_set():
                        self.registered_once.set()
                    self.registered = True
                held = self.document
                until_full = self.resync - (time.monotonic() - self._last_full)
                wait = max(0.0, min(self.long_poll, until_full)) if held is not None and not dirty else 0
                self.waiting = True
                try:
                    answer = self.client.desired(held.revision if held is not None else 0, wait)
                finally:
                    self.waiting = False
                deltas: tuple[Delta, ...] = ()
                if answer is not None:
                    try:
                        self.document, deltas = receive(held, answer)
                    except ValueError as error:  # deltas that do not apply: start over from a whole document
                        log.warning("%s; asking for the whole document", error)
                        self.document, deltas = receive(None, self.client.desired(0, 0) or {})
                    dirty = True
                full = time.monotonic() - self._last_full > self.resync
                if self.document is not None and (dirty or full):
                    self._pass(full=full, deltas=deltas)
                    dirty = False
                failures = 0
            except httpx.HTTPError as error:
                log.warning("controller: %s", error)
                if isinstance(error, httpx.HTTPStatusError):  # e.g. the controller lost the node: register again
                    self.registered = False
                failures += 1
                stop.wait(backoff(failures))
            except Exception:
                log.exception("reconcile failed; retrying")
                failures += 1
                stop.wait(backoff(failures))

    def _pass(self, *, full: bool, deltas: tuple[Delta, ...] = ()) -> None:
        with self._pass_lock:
            document = self.document
            assert document is not None
            started = time.monotonic()
            outcome = self.reconciler.reconcile(document, full=full, deltas=deltas)
            self.passes += 1
            outcome.details.update(passSeconds=round(time.monotonic() - started, 4), passes=self.passes,
                                   full=full, pid=os.getpid())  # fmt: skip
            if full:
                self._last_full = time.monotonic()
            self.outcome, self.applied = outcome, document.revision
            log.info("applied revision %s in %.3f s", self.applied, outcome.details["passSeconds"])
        self._reported.set()

    # --- the heartbeat thread -----------------------------------------------------------------------

    def _heartbeats(self, stop: threading.Event) -> None:
        """Report on every heartbeat, after every pass, and (a reconciler that observes) when what it observes
        changed: sampled every `observe_every` seconds."""
        observing = isinstance(self.reconciler, Observing)
        tick = self.observe_every if observing else self.heartbeat
        due = time.monotonic() + self.heartbeat
        while not stop.is_set():
            passed = self._reported.wait(tick)
            self._reported.clear()
            if stop.is_set():
                return
            changed = observing and self._observe()
            if not (passed or changed or time.monotonic() >= due):
                continue
            due = time.monotonic() + self.heartbeat
            if self.registered:
                self._beat()

    def _observe(self) -> bool:
        try:
            return bool(self.reconciler.observe())  # type: ignore[attr-defined]
        except Exception:
            log.exception("observing failed")
            return False

    def _beat(self) -> None:
        try:
            if self.document is not None and not self.reconciler.healthy():
                log.warning("a supervised daemon is down: reconciling now")
                self._pass(full=True)
                self._reported.clear()
        except Exception:
            log.exception("repair pass failed")
        try:
            observed = self.reconciler.observed() if isinstance(self.reconciler, Observing) else {}
            self.client.report(self.applied, self.outcome.resources, self.outcome.details, observed)
            self.last_report = time.monotonic()
        except httpx.HTTPError as error:
            log.warning("status report: %s", error)


def run(
    client: ControllerClient,
    reconciler: Reconciler,
    address: str | None,
    stop: threading.Event,
    capabilities: dict[str, Any] | None = None,
    metrics: str | None = None,
) -> None:
    """Run an agent until SIGTERM/SIGINT (or `stop`): at once if it is waiting for the controller, after
    the pass otherwise. `metrics` (HOST:PORT): where to serve its Prometheus metrics (agents/metrics.py)."""
    agent = Agent(client, reconciler, address, capabilities=capabilities)
    if metrics:  # once registered: serving costs nothing before the node is in service (a second in a TCG guest)

        def serve_when_registered() -> None:
            agent.registered_once.wait()
            from isthmus.agents.metrics import serve

            serve(agent, client.role, client.node, metrics)

        threading.Thread(target=serve_when_registered, name="metrics", daemon=True).start()

    def ask_to_stop(*_: object) -> None:
        stop.set()
        if agent.waiting:
            raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, ask_to_stop)
    agent.run(stop)
