"""What the controller process holds: the engine, the long-poll notifier, the token cache."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import Engine

from isthmus.api.documents import DocumentCache
from isthmus.api.leases import Leases
from isthmus.api.replica import Replica
from isthmus.api.throughput import Throughput
from isthmus.model.limits import LIVE_SECONDS
from isthmus.model.snapshot import FabricSettings
from isthmus.sealing import Keyring
from isthmus.store import tokens
from isthmus.store.db import current_revision, reading
from isthmus.store.repo import nodes_seen_since
from isthmus.store.tokens import Principal

T = TypeVar("T")

TOKEN_CACHE_SECONDS = 5.0  # how long a revoked token may still work here


class Notifier:
    """Wakes long-polling agents when the revision moves. Writers run in worker threads; waiters in the loop."""

    def __init__(self) -> None:
        self.revision = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._listeners: set[Callable[[], None]] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def notify(self, revision: int) -> None:
        self.revision = max(self.revision, revision)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake)
        for listener in list(self._listeners):
            listener()

    def listen(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` (from whichever thread writes) after each notification; returns what stops it. For
        waiters on other event loops than the one this notifier is bound to (the dashboard's live streams)."""
        self._listeners.add(callback)
        return lambda: self._listeners.discard(callback)

    def _wake(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = asyncio.Event()

    async def wait(self, timeout: float, seen: int) -> None:
        """Until a notification past revision `seen` or `timeout` seconds, whichever is first. A write that
        notified after the caller read `seen` but before this call returns at once (no lost wake-up: that
        race cost an agent up to a second)."""
        if self.revision > seen:
            return
        if self._event is None:
            await asyncio.sleep(timeout)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)


@dataclass
class State:
    engine: Engine
    page_size: int = 100
    settings: FabricSettings = field(default_factory=FabricSettings)
    notifier: Notifier = field(default_factory=Notifier)
    keyring: Keyring = field(default_factory=Keyring.ephemeral)  # seals and opens pre-shared keys
    leases: Leases = field(default_factory=Leases)
    name: str = "controller"  # this replica's name, in events and /healthz
    throughput: Throughput = field(default_factory=Throughput)  # the connections' counters lately (the dashboard)
    _tokens: dict[str, tuple[float, Principal]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.documents = DocumentCache(self.engine, self.settings, self.keyring.open)
        self.progress = Progress(self.engine, self.documents)
        self.replica = Replica(self.engine, self.name)
        # Writes run here, off the event loop: one thread, as the store admits one writer at a time anyway
        # (a pool of writers only convoyed on the GIL), so a large write never stalls /healthz, reads,
        # heartbeats or long-polls.
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="isthmus-writer")

    async def in_writer(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.writer, work)

    def principal(self, secret: str) -> Principal | None:
        cached = self._tokens.get(secret)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        principal = tokens.lookup(self.engine, secret)
        if principal is not None:
            self._tokens[secret] = (time.monotonic() + TOKEN_CACHE_SECONDS, principal)
        return principal

    def revision(self) -> int:
        with reading(self.engine) as conn:
            return current_revision(conn)


class Progress:
    """Heartbeats drive provisioningState: a resource is Updating while a live node that realises it has
    not yet reported applying its revision."""

    def __init__(self, engine: Engine, documents: DocumentCache) -> None:
        self.engine = engine
        self.documents = documents
        self._live: tuple[float, dict[str, int]] = (0.0, {})

    def live_nodes(self) -> dict[str, int]:
        """node -> applied revision of nodes heard from lately (read at most once a second)."""
        checked, nodes = self._live
        if time.monotonic() - checked > 1.0:
            cutoff = datetime.now(UTC) - timedelta(seconds=LIVE_SECONDS)
            with reading(self.engine) as conn:
                nodes = nodes_seen_since(conn, cutoff)
            self._live = (time.monotonic(), nodes)
        return nodes

    def unplaced(self, virtual_network_gateway: str) -> str | None:
        """Why a virtual network gateway runs on no gateway (no pool serves it, no room), if so."""
        return self.documents.unplaced(virtual_network_gateway)

    def shared_address(self, virtual_network_gateway: str) -> str | None:
        """The public IP the pool carrying a virtual network gateway shares, if it shares one."""
        return self.documents.shared_address(virtual_network_gateway)

    def pending(self, key: str, revision: int) -> bool:
        """Whether a live node that realises `key` has yet to apply the resource's `revision`. A node whose
        document did not change with it has nothing to apply beyond its own document's revision."""
        live = {node: applied for node, applied in self.live_nodes().items() if applied < revision}
        if not live:
            return False
        documents = self.documents.revisions()
        lagging = {node for node, applied in live.items() if applied < min(revision, documents.get(node, revision))}
        return bool(lagging) and bool(self.documents.carriers(key) & lagging)
