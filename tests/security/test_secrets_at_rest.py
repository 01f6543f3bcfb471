"""Pre-shared keys at rest: sealed with the controller's secrets key, opened only for the gateway that
carries the connection and for its owner's getSharedKey; rotation re-seals every one under a new key.

Each test first reproduces what used to leak (the key in clear in the store) and checks it no longer does."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from isthmus import sealing
from isthmus.api.app import create_app
from isthmus.store import tables
from isthmus.store.sealed import CLEAR, SEALED
from tests.api.test_admin_and_agents import declare_fabric, register, tenant_world
from tests.conftest import SUB_A, Controller, net

CONN = net("connections", "conn")
NODES = {
    "host1": ("host", "198.18.0.11"),
    "host2": ("host", "198.18.0.12"),
    "mux1": ("mux", "198.18.0.21"),
    "gw1": ("gateway", "198.18.0.31"),
    "gw2": ("gateway", "198.18.0.32"),
    "gw3": ("gateway", "198.18.0.33"),
}


def psk() -> str:
    return f"psk-{secrets.token_hex(16)}"


@pytest.fixture
def world(seeded: Controller) -> tuple[Controller, dict[str, str], str]:
    """The fabric and tenant A's world, its IPsec connection keyed with a fresh secret; every node registered.
    Returns the controller, node -> token, and the secret."""
    declare_fabric(seeded)
    tenant_world(seeded)
    secret = psk()
    body = seeded.call("GET", CONN).json()
    body["properties"] = {k: body["properties"][k] for k in ("connectionType", "virtualNetworkGateway1",
                          "localNetworkGateway2")} | {"sharedKey": secret}  # fmt: skip
    written = seeded.call("PUT", CONN, body)
    assert written.status_code == 200, written.text
    assert secret not in written.text
    node_tokens = {node: register(seeded, node, role, address) for node, (role, address) in NODES.items()}
    return seeded, node_tokens, secret


def carrier(c: Controller) -> str:
    [placed] = c.admin("GET", "/placement").json()["placed"]
    return str(placed["node"])


def document(c: Controller, node: str, token: str) -> Any:
    response = c.client.get(f"/v1/nodes/{node}/desired", headers=c.headers(token))
    assert response.status_code == 200, response.text
    return response


def carried_key(c: Controller, node: str, token: str) -> str:
    [compartment] = document(c, node, token).json()["compartments"]
    return str(compartment["connections"][0]["sharedKey"])


def shared_key(c: Controller, token: str | None = None) -> Any:
    return c.call("GET", CONN + "/sharedkey", token=token)


def stored_files(c: Controller) -> bytes:
    """The SQLite store's bytes (database, WAL), or on PostgreSQL every row as text."""
    database = c.engine.url.database
    if c.engine.url.get_backend_name() == "sqlite" and database:
        return b"".join(p.read_bytes() for p in Path(database).parent.glob(Path(database).name + "*"))
    return repr(c.dump()).encode()


def stored_connection(c: Controller) -> dict[str, Any]:
    with c.engine.connect() as conn:
        body = conn.execute(select(tables.resources.c.body).where(tables.resources.c.id == CONN.lower())).scalar_one()
    props: dict[str, Any] = json.loads(body)["properties"]
    return props


def test_the_key_is_in_no_store_byte_get_list_event_or_other_document(
    world: tuple[Controller, dict[str, str], str],
) -> None:
    c, node_tokens, secret = world
    assert secret.encode() not in stored_files(c)
    assert secret not in repr(c.dump())
    assert CLEAR not in stored_connection(c) and SEALED in stored_connection(c)
    seen = [
        c.call("GET", CONN).text,
        c.call("GET", f"/subscriptions/{SUB_A}/resourceGroups/rg1/providers/Microsoft.Network/connections").text,
        c.call("GET", f"/subscriptions/{SUB_A}/providers/Microsoft.Network/connections").text,
        c.admin("GET", "/events?limit=1000").text,
        c.admin("GET", "/nodes").text,
        c.admin("GET", "/placement").text,
    ]
    on = carrier(c)
    seen += [document(c, node, token).text for node, token in node_tokens.items() if node != on]
    assert all(secret not in text for text in seen)
    # Still works end to end: the carrying gateway's document has it, and its owner can read it.
    assert carried_key(c, on, node_tokens[on]) == secret
    got = shared_key(c)
    assert (got.status_code, got.json()) == (200, {"value": secret})
    assert shared_key(c, c.tenant_b).status_code == 404  # another tenant: no such subscription for it
    assert shared_key(c, c.operator).status_code == 403


