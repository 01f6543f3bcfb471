"""A real controller process serving HTTPS on loopback, with its own store, CA and tokens."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from isthmus.lab.controller import controller_process
from isthmus.store import tokens
from isthmus.store.db import make_engine, upgrade

SUB_A = "00000000-0000-0000-0000-00000000000a"
SUB_B = "00000000-0000-0000-0000-00000000000b"


@dataclass
class Live:
    url: str
    ca: Path
    tenant_a: str
    tenant_b: str
    operator: str
    db: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    workdir = tmp_path_factory.mktemp("controller")
    db = f"sqlite:///{workdir / 'isthmus.db'}"
    engine = make_engine(db)
    upgrade(engine)
    tenant_a = tokens.create(engine, "subscription", SUB_A)
    tenant_b = tokens.create(engine, "subscription", SUB_B)
    operator = tokens.create(engine, "operator", "operator")
    engine.dispose()
    with controller_process(db, workdir) as running:
        yield Live(running.url, running.ca, tenant_a, tenant_b, operator, db)
