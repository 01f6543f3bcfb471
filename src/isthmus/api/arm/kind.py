"""What every ARM resource type of the tenant API has in common.

A `Kind` knows its schema, how to turn a validated request into the stored document (checking
references and taking addresses inside the caller's transaction), how to render a stored document
(back-references computed from the reference graph, secrets removed), and what blocks a delete.
Child collections (subnets, securityRules, …) live inside their parent's document and are written
by re-preparing the whole parent, so the parent's checks always run.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable, Sized
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from isthmus.api.errors import ArmError, bad_request
from isthmus.model import ids
from isthmus.model.ids import ResourceId
from isthmus.store.repo import Doc, Tx

SUCCEEDED = "Succeeded"


@dataclass(frozen=True)
class Child:
    collection: str  # URL segment and field name, e.g. "subnets"
    type: str  # e.g. Microsoft.Network/virtualNetworks/subnets
    model: builtins.type[BaseModel]
    read_only: bool = False


@dataclass
class Prepared:
    """A document's properties as they will be stored, plus the references they make."""

    properties: dict[str, Any]
    refs: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # top-level fields beside properties (sku, zones)


class Kind:
    collection: ClassVar[str]
    type: ClassVar[str]
    model: ClassVar[builtins.type[BaseModel]]
    children: ClassVar[tuple[Child, ...]] = ()
    location_required: ClassVar[bool] = True

    def prepare(self, tx: Tx, rid: ResourceId, request: Any, existing: Doc | None) -> Prepared:
        raise NotImplementedError

    def after_put(self, tx: Tx, doc: Doc, existing: Doc | None) -> None:
        """Work that needs the new document and its references stored (e.g. releasing addresses)."""

    def render(self, tx: Tx, doc: Doc) -> dict[str, Any]:
        """The document as a GET returns it. Kinds add back-references or strip secrets."""
        return doc.body

    def present(self, tx: Tx, doc: Doc, progress: Progress | None = None) -> dict[str, Any]:
        """`render`, with the provisioningState the nodes' reports give it: Failed while a node reports it
        cannot apply the resource (or it runs nowhere), Updating while a live node that realises it has not
        applied it yet."""
        return self.placed(with_state(self.render(tx, doc), doc, tx.failure_of(doc.key) is not None, progress),
                           doc, progress)  # fmt: skip

    def present_written(self, tx: Tx, doc: Doc, progress: Progress) -> Callable[[], dict[str, Any]]:
        """`present` for a document this write transaction stored: rendered now, its provisioningState taken
        once the write has committed (which nodes must apply it is a question about the new state)."""
        body, failed = self.render(tx, doc), tx.failure_of(doc.key) is not None
        return lambda: self.placed(with_state(body, doc, failed, progress), doc, progress)

    def placed(self, body: dict[str, Any], doc: Doc, progress: Progress | None) -> dict[str, Any]:
        """What a kind placed on a gateway shows when it runs nowhere (kinds of the gateway pools)."""
        return body

    def check_delete(self, tx: Tx, doc: Doc) -> None:
        """Raise if something still uses this resource."""

    def after_delete(self, tx: Tx, doc: Doc) -> None:
        """Release what the resource held beyond its own allocations (released by the store)."""

    def child(self, collection: str) -> Child | None:
        for child in self.children:
            if child.collection.lower() == collection.lower():
                return child
        return None


class Progress(Protocol):
    """What the nodes' reports and the placement say of a resource (api/state.py)."""

    def pending(self, key: str, revision: int) -> bool: ...

    def unplaced(self, virtual_network_gateway: str) -> str | None: ...

    def shared_address(self, virtual_network_gateway: str) -> str | None: ...


def with_state(body: dict[str, Any], doc: Doc, failed: bool, progress: Progress | None) -> dict[str, Any]:
    """The rendered `body` with its provisioningState."""
    state = SUCCEEDED
    if failed:
        state = "Failed"
    elif progress is not None and progress.pending(doc.key, doc.revision):
        state = "Updating"
    if state != body["properties"].get("provisioningState"):
        body = {**body, "properties": {**body["properties"], "provisioningState": state}}
    return body


# --- helpers the kinds share ------------------------------------------------------------------------


def guid(existing: Doc | None) -> str:
    if existing is not None:
        previous = existing.body.get("properties", {}).get("resourceGuid")
        if isinstance(previous, str):
            return previous
    return str(uuid.uuid4())


def child_id(rid: ResourceId, collection: str, name: str) -> str:
    return str(rid.child(collection, name))


def at_most(items: Sized, limit: int, code: str, what: str, target: str) -> None:
    """Refuse a list longer than the limit Azure (or isthmus, see model/limits.py) sets for it."""
    if len(items) > limit:
        raise bad_request(code, f"At most {limit} {what} are allowed; the request has {len(items)}.", target)


def unique_names(items: list[Any], target: str) -> None:
    seen: set[str] = set()
    for index, item in enumerate(items):
        name = getattr(item, "name", None)
        if not name:
            raise bad_request("InvalidRequestFormat", "Every element needs a name.", f"{target}[{index}].name")
        if not ids.RESOURCE_NAME.match(name):
            raise bad_request("InvalidResourceName", f"'{name}' is not a valid name.", f"{target}[{index}].name")
        if name.lower() in seen:
            raise bad_request(
                "DuplicateResourceName",
                f"The name '{name}' is used twice in {target}.",
                f"{target}[{index}].name",
            )
        seen.add(name.lower())


def resolve(
    tx: Tx, rid: ResourceId, ref: Any, target: str, collection: str, child_collection: str | None = None
) -> tuple[ResourceId, Doc]:
    """The resource a reference names, checked: same subscription, right type, existing.

    A reference to another subscription is reported exactly like a missing resource.
    """
    text = ref.get("id") if isinstance(ref, dict) else getattr(ref, "id", None)
    parsed = ids.parse(text) if isinstance(text, str) else None
    wrong_shape = (
        parsed is None
        or parsed.collection.lower() != collection.lower()
        or (child_collection or "").lower() != (parsed.child_collection or "").lower()
    )
    if wrong_shape or parsed is None:
        raise bad_request(
            "InvalidResourceReference",
            f"Reference '{text}' is not a {collection}{'/' + child_collection if child_collection else ''} id.",
            target,
        )
    doc = tx.get(parsed.key) if parsed.subscription.lower() == rid.subscription.lower() else None
    if doc is None or (child_collection and find_child(doc.body, child_collection, parsed.child_name) is None):
        raise bad_request(
            "InvalidResourceReference",
            f"Resource {text} referenced by resource {rid} was not found.",
            target,
        )
    return parsed, doc


def find_child(body: dict[str, Any], collection: str, name: str | None) -> dict[str, Any] | None:
    for item in body.get("properties", {}).get(collection, []):
        if name is not None and item.get("name", "").lower() == name.lower():
            return dict(item)
    return None


def in_use(tx: Tx, target: str, code: str, what: str, *, below: bool = True, ignore: str | None = None) -> None:
    users = sorted({source for source, _path, _t in tx.referrers(target, below=below) if source != ignore})
    if users:
        raise ArmError(400, code, f"{what} is in use by {', '.join(users[:5])} and cannot be deleted.")
