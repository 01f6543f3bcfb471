"""The ARM verbs over any Kind, each in one transaction: a rejected request changes nothing."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from isthmus.api.arm import resource_groups
from isthmus.api.arm.kind import Kind
from isthmus.api.arm.kinds import BY_TYPE, DELETE_ORDER
from isthmus.api.errors import ArmError, bad_request, json_path, not_found
from isthmus.api.preconditions import ALWAYS, Preconditions
from isthmus.model.ids import RESOURCE_NAME, ResourceId
from isthmus.model.snapshot import FabricSettings
from isthmus.store.repo import Doc, Tx, new_etag


@dataclass(frozen=True)
class Written:
    doc: Doc
    created: bool


def check_name(name: str, target: str) -> None:
    if not RESOURCE_NAME.match(name):
        raise bad_request(
            "InvalidResourceName",
            f"Resource name {name} is invalid. The name can be up to 80 characters long. It must begin with a word "
            "character, and it must end with a word character or with '_'. The name may contain word characters or "
            "'.', '-', '_'.",
            target,
        )


def normal_location(text: str) -> str:
    return text.replace(" ", "").lower()


def check_location(text: str, locations: Collection[str], message: str, code: str) -> str:
    """The location normalised, if it is one the operator configured; else Azure's error naming them."""
    location = normal_location(text)
    if location not in locations:
        shown = text if text.isprintable() and len(text) <= 90 else repr(text[:90])
        raise bad_request(
            code,
            message.format(shown) + f" List of available regions is '{','.join(locations)}'.",
            "location",
        )
    return location


def put(
    tx: Tx,
    kind: Kind,
    rid: ResourceId,
    request: Any,
    conditions: Preconditions = ALWAYS,
    locations: Collection[str] = FabricSettings.locations,
) -> Written:
    check_name(rid.name, "name")
    resource_groups.require(tx, rid.subscription, rid.resource_group)
    existing = tx.get(rid.key)
    conditions.check(existing.etag if existing is not None else None)
    if request.location and existing is None:  # an existing resource keeps the location it was created in
        check_location(
            request.location,
            locations,
            f"The provided location '{{}}' is not available for resource type '{kind.type}'.",
            "LocationNotAvailableForResourceType",
        )
    if existing is not None:  # ARM keeps the casing of the first create
        rid = ResourceId(rid.subscription, existing.body["id"].split("/")[4], rid.collection, existing.name)
    location = normal_location(request.location or "")
    if not location:
        if existing is None:
            raise bad_request("LocationRequired", "The location property is required for this definition.", "location")
        location = existing.body["location"]
    elif existing is not None and existing.body["location"] != location:
        raise bad_request(
            "InvalidResourceLocation",
            f"The resource '{rid.name}' already exists in location '{existing.body['location']}'.",
            "location",
        )
    prepared = kind.prepare(tx, rid, request, existing)
    etag = new_etag()
    body: dict[str, Any] = {
        "id": str(rid),
        "name": rid.name,
        "type": kind.type,
        "location": location,
        "tags": request.tags if request.tags is not None else {},
        "etag": etag,
        **prepared.extra,
        "properties": prepared.properties,
    }
    doc = tx.put(
        rid.key,
        scope=rid.subscription.lower(),
        resource_group=rid.resource_group.lower(),
        type=kind.type,
        name=rid.name,
        body=body,
        etag=etag,
        refs=prepared.refs,
    )
    kind.after_put(tx, doc, existing)
    verb = "updated" if existing else "created"
    tx.event(doc.scope, f"{kind.collection}.{verb}", body["id"], f"{kind.type} {rid.name} {verb}")
    return Written(doc, existing is None)


def get(tx: Tx, kind: Kind, rid: ResourceId) -> Doc:
    doc = tx.get(rid.key)
    if doc is None or doc.type != kind.type:
        raise not_found(
            "ResourceNotFound",
            f"The Resource '{kind.type}/{rid.name}' under resource group '{rid.resource_group}' was not found.",
        )
    return doc


def delete(tx: Tx, kind: Kind, rid: ResourceId, conditions: Preconditions = ALWAYS) -> bool:
    """False if there was nothing to delete (ARM answers 204)."""
    doc = tx.get(rid.key)
    conditions.check(doc.etag if doc is not None and doc.type == kind.type else None)
    if doc is None:
        return False
    kind.check_delete(tx, doc)
    tx.delete(doc)
    kind.after_delete(tx, doc)
    tx.event(doc.scope, f"{kind.collection}.deleted", doc.body["id"], f"{kind.type} {doc.name} deleted")
    return True


