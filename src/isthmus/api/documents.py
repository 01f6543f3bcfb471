"""The controller's cache of compiled documents: one snapshot, brought forward incrementally."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine

from isthmus.compile.documents import Compiler
from isthmus.model.snapshot import Snapshot
from isthmus.store.db import reading
from isthmus.store.snapshots import load_snapshot, refresh


class DocumentCache:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._compiler: Compiler | None = None

    def _current(self) -> Compiler:
        """The compiler at the store's current revision, re-reading only rows changed since the last."""
        with reading(self.engine) as conn:
            if self._compiler is None:
                self._compiler = Compiler(load_snapshot(conn))
            else:
                snapshot, changed = refresh(conn, self._compiler.snapshot)
                if snapshot is not self._compiler.snapshot:
                    self._compiler.advance(snapshot, changed)
            return self._compiler

    def document(self, node: str, role: str | None = None) -> dict[str, Any]:
        with self._lock:
            return self._current().document(node, role)

    def carriers(self, key: str) -> set[str]:
        with self._lock:
            return self._current().carriers(key)

    def snapshot(self) -> Snapshot:
        """The snapshot at the store's current revision (what placement plans from)."""
        with self._lock:
            return self._current().snapshot

    def roles(self) -> dict[str, str]:
        with self._lock:
            return dict(self._current().roles)