def test_set_shared_key_reseals_and_reaches_the_gateway(world: tuple[Controller, dict[str, str], str]) -> None:
    c, node_tokens, secret = world
    new = psk()
    before = c.dump()
    theirs = c.call("PUT", CONN + "/sharedkey", {"value": new}, token=c.tenant_b)
    assert theirs.status_code == 404 and c.dump() == before
    assert c.call("PUT", CONN + "/sharedkey", {"value": ""}).status_code == 400 and c.dump() == before
    assert c.call("PUT", CONN + "/sharedkey", {"value": new}).status_code == 200
    assert shared_key(c).json() == {"value": new}
    on = carrier(c)
    assert carried_key(c, on, node_tokens[on]) == new
    assert new.encode() not in stored_files(c) and secret.encode() not in stored_files(c)
    assert new not in c.admin("GET", "/events?limit=1000").text


def test_a_tenant_cannot_write_a_sealed_value_itself(world: tuple[Controller, dict[str, str], str]) -> None:
    c, _tokens, _secret = world
    body = c.call("GET", CONN).json()
    props = body["properties"]
    body["properties"] = {
        "connectionType": "IPsec",
        "virtualNetworkGateway1": props["virtualNetworkGateway1"],
        "localNetworkGateway2": props["localNetworkGateway2"],
        SEALED: stored_connection(c)[SEALED],
    }
    before = c.dump()
    assert c.call("PUT", CONN, body).status_code == 400
    assert c.dump() == before


def isthmus(*args: str) -> subprocess.CompletedProcess[str]:
    source = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "isthmus", *args], env=env, capture_output=True, text=True, timeout=60)


def test_rotation_reseals_everything_and_the_old_key_opens_nothing(
    world: tuple[Controller, dict[str, str], str],
) -> None:
    c, node_tokens, secret = world
    assert c.secrets_key is not None
    old_id, old_key = sealing.read_key(c.secrets_key)
    old_sealed = stored_connection(c)[SEALED]
    url = c.engine.url.render_as_string(hide_password=False)
    done = isthmus("pki", "rotate-secrets-key", "--secrets-key", str(c.secrets_key), "--db", url)
    assert done.returncode == 0, done.stderr
    new_id, _new_key = sealing.read_key(c.secrets_key)
    assert new_id != old_id and not sealing.pending(c.secrets_key).exists()
    sealed = stored_connection(c)[SEALED]
    assert sealed != old_sealed and sealed.split(":")[1] == new_id
    blob = base64.b64decode(sealed.split(":")[2])
    with pytest.raises(InvalidTag):
        AESGCM(old_key).decrypt(blob[:12], blob[12:], CONN.lower().encode())
    with pytest.raises(sealing.SealError):
        sealing.Keyring({old_id: old_key}, old_id).open(sealed, CONN.lower())
    # The running controller follows the rotation: the gateway and the owner still get the key.
    on = carrier(c)
    assert carried_key(c, on, node_tokens[on]) == secret
    assert shared_key(c).json() == {"value": secret}
    assert secret.encode() not in stored_files(c)


def test_clear_keys_of_an_older_store_are_sealed_at_start_up(world: tuple[Controller, dict[str, str], str]) -> None:
    c, node_tokens, secret = world
    assert c.secrets_key is not None
    with c.engine.begin() as conn:  # as a store from before sealing holds it
        row = conn.execute(select(tables.resources.c.body).where(tables.resources.c.id == CONN.lower())).scalar_one()
        body = json.loads(row)
        body["properties"].pop(SEALED)
        body["properties"][CLEAR] = secret
        conn.execute(
            update(tables.resources).where(tables.resources.c.id == CONN.lower()).values(body=json.dumps(body))
        )
    wrong = c.secrets_key.with_name("other.key")
    sealing.write_key(wrong)
    with TestClient(create_app(c.engine, secrets_key=c.secrets_key)) as restarted:
        assert CLEAR not in stored_connection(c) and SEALED in stored_connection(c)
        on = carrier(c)
        answer = restarted.get(f"/v1/nodes/{on}/desired", headers=c.headers(node_tokens[on])).json()
        assert answer["compartments"][0]["connections"][0]["sharedKey"] == secret
    with pytest.raises(sealing.SealError):
        create_app(c.engine, secrets_key=wrong)  # a controller given another key stops at start-up
