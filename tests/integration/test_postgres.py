"""The same store code on PostgreSQL: migrations, the API, the one-writer revision, unique allocations."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from isthmus.api.app import create_app
from isthmus.store import tokens
from isthmus.store.db import make_engine, upgrade
from tests.conftest import SUB_A, net, rg, vnet_body

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    upgrade(engine)  # idempotent
    yield engine
    engine.dispose()


def test_api_on_postgres(engine: Engine) -> None:
    tenant = tokens.create(engine, "subscription", SUB_A)
    operator = tokens.create(engine, "operator", "operator")
    with TestClient(create_app(engine)) as client:
        auth = {"Authorization": f"Bearer {tenant}"}
        admin = {"Authorization": f"Bearer {operator}"}
        api = {"api-version": "2026-03-01"}
        pool = {"properties": {"addressPrefixes": ["203.0.113.0/24"]}}
        assert client.put("/admin/publicIpPools/p", json=pool, headers=admin).status_code == 201
        assert (
            client.put(rg(), params={"api-version": "2024-11-01"}, json={"location": "local"}, headers=auth).status_code
            == 201
        )
        body = vnet_body("100.64.0.0/16", subnets={"a": "100.64.1.0/24"})
        assert client.put(net("virtualNetworks", "v"), params=api, json=body, headers=auth).status_code == 201
        bad = client.put(net("virtualNetworks", "w"), params=api, json=vnet_body("100.64.0.0/33"), headers=auth)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidCIDRNotation"

        addresses: list[str] = []
        lock = threading.Lock()

        def create(index: int) -> None:
            response = client.put(
                net("publicIPAddresses", f"p{index}"),
                params=api,
                headers=auth,
                json={"location": "local", "properties": {"publicIPAllocationMethod": "Static"}},
            )
            assert response.status_code == 201, response.text
            with lock:
                addresses.append(response.json()["properties"]["ipAddress"])

        threads = [threading.Thread(target=create, args=(i,)) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(addresses)) == 12
        listed = client.get(
            f"/subscriptions/{SUB_A}/providers/Microsoft.Network/publicIPAddresses", params=api, headers=auth
        ).json()
        assert len(listed["value"]) == 12
    with engine.connect() as conn:
        revision = conn.execute(text("SELECT value FROM revision")).scalar_one()
        changes = conn.execute(text("SELECT count(*) FROM resources")).scalar_one()
    assert revision >= changes
