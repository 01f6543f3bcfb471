"""Routes of the tenant API: /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/...

Routes are generated per resource type so the OpenAPI document carries each type's schema.
(No `from __future__ import annotations` here: FastAPI reads the generated signatures at runtime.)
"""

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from isthmus.api.arm import resource_groups, service
from isthmus.api.arm.kind import Kind
from isthmus.api.arm.kinds import KINDS
from isthmus.api.deps import network_api_version, principal, read, resources_api_version, state, tenant, write
from isthmus.api.errors import ArmError, bad_request, not_found
from isthmus.api.preconditions import Preconditions, preconditions
from isthmus.api.state import State
from isthmus.model import arm
from isthmus.model.ids import GROUP_NAME, ResourceId
from isthmus.store.repo import Doc, Tx, new_etag
from isthmus.store.tokens import Principal

SUB = "/subscriptions/{subscriptionId}"
GROUP = SUB + "/resourceGroups/{resourceGroupName}"
PROVIDER = GROUP + "/providers/Microsoft.Network"

router = APIRouter()


def page(request: Request, st: State, docs: list[Doc], render: Any) -> dict[str, Any]:
    """One page of a list, with nextLink when more follow (keyset paging on the resource id)."""
    body: dict[str, Any] = {"value": [render(doc) for doc in docs[: st.page_size]]}
    if len(docs) > st.page_size:
        body["nextLink"] = str(request.url.include_query_params(**{"$skiptoken": docs[st.page_size - 1].key}))
    return body


def skiptoken(request: Request) -> str | None:
    return request.query_params.get("$skiptoken")


def async_headers(request: Request, tx: Tx, subscription: str, location: str, resource: str) -> dict[str, str]:
    """Azure-AsyncOperation and Location of a completed operation, for clients that poll. Built from what
    the controller made (the checked subscription id, the stored location, a fresh operation id, the checked
    api-version), each quoted, so no text a client chose can bend the URL or the header."""
    op_id = tx.operation(subscription.lower(), resource)
    sub, where = quote(subscription.lower(), safe=""), quote(location, safe="")
    base = f"{str(request.base_url).rstrip('/')}/subscriptions/{sub}/providers/Microsoft.Network/locations/{where}"
    version = quote(request.query_params.get("api-version", ""), safe="")
    return {
        "Azure-AsyncOperation": f"{base}/operations/{op_id}?api-version={version}",
        "Location": f"{base}/operationResults/{op_id}?api-version={version}",
        "Retry-After": "0",
    }


def retry_after(body: dict[str, Any]) -> dict[str, str]:
    """Clients poll a resource that is still Updating; tell them to look again soon (ARM's default is 30 s)."""
    return {"Retry-After": "1"} if body["properties"].get("provisioningState") == "Updating" else {}


