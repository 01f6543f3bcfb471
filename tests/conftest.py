"""Fixtures shared by every test: a controller on a fresh store, with tokens, spoken to in-process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import settings
from sqlalchemy import Engine, select, text

from isthmus import sealing
from isthmus.api.app import create_app
from isthmus.store import tables, tokens
from isthmus.store.db import make_engine, upgrade

# In CI the same examples every run: a red build means a change broke something, not a lucky draw.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

API = "2026-03-01"
SUB_A = "00000000-0000-0000-0000-00000000000a"
SUB_B = "00000000-0000-0000-0000-00000000000b"


@dataclass
class Controller:
    engine: Engine
    client: TestClient
    tenant_a: str
    tenant_b: str
    operator: str
    secrets_key: Path | None = None  # the key file sealing pre-shared keys; another app on this store needs it

    def headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        api_version: str | None = API,
        **kwargs: Any,
    ) -> Any:
        params = {"api-version": api_version} if api_version else {}
        headers = {**self.headers(token or self.tenant_a), **kwargs.pop("headers", {})}
        return self.client.request(method, path, params=params, json=body, headers=headers, **kwargs)

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        return self.client.request(method, f"/admin{path}", json=body, headers=self.headers(self.operator))

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table: what 'the store is unchanged' compares."""
        with self.engine.connect() as conn:
            return {
                table.name: sorted(tuple(row) for row in conn.execute(select(table)))
                for table in tables.metadata.sorted_tables
            }


def rg(sub: str = SUB_A, group: str = "rg1") -> str:
    return f"/subscriptions/{sub}/resourceGroups/{group}"


def net(collection: str, name: str, sub: str = SUB_A, group: str = "rg1") -> str:
    return f"{rg(sub, group)}/providers/Microsoft.Network/{collection}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def controller(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Controller]:
    """The controller on a fresh store: every API test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'isthmus.db'}")
    else:
        engine = make_engine(request.getfixturevalue("postgres_url"))
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    secrets_key = tmp_path / "pki" / sealing.KEY_FILE
    sealing.write_key(secrets_key)
    app = create_app(engine, page_size=5, secrets_key=secrets_key)
    with TestClient(app) as client:
        yield Controller(
            engine=engine,
            client=client,
            tenant_a=tokens.create(engine, "subscription", SUB_A),
            tenant_b=tokens.create(engine, "subscription", SUB_B),
            operator=tokens.create(engine, "operator", "operator"),
            secrets_key=secrets_key,
        )
    engine.dispose()


@pytest.fixture
def seeded(controller: Controller) -> Controller:
    """A public IP pool, and a resource group in each subscription."""
    assert (
        controller.admin(
            "PUT", "/publicIpPools/pool1", {"properties": {"addressPrefixes": ["203.0.113.0/24"]}}
        ).status_code
        == 201
    )
    for sub, token in ((SUB_A, controller.tenant_a), (SUB_B, controller.tenant_b)):
        response = controller.call("PUT", rg(sub), {"location": "local"}, token=token, api_version="2024-11-01")
        assert response.status_code == 201, response.text
    return controller


def gateway_body(vnet: str, public_ip: str, sku: str = "Standard") -> dict[str, Any]:
    """A route-based VPN gateway on `vnet`'s GatewaySubnet with the public IP `public_ip` (both ids)."""
    config = {"subnet": {"id": vnet + "/subnets/GatewaySubnet"}, "publicIPAddress": {"id": public_ip}}
    return {
        "location": "local",
        "properties": {
            "gatewayType": "Vpn",
            "vpnType": "RouteBased",
            "sku": {"name": sku},
            "ipConfigurations": [{"name": "c", "properties": config}],
        },
    }


def vnet_body(*prefixes: str, subnets: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "location": "local",
        "properties": {
            "addressSpace": {"addressPrefixes": list(prefixes)},
            "subnets": [{"name": n, "properties": {"addressPrefix": p}} for n, p in (subnets or {}).items()],
        },
    }


pytest_plugins = ["tests.postgres"]
