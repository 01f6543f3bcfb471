"""The Alembic migrations build exactly the schema the code declares, and keep the rows they find."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from isthmus.store.db import MIGRATIONS, make_engine, upgrade
from isthmus.store.tables import metadata


def test_migrations_match_tables(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert differences == []


def _migrate(engine: Engine, direction: Callable[[Config, str], None], revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        direction(config, revision)


def test_nodes_registered_before_0004_have_unknown_capabilities_and_0004_downgrades(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    _migrate(engine, command.upgrade, "0003")
    stamp = datetime.now(UTC)
    row = {"name": "h1", "role": "host", "address": "198.18.0.11", "registered_at": stamp, "last_seen": stamp,
           "applied_revision": 0, "status": "{}"}  # fmt: skip
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO nodes (name, role, address, registered_at, last_seen, applied_revision, "
                          "status) VALUES (:name, :role, :address, :registered_at, :last_seen, :applied_revision, "
                          ":status)"), row)  # fmt: skip
    _migrate(engine, command.upgrade, "0004")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name, capabilities FROM nodes")).all() == [("h1", "{}")]
    _migrate(engine, command.downgrade, "0003")
    with engine.connect() as conn:
        assert "capabilities" not in {c["name"] for c in inspect(conn).get_columns("nodes")}
        assert conn.execute(text("SELECT name FROM nodes")).all() == [("h1",)]
    engine.dispose()