def add_kind_routes(kind: Kind) -> None:
    model = kind.model
    item = f"{PROVIDER}/{kind.collection}/{{name}}"
    tag = [kind.collection]

    def rid_of(subscription: str, group: str, name: str) -> ResourceId:
        return ResourceId(subscription, group, kind.collection, name)

    async def put_resource(
        subscriptionId: str,
        resourceGroupName: str,
        name: str,
        body: model = Body(),  # type: ignore[valid-type]
        conditions: Preconditions = Depends(preconditions),
        _v: str = Depends(network_api_version),
        _who: Principal = Depends(tenant),
        st: State = Depends(state),
    ) -> JSONResponse:
        def work() -> JSONResponse:
            try:
                with write(st) as tx:
                    rid = rid_of(subscriptionId, resourceGroupName, name)
                    written = service.put(tx, kind, rid, body, conditions, st.settings.locations)
                    present = kind.present_written(tx, written.doc, st.progress)
            except ArmError as error:
                if error.operator_event is not None:  # the refusal's story, for the operator
                    with write(st) as tx:
                        tx.event("admin", *error.operator_event)
                raise
            rendered = present()
            return JSONResponse(rendered, status_code=201 if written.created else 200, headers=retry_after(rendered))

        return await st.in_writer(work)

    async def get_resource(
        subscriptionId: str,
        resourceGroupName: str,
        name: str,
        _v: str = Depends(network_api_version),
        _who: Principal = Depends(tenant),
        st: State = Depends(state),
    ) -> JSONResponse:
        with read(st) as tx:
            doc = service.get(tx, kind, rid_of(subscriptionId, resourceGroupName, name))
            return JSONResponse(kind.present(tx, doc, st.progress))

    async def patch_tags(
        subscriptionId: str,
        resourceGroupName: str,
        name: str,
        body: arm.TagsObject = Body(),
        conditions: Preconditions = Depends(preconditions),
        _v: str = Depends(network_api_version),
        _who: Principal = Depends(tenant),
        st: State = Depends(state),
    ) -> JSONResponse:
        def work() -> JSONResponse:
            with write(st) as tx:
                doc = service.update_tags(
                    tx, kind, rid_of(subscriptionId, resourceGroupName, name), body.tags, conditions
                )
                present = kind.present_written(tx, doc, st.progress)
            return JSONResponse(present())

        return await st.in_writer(work)

    async def delete_resource(
        request: Request,
        subscriptionId: str,
        resourceGroupName: str,
        name: str,
        conditions: Preconditions = Depends(preconditions),
        _v: str = Depends(network_api_version),
        _who: Principal = Depends(tenant),
        st: State = Depends(state),
    ) -> Response:
        rid = rid_of(subscriptionId, resourceGroupName, name)

        def work() -> Response:
            with write(st) as tx:
                existing = tx.get(rid.key)
                if not service.delete(tx, kind, rid, conditions) or existing is None:
                    return Response(status_code=204)
                headers = async_headers(request, tx, subscriptionId, existing.body["location"], existing.key)
            return Response(status_code=202, headers=headers)

        return await st.in_writer(work)

    async def list_in_group(
        request: Request,
        subscriptionId: str,
        resourceGroupName: str,
        _v: str = Depends(network_api_version),
        _who: Principal = Depends(tenant),
        st: State = Depends(state),
    ) -> JSONResponse:
        def work() -> JSONResponse:
            with read(st) as tx:
                resource_groups.require(tx, subscriptionId, resourceGroupName)
                group = resourceGroupName.lower()
                docs = tx.list_docs(subscriptionId.lower(), kind.type, group, skiptoken(request), st.page_size + 1)
                return JSONResponse(page(request, st, docs, lambda d: kind.present(tx, d, st.progress)))

        return await run_in_threadpool(work)

    async def list_in_subscription(
        request: Request,
        subscriptionId: str,
        _v: str = Depends(network_api_version),
        _who: Principal = Depends(tenant),
        st: State = Depends(state),
    ) -> JSONResponse:
        def work() -> JSONResponse:
            with read(st) as tx:
                docs = tx.list_docs(subscriptionId.lower(), kind.type, None, skiptoken(request), st.page_size + 1)
                return JSONResponse(page(request, st, docs, lambda d: kind.present(tx, d, st.progress)))

        return await run_in_threadpool(work)

    router.add_api_route(item, put_resource, methods=["PUT"], tags=list(tag), name=f"{kind.collection}_CreateOrUpdate")
    router.add_api_route(item, get_resource, methods=["GET"], tags=list(tag), name=f"{kind.collection}_Get")
    router.add_api_route(item, patch_tags, methods=["PATCH"], tags=list(tag), name=f"{kind.collection}_UpdateTags")
    router.add_api_route(item, delete_resource, methods=["DELETE"], tags=list(tag), name=f"{kind.collection}_Delete")
    router.add_api_route(
        f"{PROVIDER}/{kind.collection}",
        list_in_group,
        methods=["GET"],
        tags=list(tag),
        name=f"{kind.collection}_List",
    )
    router.add_api_route(
        f"{SUB}/providers/Microsoft.Network/{kind.collection}",
        list_in_subscription,
        methods=["GET"],
        tags=list(tag),
        name=f"{kind.collection}_ListAll",
    )
    for child in kind.children:
        add_child_routes(kind, child.collection, child.model, child.read_only)


