"""schemathesis against the served OpenAPI document: whatever it sends, never a 5xx."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from isthmus.api.app import create_app
from isthmus.store import tokens
from isthmus.store.db import make_engine, upgrade
from tests.conftest import SUB_A

TOKENS: dict[str, str] = {}
FUZZ_NODE = "fuzz-node"


@pytest.fixture(scope="module")
def served_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    engine = make_engine(f"sqlite:///{Path(tmp_path_factory.mktemp('fuzz')) / 'fuzz.db'}")
    upgrade(engine)
    TOKENS["operator"] = tokens.create(engine, "operator", "operator")
    TOKENS["tenant"] = tokens.create(engine, "subscription", SUB_A)
    TOKENS["node"] = tokens.create(engine, "node", FUZZ_NODE)
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(engine))
    engine.dispose()


schema = schemathesis.pytest.from_fixture("served_schema")


@schema.parametrize()
@settings(max_examples=int(os.environ.get("ISTHMUS_FUZZ_EXAMPLES", "12")), deadline=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
def test_no_server_errors(case: schemathesis.Case) -> None:
    token = TOKENS[
        "operator" if case.path.startswith("/admin") else "node" if case.path.startswith("/v1") else "tenant"
    ]
    if case.path_parameters and "node" in case.path_parameters:
        case.path_parameters["node"] = FUZZ_NODE  # a node token acts as its own node only
    if case.path_parameters and "subscriptionId" in case.path_parameters:
        case.path_parameters["subscriptionId"] = SUB_A  # reach the handlers, not just the tenant check
    if case.path.endswith("/desired") and case.query:
        case.query["timeout"] = 0.2  # a long-poll waits as told; the fuzzer need not wait 25 s for it
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error])
