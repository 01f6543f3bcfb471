"""The loop every agent runs: level-triggered, on each new document and on a timer.

    register ─► long-poll desired (≤ HEARTBEAT s) ─► reconcile(document) ─► report status ─┐
        ▲                                                                                  │
        └──────────────────────────────────────────────────────────────────────────────────┘

A failed pass is retried with backoff; the last document is kept, so a controller outage changes
nothing in Linux. Every RESYNC seconds a full pass re-reads everything from the kernel.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from isthmus.agents.client import ControllerClient

HEARTBEAT = 5.0
RESYNC = 30.0
log = logging.getLogger("isthmus.agent")


@dataclass
class Outcome:
    """What one pass achieved: per resource id Succeeded/Failed (+ message), and free-form details."""

    resources: dict[str, dict[str, str]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


class Reconciler(Protocol):
    def reconcile(self, document: dict[str, Any], *, full: bool) -> Outcome: ...

    def healthy(self) -> bool:
        """A cheap check on every heartbeat (the daemons it supervises answer); False runs a pass now."""
        ...


def run(client: ControllerClient, reconciler: Reconciler, address: str | None, stop: threading.Event) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    document: dict[str, Any] | None = None
    applied = 0
    outcome = Outcome()
    registered = False
    dirty = False  # a document not yet applied (a failed pass is retried at once after the backoff)
    last_full = 0.0
    backoff = 0.5
    passes = 0
    while not stop.is_set():
        try:
            if not registered:
                client.register(address)
                registered = True
            wait = HEARTBEAT if document is not None and not dirty else 0
            new = client.desired(document["revision"] if document else 0, wait)
            if new is not None:
                document, dirty = new, True
            elif document is not None and not reconciler.healthy():
                log.warning("a supervised daemon is down: reconciling now")
                dirty = True
            full = time.monotonic() - last_full > RESYNC
            if document is not None and (dirty or full):
                started = time.monotonic()
                outcome = reconciler.reconcile(document, full=full)
                applied, dirty = document["revision"], False
                passes += 1
                outcome.details.update(passSeconds=round(time.monotonic() - started, 4), passes=passes,
                                       full=full, pid=os.getpid())  # fmt: skip
                if full:
                    last_full = time.monotonic()
                log.info("applied revision %s in %.3f s", applied, outcome.details["passSeconds"])
            client.report(applied, outcome.resources, outcome.details)
            backoff = 0.5
        except httpx.HTTPError as error:
            log.warning("controller: %s", error)
            registered = registered and not isinstance(error, httpx.HTTPStatusError)
            stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)
        except Exception:
            log.exception("reconcile failed; retrying")
            stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)
    client.close()
