"""schemathesis against the served OpenAPI document: whatever it sends, never a 5xx."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from isthmus.api.app import create_app
from isthmus.store import tokens
from isthmus.store.db import make_engine, upgrade
from tests.conftest import SUB_A

WORKDIR = Path(__import__("tempfile").mkdtemp(prefix="isthmus-fuzz-"))
ENGINE = make_engine(f"sqlite:///{WORKDIR / 'fuzz.db'}")
upgrade(ENGINE)
OPERATOR = tokens.create(ENGINE, "operator", "operator")
TENANT = tokens.create(ENGINE, "subscription", SUB_A)
APP = create_app(ENGINE)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def _dispose() -> object:
    yield None
    ENGINE.dispose()


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    token = OPERATOR if case.path.startswith(("/admin", "/v1")) else TENANT
    if case.path_parameters and "subscriptionId" in case.path_parameters and case.path_parameters is not None:
        case.path_parameters["subscriptionId"] = SUB_A  # reach the handlers, not just the tenant check
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error])
