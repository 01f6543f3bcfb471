"""Bearer tokens: the secret is shown once at creation; the store keeps only its SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select

from isthmus.model.ids import SUBSCRIPTION_ID
from isthmus.store import tables as t
from isthmus.store.db import reading, writing
from isthmus.store.repo import now

KINDS = ("subscription", "operator", "node")


@dataclass(frozen=True)
class Principal:
    kind: str  # subscription | operator | node
    subject: str  # subscription id, "operator", or node name

    def may_use_subscription(self, subscription: str) -> bool:
        return self.kind == "operator" or (self.kind == "subscription" and self.subject == subscription.lower())

    def may_act_as_node(self, node: str) -> bool:
        return self.kind == "operator" or (self.kind == "node" and self.subject == node)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(engine: Engine, kind: str, subject: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"token kind must be one of {KINDS}")
    if kind == "subscription" and not SUBSCRIPTION_ID.match(subject):
        raise ValueError(f"'{subject}' is not a subscription id (a GUID)")
    token_id = secrets.token_hex(8)
    secret = f"ism_{token_id}_{secrets.token_urlsafe(32)}"
    subject = subject.lower() if kind == "subscription" else subject
    with writing(engine) as conn:
        conn.execute(
            insert(t.tokens).values(id=token_id, digest=digest(secret), kind=kind, subject=subject, created_at=now())
        )
    return secret


def lookup(engine: Engine, secret: str) -> Principal | None:
    with reading(engine) as conn:
        row = conn.execute(
            select(t.tokens.c.kind, t.tokens.c.subject).where(t.tokens.c.digest == digest(secret))
        ).first()
    return Principal(row.kind, row.subject) if row else None


def revoke(engine: Engine, token_id: str) -> bool:
    """Remove a token by its id (the part between the first two underscores of the secret)."""
    with writing(engine) as conn:
        return conn.execute(delete(t.tokens).where(t.tokens.c.id == token_id)).rowcount > 0