def update_tags(
    tx: Tx, kind: Kind, rid: ResourceId, tags: dict[str, str] | None, conditions: Preconditions = ALWAYS
) -> Doc:
    doc = get(tx, kind, rid)
    conditions.check(doc.etag)
    etag = new_etag()
    body = {**doc.body, "tags": tags or {}, "etag": etag}
    updated = tx.put(
        doc.key,
        scope=doc.scope,
        resource_group=doc.resource_group,
        type=doc.type,
        name=doc.name,
        body=body,
        etag=etag,
    )
    tx.event(doc.scope, f"{kind.collection}.updated", body["id"], f"{kind.type} {doc.name} tags updated")
    return updated


def render(tx: Tx, kind: Kind, doc: Doc) -> dict[str, Any]:
    return kind.render(tx, doc)


# --- child resources (subnets, securityRules): written through their parent ------------------------


def put_child(
    tx: Tx,
    kind: Kind,
    rid: ResourceId,
    collection: str,
    name: str,
    child: BaseModel,
    conditions: Preconditions = ALWAYS,
) -> Written:
    """Create or replace one child inside its parent, then re-run the parent's checks on the whole. A child
    carries its parent's etag, so conditions compare with that (the child must exist for If-Match)."""
    spec = kind.child(collection)
    if spec is None or spec.read_only:
        raise ArmError(405, "MethodNotAllowed", f"{collection} cannot be written.")
    check_name(name, "name")
    parent = get(tx, kind, rid.parent)
    props = dict(parent.body["properties"])
    items = [dict(item) for item in props.get(spec.collection, [])]
    new_item = child.model_dump(exclude_none=True)
    new_item["name"] = name
    replaced = False
    for index, item in enumerate(items):
        if item["name"].lower() == name.lower():
            new_item["name"] = item["name"]
            items[index] = new_item
            replaced = True
    conditions.check(parent.etag if replaced else None)
    if not replaced:
        items.append(new_item)
    props[spec.collection] = items
    request = reparse(kind, parent, props)
    written = put(tx, kind, rid.parent, request)
    return Written(written.doc, not replaced)


def delete_child(
    tx: Tx, kind: Kind, rid: ResourceId, collection: str, name: str, conditions: Preconditions = ALWAYS
) -> bool:
    spec = kind.child(collection)
    if spec is None or spec.read_only:
        raise ArmError(405, "MethodNotAllowed", f"{collection} cannot be deleted.")
    parent = tx.get(rid.parent.key)
    items = parent.body["properties"].get(spec.collection, []) if parent is not None else []
    kept = [item for item in items if item["name"].lower() != name.lower()]
    conditions.check(parent.etag if parent is not None and len(kept) < len(items) else None)
    if parent is None:
        return False
    props = dict(parent.body["properties"])
    if len(kept) == len(items):
        return False
    props[spec.collection] = kept
    put(tx, kind, rid.parent, reparse(kind, parent, props))
    return True


def reparse(kind: Kind, parent: Doc, properties: dict[str, Any]) -> Any:
    """The parent as a request again, with new properties (its stored form is always a valid request)."""
    body = {k: v for k, v in parent.body.items() if k in ("location", "tags", "sku")}
    body["properties"] = properties
    try:
        return kind.model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        raise bad_request("InvalidRequestFormat", f"{json_path(loc)}: {first['msg']}", json_path(loc)) from None


def find_rendered_child(rendered: dict[str, Any], collection: str, name: str) -> dict[str, Any]:
    for item in rendered["properties"].get(collection, []):
        if item["name"].lower() == name.lower():
            return dict(item)
    raise not_found("NotFound", f"{collection} '{name}' was not found.")


# --- resource groups ------------------------------------------------------------------------------


def delete_group(tx: Tx, subscription: str, name: str, conditions: Preconditions = ALWAYS) -> bool:
    group = tx.get(resource_groups.key(subscription, name))
    conditions.check(group.etag if group is not None else None)
    if group is None:
        return False
    docs = [d for d in tx.in_group(subscription.lower(), name.lower()) if d.type != resource_groups.TYPE]
    rank = {collection: index for index, collection in enumerate(DELETE_ORDER)}
    for doc in sorted(docs, key=lambda d: rank.get(d.type.split("/")[-1].lower(), 99)):
        kind = BY_TYPE[doc.type.lower()]
        kind.check_delete(tx, doc)
        tx.delete(doc)
        kind.after_delete(tx, doc)
    tx.delete(group)
    tx.event(subscription.lower(), "resourceGroups.deleted", group.body["id"], f"resource group {name} deleted")
    return True
