"""Controller replicas: which one leads, and how each hears the writes the others make.

SQLite is the one-controller default: that controller leads from the start. On PostgreSQL any number of
replicas share the database, and the leader is the replica whose session holds the advisory lock LOCK_KEY
(`pg_try_advisory_lock`: the engine's own primitive). The lock belongs to the session, so a replica that
dies, or whose connection to the database breaks, loses it at once; the next replica's try takes it.

Each replica keeps one connection of its own for this, outside the pool, in a thread:

    every CHECK_S ──► not leading: pg_try_advisory_lock ──► got it: leading, `elected()`
                  └─► leading: SELECT 1 on the session   ──► fails: not leading, `deposed()`, reconnect
    meanwhile     ──► LISTEN on store/db.py's CHANNEL: every write notifies its revision at commit, and
                      `revision(n)` wakes this replica's long-polls for writes another replica made

A leader whose process is frozen rather than dead would keep its session, and the lock, for ever: each
replica's session is opened with `idle_session_timeout`, so the database ends a session silent for
IDLE_SESSION_MS. `elected()` must therefore return at once (it hands its work to another thread).

The leader alone judges leases (api/lease_protocol.py) and runs the drainer; every replica serves the API
and the agent protocol, but a follower refuses lease renewals (503 NotLeader), so a renewer moves on to the
next controller URL it was given. A leader's judgements are written only while the database says its session
still holds the lock (`check_leading`, inside the judgement's own transaction): a replica that lost its
session without noticing yet can fail nobody.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg
from sqlalchemy import Connection, Engine, text

from isthmus.store.db import CHANNEL

log = logging.getLogger("isthmus.replica")
LOCK_KEY = 0x15740001  # < 2**31: pg_locks shows it as classid 0, objid LOCK_KEY
CHECK_S = 0.1  # how often a follower tries the lock and a leader checks its session
# The database ends a session that sends nothing for this long (PostgreSQL's idle_session_timeout): a leader
# that is frozen (SIGSTOP, a stalled host) rather than dead loses the lock too, instead of holding it forever.
IDLE_SESSION_MS = 1000
_HOLDS_LOCK = text(
    "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = :key AND objsubid = 1 "
    "AND pid = :pid AND granted"
)


class NotLeading(Exception):
    """This replica does not hold the leader's lock (any more): it judges nothing."""


class Replica:
    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.shared = engine.dialect.name == "postgresql"
        self.leading = False
        self.since = 0.0  # this process's monotonic clock when it last became the leader
        self._backend_pid: int | None = None  # the session holding the lock, while leading
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, elected: Callable[[], None], deposed: Callable[[], None], revision: Callable[[int], None]) -> None:
        """Lead at once (SQLite), or contend for the lock (once now: a replica alone leads from its start) and go
        on contending and listening in a thread (PostgreSQL). On PostgreSQL `elected` runs in a thread of its
        own, so that this replica's session never goes quiet while it works."""
        if not self.shared:
            self.leading, self.since = True, time.monotonic()
            elected()
            return

        def in_thread() -> None:
            threading.Thread(target=elected, name="elected", daemon=True).start()

        session = None
        try:
            session = self._connect()
            self._contend(session, in_thread)
        except (psycopg.Error, OSError) as error:
            log.warning("replica %s cannot reach the database yet: %s", self.name, error)
        self._thread = threading.Thread(target=self._run, args=(session, in_thread, deposed, revision),
                                        name="replica", daemon=True)  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        """Stop contending (shutting down): leadership ends with the process's session."""
        self._stop.set()
        self.leading = False
        if self._thread is not None:
            self._thread.join(timeout=2 * CHECK_S + 1)

    def check_leading(self, conn: Connection) -> None:
        """NotLeading unless this replica leads and, as `conn`'s transaction sees it, its session holds the lock."""
        if not self.shared:
            return
        pid = self._backend_pid
        if not self.leading or pid is None or conn.execute(_HOLDS_LOCK, {"key": LOCK_KEY, "pid": pid}).first() is None:
            raise NotLeading(f"controller replica {self.name} does not lead")

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        conninfo = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        session = psycopg.connect(conninfo, autocommit=True, connect_timeout=2,
                                  options=f"-c idle_session_timeout={IDLE_SESSION_MS}")  # fmt: skip
        session.execute(f"LISTEN {CHANNEL}")
        return session

    def _run(
        self, session: psycopg.Connection[tuple[object, ...]] | None, elected: Callable[[], None],
        deposed: Callable[[], None], revision: Callable[[int], None],
    ) -> None:  # fmt: skip
        while not self._stop.is_set():
            try:
                session = session or self._connect()
                with session:
                    while not self._stop.is_set():
                        self._contend(session, elected)
                        for note in session.notifies(timeout=CHECK_S):
                            if note.payload.isdigit():
                                revision(int(note.payload))
            except (psycopg.Error, OSError) as error:
                if not self._stop.is_set():
                    log.warning("replica %s lost its database session: %s", self.name, error)
            session = None
            if self.leading:
                self.leading, self._backend_pid = False, None
                log.warning("replica %s no longer leads", self.name)
                deposed()
            self._stop.wait(CHECK_S)

    def _contend(self, session: psycopg.Connection[tuple[object, ...]], elected: Callable[[], None]) -> None:
        if self.leading:
            session.execute("SELECT 1")
            return
        row = session.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        if row is not None and row[0] is True:
            self._backend_pid = session.info.backend_pid
            self.leading, self.since = True, time.monotonic()
            log.warning("replica %s leads", self.name)
            elected()
