"""Bearer tokens: the secret is shown once at creation; the store keeps only its SHA-256.

What each kind may do:
- subscription: the ARM routes of its own subscription, nothing else;
- operator: /admin; the ARM routes of every subscription only with scope ALL_SUBSCRIPTIONS (made so on
  purpose: `isthmus token create --operator --all-subscriptions`);
- node: the agent protocol (/v1/nodes/NODE/...) of its own node, nothing else.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, insert, select, update

from isthmus.model.ids import SUBSCRIPTION_ID
from isthmus.store import tables as t
from isthmus.store.db import make_engine, reading, writing
from isthmus.store.repo import iso, now

KINDS = ("subscription", "operator", "node")
ALL_SUBSCRIPTIONS = "all-subscriptions"  # the one scope there is: an operator token that also reaches ARM


@dataclass(frozen=True)
class Principal:
    kind: str  # subscription | operator | node
    subject: str  # subscription id, "operator", or node name
    scope: str | None = None  # operator tokens only: ALL_SUBSCRIPTIONS, or None (/admin alone)

    def may_use_subscription(self, subscription: str) -> bool:
        if self.kind == "operator":
            return self.scope == ALL_SUBSCRIPTIONS
        return self.kind == "subscription" and self.subject == subscription.lower()

    def may_act_as_node(self, node: str) -> bool:
        return self.kind == "node" and self.subject == node


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_in(db: str, kind: str, subject: str) -> str:
    """`create` in the store at URL `db`, from a process that holds no engine of it (the lab, tests)."""
    engine = make_engine(db)
    try:
        return create(engine, kind, subject)
    finally:
        engine.dispose()


def create(engine: Engine, kind: str, subject: str, scope: str | None = None) -> str:
    if kind not in KINDS:
        raise ValueError(f"token kind must be one of {KINDS}")
    if kind == "subscription" and not SUBSCRIPTION_ID.match(subject):
        raise ValueError(f"'{subject}' is not a subscription id (a GUID)")
    if scope not in (None, ALL_SUBSCRIPTIONS) or (scope is not None and kind != "operator"):
        raise ValueError(f"only operator tokens take a scope, and the only scope is {ALL_SUBSCRIPTIONS}")
    token_id = secrets.token_hex(8)
    secret = f"ism_{token_id}_{secrets.token_urlsafe(32)}"
    subject = subject.lower() if kind == "subscription" else subject
    with writing(engine) as conn:
        conn.execute(
            insert(t.tokens).values(
                id=token_id, digest=digest(secret), kind=kind, subject=subject, scope=scope, created_at=now()
            )
        )
    return secret


def lookup(engine: Engine, secret: str) -> Principal | None:
    with reading(engine) as conn:
        row = conn.execute(
            select(t.tokens.c.kind, t.tokens.c.subject, t.tokens.c.scope).where(
                t.tokens.c.digest == digest(secret), t.tokens.c.revoked_at.is_(None)
            )
        ).first()
    return Principal(row.kind, row.subject, row.scope) if row else None


def revoke(engine: Engine, token_id: str) -> bool:
    """Revoke a token by its id (the part between the first two underscores of the secret); the row stays,
    marked, for `list`. False if there is no such token or it was revoked already."""
    with writing(engine) as conn:
        query = update(t.tokens).where(t.tokens.c.id == token_id, t.tokens.c.revoked_at.is_(None))
        return conn.execute(query.values(revoked_at=now())).rowcount > 0


def listing(engine: Engine) -> list[dict[str, Any]]:
    """Every token, oldest first: id, kind, subject, scope, created, revoked (never the secret or digest)."""
    columns = (t.tokens.c.id, t.tokens.c.kind, t.tokens.c.subject, t.tokens.c.scope, t.tokens.c.created_at,
               t.tokens.c.revoked_at)  # fmt: skip
    with reading(engine) as conn:
        rows = conn.execute(select(*columns).order_by(t.tokens.c.created_at, t.tokens.c.id))
        return [
            {
                "id": row.id,
                "kind": row.kind,
                "subject": row.subject,
                "scope": row.scope,
                "created": iso(row.created_at),
                "revoked": iso(row.revoked_at) if row.revoked_at else None,
            }
            for row in rows
        ]