def add_child_routes(kind: Kind, collection: str, model: Any, read_only: bool) -> None:
    item = f"{PROVIDER}/{kind.collection}/{{name}}/{collection}/{{childName}}"
    tag = [kind.collection]

    def rid_of(subscription: str, group: str, name: str, child: str) -> ResourceId:
        return ResourceId(subscription, group, kind.collection, name, collection, child)

    async def put_child(
        subscriptionId: str,
        resourceGroupName: str,
        name: str,
        childName: str,
        body: model = Body(),
        conditions: Preconditions = Depends(preconditions),
        _v: str = Depends(network_api_version),
        _who: Principal = Depends(tenant),
        st: State = Depends(state),
    ) -> JSONResponse:
        rid = rid_of(subscriptionId, resourceGroupName, name, childName)

        def work() -> JSONResponse:
            with write(st) as tx:
                written = service.put_child(tx, kind, rid, collection, childName, body, conditions)
                present = kind.present_written(tx, written.doc, st.progress)
            parent = present()
            rendered = service.find_rendered_child(parent, collection, childName)
            return JSONResponse(rendered, status_code=201 if written.created else 200, headers=retry_after(parent))

        return await st.in_writer(work)

    async def get_child(
        subscriptionId: str,
        resourceGroupName: str,
        name: str,
        childName: str,
        _v: str = Depends(network_api_version),
        _who: Principal = Depends(tenant),
        st: State = Depends(state),
    ) -> JSONResponse:
        rid = rid_of(subscriptionId, resourceGroupName, name, childName)
        with read(st) as tx:
            parent = service.get(tx, kind, rid.parent)
            return JSONResponse(
                service.find_rendered_child(kind.present(tx, parent, st.progress), collection, childName)
            )

    async def delete_child(
        request: Request,
        subscriptionId: str,
        resourceGroupName: str,
        name: str,
        childName: str,
        conditions: Preconditions = Depends(preconditions),
        _v: str = Depends(network_api_version),
        _who: Principal = Depends(tenant),
        st: State = Depends(state),
    ) -> Response:
        rid = rid_of(subscriptionId, resourceGroupName, name, childName)

        def work() -> Response:
            with write(st) as tx:
                if not service.delete_child(tx, kind, rid, collection, childName, conditions):
                    return Response(status_code=204)
                parent = service.get(tx, kind, rid.parent)
                headers = async_headers(request, tx, subscriptionId, parent.body["location"], rid.key)
            return Response(status_code=202, headers=headers)

        return await st.in_writer(work)

    async def list_children(
        subscriptionId: str,
        resourceGroupName: str,
        name: str,
        _v: str = Depends(network_api_version),
        _who: Principal = Depends(tenant),
        st: State = Depends(state),
    ) -> JSONResponse:
        with read(st) as tx:
            parent = service.get(tx, kind, ResourceId(subscriptionId, resourceGroupName, kind.collection, name))
            return JSONResponse({"value": kind.present(tx, parent, st.progress)["properties"].get(collection, [])})

    if not read_only:
        router.add_api_route(item, put_child, methods=["PUT"], tags=list(tag), name=f"{collection}_CreateOrUpdate")
        router.add_api_route(item, delete_child, methods=["DELETE"], tags=list(tag), name=f"{collection}_Delete")
    router.add_api_route(item, get_child, methods=["GET"], tags=list(tag), name=f"{kind.collection}_{collection}_Get")
    router.add_api_route(
        f"{PROVIDER}/{kind.collection}/{{name}}/{collection}",
        list_children,
        methods=["GET"],
        tags=list(tag),
        name=f"{kind.collection}_{collection}_List",
    )


for _kind in KINDS:
    add_kind_routes(_kind)


# --- resource groups (Microsoft.Resources) ------------------------------------------------------------


@router.put(GROUP, tags=["resourceGroups"])
async def put_group(
    subscriptionId: str,
    resourceGroupName: str,
    body: arm.ResourceGroup = Body(),
    conditions: Preconditions = Depends(preconditions),
    _v: str = Depends(resources_api_version),
    _who: Principal = Depends(tenant),
    st: State = Depends(state),
) -> JSONResponse:
    if not body.location:
        raise bad_request("LocationRequired", "The location property is required for this definition.", "location")
    if not GROUP_NAME.match(resourceGroupName):
        raise bad_request(
            "InvalidResourceGroupName",
            "A resource group name has 1 to 90 characters: letters, digits, '_', '-', '.', '(' and ')', "
            "not ending in '.'.",
            "name",
        )
    location = service.check_location(
        body.location,
        st.settings.locations,
        "The provided location '{}' is not available for resource groups.",
        "LocationNotAvailableForResourceGroup",
    )
    key = resource_groups.key(subscriptionId, resourceGroupName)

    def work() -> JSONResponse:
        with write(st) as tx:
            existing = tx.get(key)
            conditions.check(existing.etag if existing is not None else None)
            if existing is not None and existing.body["location"] != location:
                raise bad_request(
                    "InvalidResourceGroupLocation",
                    f"Invalid resource group location '{location}'. The resource group '{existing.name}' already "
                    f"exists in location '{existing.body['location']}'.",
                    "location",
                )
            name = existing.name if existing else resourceGroupName
            doc = resource_groups.body(subscriptionId, name, location, body.tags)
            tx.put(
                key,
                scope=subscriptionId.lower(),
                resource_group=resourceGroupName.lower(),
                type=resource_groups.TYPE,
                name=name,
                body=doc,
                etag=new_etag(),
            )
        return JSONResponse(doc, status_code=200 if existing else 201)

    return await st.in_writer(work)


