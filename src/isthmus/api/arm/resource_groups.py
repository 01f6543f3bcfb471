"""Microsoft.Resources resourceGroups, the minimum ARM needs: a group must exist to hold resources."""

from __future__ import annotations

from typing import Any

from isthmus.api.errors import not_found
from isthmus.model import ids
from isthmus.store.repo import Doc, Tx

TYPE = "Microsoft.Resources/resourceGroups"


def key(subscription: str, name: str) -> str:
    return ids.normalize(ids.group_id(subscription, name))


def require(tx: Tx, subscription: str, name: str) -> Doc:
    doc = tx.get(key(subscription, name))
    if doc is None:
        raise not_found("ResourceGroupNotFound", f"Resource group '{name}' could not be found.")
    return doc


def body(subscription: str, name: str, location: str, tags: dict[str, str] | None) -> dict[str, Any]:
    return {
        "id": ids.group_id(subscription, name),
        "name": name,
        "type": TYPE,
        "location": location,
        "tags": tags or {},
        "properties": {"provisioningState": "Succeeded"},
    }
