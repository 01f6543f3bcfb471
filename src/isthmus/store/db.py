"""Engines and transactions: SQLite (WAL) by default, PostgreSQL by URL, the same code for both."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, select, text, update
from sqlalchemy.pool import StaticPool

from isthmus.store import tables

MIGRATIONS = Path(__file__).parent / "migrations"
MAX_REVISION = 2**63 - 1  # revisions and event ids are 64-bit signed integers in both databases
CHANNEL = "isthmus_revision"  # PostgreSQL: every write NOTIFYs its revision here at commit (api/replica.py)
# SQLite admits one writer; writers of this process queue here instead of in SQLite's busy handler,
# whose growing sleeps would turn a short queue into a long tail.
_sqlite_writers: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and explicit (IMMEDIATE for writes) BEGINs."""
    if not url.startswith("sqlite"):
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return create_engine(url, pool_size=20, max_overflow=10, pool_pre_ping=True)
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if url in ("sqlite://", "sqlite:///:memory:"):
        kwargs["poolclass"] = StaticPool
    else:
        kwargs["pool_size"] = 20
        kwargs["max_overflow"] = 10
    engine = create_engine(url, **kwargs)
    _sqlite_writers[engine] = threading.Lock()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        writing = conn.get_execution_options().get("isthmus_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

    return engine


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn, conn.begin():
        yield conn


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction: everything in it commits together or not at all."""
    lock = _sqlite_writers.get(engine)
    with lock if lock is not None else nullcontext(), engine.connect() as conn:
        conn = conn.execution_options(isthmus_write=True)
        with conn.begin():
            if lock is None:  # PostgreSQL: writers queue on the revision row, as SQLite's do on the lock
                conn.execute(select(tables.revision.c.value).where(tables.revision.c.id == 1).with_for_update())
            yield conn


_BUMP = (
    update(tables.revision)
    .where(tables.revision.c.id == 1)
    .values(value=tables.revision.c.value + 1)
    .returning(tables.revision.c.value)
)


_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', :revision)")


def bump_revision(conn: Connection) -> int:
    """The next global revision, taken inside the caller's write transaction (serialises writers). On
    PostgreSQL the other controller replicas hear of it when the transaction commits."""
    revision = int(conn.execute(_BUMP).one()[0])
    if conn.dialect.name == "postgresql":
        conn.execute(_NOTIFY, {"revision": str(revision)})
    return revision


def current_revision(conn: Connection) -> int:
    return int(conn.execute(text("SELECT value FROM revision WHERE id = 1")).scalar_one())
