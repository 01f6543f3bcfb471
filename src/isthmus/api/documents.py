"""The controller's cache of compiled documents: one snapshot brought forward incrementally, and per node
its current document, the revision at which that document last changed, and the recent deltas.

    store ──refresh──► Compiler.advance ──► nodes it may reach ──► their documents compared with the last
                                                                  ├─ equal: the node's revision stays (no wake-up)
                                                                  └─ differ: new revision + a delta kept for it

A node asks with the revision it holds: it is answered with the deltas from there when they are all still
kept (and smaller than the document), otherwise with the whole document.
"""

from __future__ import annotations

import gc
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from sqlalchemy import Engine

from isthmus.compile.documents import Compiler
from isthmus.compile.gateway import Unseal
from isthmus.compile.placement import Placement
from isthmus.compile.steering import shared_addresses
from isthmus.model.documents import (
    Delta,
    Document,
    GatewayDocument,
    HostDocument,
    MuxDocument,
    encode,
    host_delta,
    mux_delta,
)
from isthmus.model.ids import normalize
from isthmus.model.snapshot import FabricSettings, Snapshot
from isthmus.store.db import reading
from isthmus.store.snapshots import load_snapshot, refresh

HISTORY = 32  # deltas kept per node: an agent further behind than that gets the whole document


