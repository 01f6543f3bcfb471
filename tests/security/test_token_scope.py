"""Token scope: an operator token is for /admin, a node token for its own node's agent protocol, a tenant
token for its own subscription. An operator token reaches tenant subscriptions only if it was created for
that (`isthmus token create --operator --all-subscriptions`).

Each test first sends the request that used to succeed, and checks it is refused and changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from isthmus.store import tokens
from isthmus.store.db import make_engine, upgrade
from tests.conftest import SUB_A, SUB_B, Controller, net, rg, vnet_body

RESOURCES_API = "2024-11-01"


def test_an_operator_token_no_longer_reads_or_writes_tenant_subscriptions(seeded: Controller) -> None:
    c = seeded
    vnet = net("virtualNetworks", "v")
    assert c.call("PUT", vnet, vnet_body("100.64.0.0/16")).status_code == 201
    before = c.dump()
    attempts = [
        ("GET", vnet, None, None),
        ("PUT", net("virtualNetworks", "w", sub=SUB_B), vnet_body("100.64.0.0/16"), None),
        ("DELETE", vnet, None, None),
        ("GET", f"/subscriptions/{SUB_A}/providers/Microsoft.Network/virtualNetworks", None, None),
        ("PUT", rg(SUB_B, "new"), {"location": "local"}, RESOURCES_API),
    ]
    for method, path, body, version in attempts:
        response = c.call(method, path, body, token=c.operator, **({"api_version": version} if version else {}))
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["code"] == "AuthorizationFailed"
    assert c.dump() == before
    assert c.call("GET", vnet).status_code == 200  # the tenant's own token still does


def test_an_operator_token_made_for_all_subscriptions_reaches_them_and_says_so(seeded: Controller) -> None:
    c = seeded
    everywhere = tokens.create(c.engine, "operator", "operator", tokens.ALL_SUBSCRIPTIONS)
    for sub in (SUB_A, SUB_B):
        path = net("virtualNetworks", "v", sub=sub)
        assert c.call("PUT", path, vnet_body("100.64.0.0/16"), token=everywhere).status_code == 201
        assert c.call("GET", path, token=everywhere).status_code == 200
    assert c.client.get("/admin/nodes", headers=c.headers(everywhere)).status_code == 200
    listed = {row["scope"] for row in tokens.listing(c.engine) if row["kind"] == "operator"}
    assert listed == {None, tokens.ALL_SUBSCRIPTIONS}


def test_operator_and_tenant_tokens_do_not_act_as_nodes(seeded: Controller) -> None:
    c = seeded
    before = c.dump()
    for token in (c.operator, c.tenant_a):
        registered = c.client.post("/v1/nodes/h1/register", json={"role": "host"}, headers=c.headers(token))
        assert registered.status_code == 403, registered.text
        assert registered.json()["error"]["code"] == "AuthorizationFailed"
        status = c.client.post("/v1/nodes/h1/status", json={"appliedRevision": 0}, headers=c.headers(token))
        assert status.status_code == 403
    assert c.dump() == before


def test_a_node_token_reaches_neither_tenants_nor_admin(seeded: Controller) -> None:
    c = seeded
    node = tokens.create(c.engine, "node", "h1")
    before = c.dump()
    arm = c.call("PUT", net("virtualNetworks", "v"), vnet_body("100.64.0.0/16"), token=node)
    assert (arm.status_code, arm.json()["error"]["code"]) == (403, "AuthorizationFailed")
    admin = c.client.get("/admin/nodes", headers=c.headers(node))
    assert admin.status_code == 403
    other = c.client.post("/v1/nodes/h2/register", json={"role": "host"}, headers=c.headers(node))
    assert other.status_code == 403
    assert c.dump() == before


def isthmus(*args: str) -> subprocess.CompletedProcess[str]:
    source = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p),
           "COLUMNS": "250"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "isthmus", *args], env=env, capture_output=True, text=True, timeout=60)


def test_token_list_shows_kind_subject_scope_and_revocation_never_the_secret(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'isthmus.db'}"
    created = {}
    for args in (("--operator",), ("--operator", "--all-subscriptions"), ("--subscription", SUB_A), ("--node", "h1")):
        done = isthmus("token", "create", *args, "--db", db)
        assert done.returncode == 0, done.stderr
        created[args] = done.stdout.strip()
    assert isthmus("token", "create", "--node", "h1", "--all-subscriptions", "--db", db).returncode != 0
    revoked_id = created[("--node", "h1")].split("_")[1]
    assert isthmus("token", "revoke", revoked_id, "--db", db).returncode == 0
    listing = isthmus("token", "list", "--db", db)
    assert listing.returncode == 0, listing.stderr
    for secret in created.values():
        assert secret.split("_")[1] in listing.stdout  # the id
        assert secret.split("_", 2)[2] not in listing.stdout  # never the secret (which may hold "_" itself)
    assert tokens.ALL_SUBSCRIPTIONS in listing.stdout and SUB_A in listing.stdout
    rows = {row["id"]: row for row in tokens.listing(make_engine(db))}
    assert rows[revoked_id]["revoked"] is not None
    assert sum(row["revoked"] is None for row in rows.values()) == 3
    engine = make_engine(db)
    upgrade(engine)
    assert tokens.lookup(engine, created[("--node", "h1")]) is None
    assert tokens.lookup(engine, created[("--operator", "--all-subscriptions")]) == tokens.Principal(
        "operator", "operator", tokens.ALL_SUBSCRIPTIONS
    )