@router.get(GROUP, tags=["resourceGroups"])
async def get_group(
    subscriptionId: str,
    resourceGroupName: str,
    _v: str = Depends(resources_api_version),
    _who: Principal = Depends(tenant),
    st: State = Depends(state),
) -> JSONResponse:
    with read(st) as tx:
        return JSONResponse(resource_groups.require(tx, subscriptionId, resourceGroupName).body)


@router.delete(GROUP, tags=["resourceGroups"])
async def delete_group(
    request: Request,
    subscriptionId: str,
    resourceGroupName: str,
    conditions: Preconditions = Depends(preconditions),
    _v: str = Depends(resources_api_version),
    _who: Principal = Depends(tenant),
    st: State = Depends(state),
) -> Response:
    def work() -> Response:
        with write(st) as tx:
            if not service.delete_group(tx, subscriptionId, resourceGroupName, conditions):
                return Response(status_code=204)
            op_id = tx.operation(subscriptionId.lower(), resource_groups.key(subscriptionId, resourceGroupName))
        sub = quote(subscriptionId.lower(), safe="")
        location = f"{str(request.base_url).rstrip('/')}/subscriptions/{sub}/operationresults/{op_id}"
        return Response(status_code=202, headers={"Location": location, "Retry-After": "0"})

    return await st.in_writer(work)


# The Location URL says operationresults (Azure's spelling); CanonicalPaths folds it to operationResults.
@router.get(SUB + "/operationResults/{operationId}", tags=["resourceGroups"], include_in_schema=False)
async def group_operation_result(
    subscriptionId: str,
    operationId: str,
    _who: Principal = Depends(tenant),
) -> Response:
    return Response(status_code=200)


@router.get("/subscriptions", tags=["subscriptions"])
async def list_subscriptions(
    _v: str = Depends(resources_api_version), who: Principal = Depends(principal)
) -> JSONResponse:
    """Azure's Subscriptions - List: the subscriptions the caller's token reaches (a tenant token: its own;
    other tokens name none, whatever their scope)."""
    if who.kind != "subscription":
        return JSONResponse({"value": []})
    sub = who.subject
    return JSONResponse({"value": [{"id": f"/subscriptions/{sub}", "subscriptionId": sub, "displayName": sub,
                                    "state": "Enabled"}]})  # fmt: skip


@router.get(SUB + "/resourcegroups", tags=["resourceGroups"])
async def list_groups(
    request: Request,
    subscriptionId: str,
    _v: str = Depends(resources_api_version),
    _who: Principal = Depends(tenant),
    st: State = Depends(state),
) -> JSONResponse:
    with read(st) as tx:
        docs = tx.list_docs(subscriptionId.lower(), resource_groups.TYPE, None, skiptoken(request), st.page_size + 1)
        return JSONResponse(page(request, st, docs, lambda d: d.body))


# --- asynchronous operation status ------------------------------------------------------------------


@router.get(SUB + "/providers/Microsoft.Network/locations/{location}/operations/{operationId}", tags=["operations"])
async def operation_status(
    subscriptionId: str,
    location: str,
    operationId: str,
    _who: Principal = Depends(tenant),
    st: State = Depends(state),
) -> JSONResponse:
    status = _operation(st, subscriptionId, operationId)
    return JSONResponse({"status": status, "name": operationId})


@router.get(
    SUB + "/providers/Microsoft.Network/locations/{location}/operationResults/{operationId}",
    tags=["operations"],
)
async def operation_result(
    subscriptionId: str,
    location: str,
    operationId: str,
    _who: Principal = Depends(tenant),
    st: State = Depends(state),
) -> Response:
    _operation(st, subscriptionId, operationId)
    return Response(status_code=204)


def _operation(st: State, subscription: str, op_id: str) -> str:
    with read(st) as tx:
        status = tx.operation_status(subscription.lower(), op_id)
    if status is None:
        raise not_found("OperationNotFound", f"Operation {op_id} was not found.")
    return status