@dataclass
class NodeDocument:
    document: Document
    encoded: bytes | None = None  # the document's JSON, made once when first asked for
    deltas: deque[tuple[Delta, bytes]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    named: frozenset[str] | None = None  # the store keys the document names, made once when first asked for

    @property
    def revision(self) -> int:
        return self.document.revision

    def keys(self) -> frozenset[str]:
        if self.named is None:
            self.named = named_keys(self.document)
        return self.named

    def body(self) -> bytes:
        if self.encoded is None:
            self.encoded = encode(self.document)
        return self.encoded


@dataclass(frozen=True)
class Answer:
    """What a node is sent: its revision, and either its document or the deltas that bring it there."""

    revision: int
    document: bytes | None = None
    deltas: tuple[bytes, ...] = ()


class DocumentCache:
    def __init__(self, engine: Engine, settings: FabricSettings | None = None, unseal: Unseal | None = None) -> None:
        self.engine = engine
        self.settings = settings or FabricSettings()
        self.unseal = unseal
        self._lock = threading.Lock()
        self._compiler: Compiler | None = None
        self._nodes: dict[str, NodeDocument] = {}
        self._reported: dict[str, frozenset[str]] = {}  # node -> its document's keys at its last report

    def _current(self) -> Compiler:
        """The compiler at the store's current revision, re-reading only rows changed since the last; the
        documents of the nodes the change may reach are compared and, where they differ, renewed."""
        with reading(self.engine) as conn:
            if self._compiler is None:
                snapshot = load_snapshot(conn)
                gc.freeze()  # the snapshot lives on: no collection needs to walk its objects again
                self._compiler = Compiler(snapshot, self.settings, self.unseal)
                gc.freeze()
                return self._compiler
            snapshot, changed = refresh(conn, self._compiler.snapshot)
        if snapshot is not self._compiler.snapshot:
            affected = self._compiler.advance(snapshot, changed)
            self._renew(affected)
        return self._compiler

    def _renew(self, nodes: set[str]) -> None:
        compiler = self._compiler
        assert compiler is not None
        for node in nodes:
            held = self._nodes.get(node)
            if held is None:
                continue  # never asked for: compiled when it is
            if node not in compiler.roles:
                del self._nodes[node]
                self._reported.pop(node, None)
                continue
            new = compiler.document(node, held.document.role)
            changed, delta = _difference(held.document, new, compiler)
            if not changed:
                continue  # the change did not reach this node's document after all
            held.document, held.encoded, held.named = new, None, None
            if delta is None:
                held.deltas.clear()  # no delta describes it: whoever is behind gets the whole document
            else:
                held.deltas.append((delta, encode(delta)))

    def _held(self, node: str, role: str) -> NodeDocument:
        compiler = self._current()
        held = self._nodes.get(node)
        if held is None or held.document.role != role:
            held = self._nodes[node] = NodeDocument(compiler.document(node, role))
        return held

    def poll(self, node: str, role: str, after: int, *, deltas: bool) -> tuple[int, int, Answer | None]:
        """(the store revision the cache is at, `node`'s document revision — the store revision at which
        that document last changed — and, if that is past `after`, the answer: the document, or with
        `deltas` the deltas from `after` when they are all kept and smaller than the document)."""
        with self._lock:
            held = self._held(node, role)
            assert self._compiler is not None
            seen = self._compiler.snapshot.revision
            if held.revision <= after:
                return seen, held.revision, None
            if deltas and after > 0:
                bases = [delta.base for delta, _body in held.deltas]
                if after in bases:  # the deltas are contiguous: each starts where the one before ended
                    chain = tuple(body for _delta, body in list(held.deltas)[bases.index(after) :])
                    if held.encoded is None or sum(map(len, chain)) < len(held.encoded):
                        return seen, held.revision, Answer(held.revision, deltas=chain)
            return seen, held.revision, Answer(held.revision, document=held.body())

    def placement(self) -> Placement:
        """The placement at the store's current revision (what the documents follow)."""
        with self._lock:
            return self._current().placement

    def document(self, node: str, role: str | None = None) -> Document:
        """`node`'s document at the store's current revision (compiled now, not the one the node holds)."""
        with self._lock:
            return self._current().document(node, role)

    def carriers(self, key: str) -> set[str]:
        with self._lock:
            return self._current().carriers(key)

    def unplaced(self, virtual_network_gateway: str) -> str | None:
        """Why the virtual network gateway (store key) runs nowhere, if it does not."""
        with self._lock:
            placement = self._current().placement
        reasons = (u.reason for u in placement.unplaced if u.virtual_network_gateway.lower() == virtual_network_gateway)
        return next(reasons, None)

    def shared_address(self, virtual_network_gateway: str) -> str | None:
        """The public IP shared by the pool that carries the virtual network gateway (store key), if any."""
        with self._lock:
            compiler = self._current()
        placed = compiler.placement.placed
        pool = next((p.pool for p in placed if p.virtual_network_gateway.lower() == virtual_network_gateway), None)
        shared = shared_addresses(compiler.snapshot).get(pool.lower()) if pool else None
        return str(shared) if shared else None

    def foreign(self, node: str, role: str, keys: Iterable[str]) -> str | None:
        """The first of `keys` that `node` may not report on, or None. A node speaks of what its current
        document names, of what its document named at its last accepted report (an agent reports the
        document it last applied, which may be one change behind), and of what it carries
        (`carriers`: asked only for the keys the first two miss, so a forged report costs one call)."""
        with self._lock:
            current = self._held(node, role).keys()
            allowed = current | self._reported.get(node, frozenset())
            compiler = self._compiler
            assert compiler is not None
            for key in keys:
                if key not in allowed and node not in compiler.carriers(key):
                    return key
            self._reported[node] = current
            return None

    def carried(self, node: str, role: str) -> frozenset[str]:
        """The store keys `node`'s current document names: what it carries now."""
        with self._lock:
            return self._held(node, role).keys()

    def snapshot(self) -> Snapshot:
        """The snapshot at the store's current revision (what placement plans from)."""
        with self._lock:
            return self._current().snapshot

    def roles(self) -> dict[str, str]:
        with self._lock:
            return dict(self._current().roles)

    def revisions(self) -> dict[str, int]:
        """node -> its document's revision, for the nodes that asked for theirs."""
        with self._lock:
            self._current()
            return {node: held.revision for node, held in self._nodes.items()}


def _difference(old: Document, new: Document, compiler: Compiler) -> tuple[bool, Delta | None]:
    """Whether `new` differs from `old` (revisions aside), and the delta between them where there is one."""
    if isinstance(old, HostDocument) and isinstance(new, HostDocument):
        delta: Delta | None = host_delta(old, new)
    elif isinstance(old, MuxDocument) and isinstance(new, MuxDocument):
        delta = mux_delta(old, new, compiler.vips_touched)
    else:
        return replace(new, revision=old.revision) != old, None
    return delta is not None, delta


def named_keys(document: Document) -> frozenset[str]:
    """The store keys of the resources `document` names: what its node realises and may report on."""
    keys: set[str] = set()
    if isinstance(document, HostDocument):
        for vnet in document.virtual_networks:
            keys.add(normalize(vnet.id))
            keys.update(s.network_security_group for s in vnet.subnets if s.network_security_group)
        for nic in document.network_interfaces:
            keys.add(normalize(nic.id))
            if nic.network_security_group:
                keys.add(nic.network_security_group)
        keys.update(program.network_security_group for program in document.network_security_groups)
    elif isinstance(document, MuxDocument):
        keys.update(vip.owner for vip in document.vips.values())
    elif isinstance(document, GatewayDocument):
        for compartment in document.compartments:
            keys.add(normalize(compartment.virtual_network_gateway))
            keys.update(normalize(connection.id) for connection in compartment.connections)
    return frozenset(keys)
