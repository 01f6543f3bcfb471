"""Routes of the operator API: /admin/{collection}/{name}, placement, events, nodes; planned moves (drain,
undrain, the failover drill) in moves.py.

(No `from __future__ import annotations`: FastAPI reads the generated signatures at runtime.)
"""

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from isthmus.api.admin.moves import router as moves_router
from isthmus.api.admin.objects import KINDS, SCOPE, AdminKind, key
from isthmus.api.deps import operator, read, state, write
from isthmus.api.errors import not_found
from isthmus.api.preconditions import Preconditions, preconditions
from isthmus.api.state import State
from isthmus.compile import placement
from isthmus.model.admin import NAME_PATTERN
from isthmus.model.limits import LIVE_SECONDS
from isthmus.store.db import MAX_REVISION
from isthmus.store.repo import Doc, new_etag
from isthmus.store.snapshots import load_snapshot
from isthmus.store.tokens import Principal

router = APIRouter(prefix="/admin", tags=["admin"])
# What a client sends there is ignored (a pool's publicIpAddress is stored as derive() claimed it).
READ_ONLY = {"outboundNatAddress", "provisioningState", "drainForced", "publicIpAddress"}


def render(doc: Doc) -> dict[str, Any]:
    return doc.body


def _put(kind: AdminKind, name: str, body: Any, conditions: Preconditions, st: State) -> JSONResponse:
    props = body.properties
    with write(st) as tx:
        existing = tx.get(key(kind.collection, name))
        conditions.check(existing.etag if existing is not None else None)
        refs = kind.check(tx, name, props, existing)
        derived = kind.derive(tx, name, props, existing)
        stored_name = existing.name if existing else name
        etag = new_etag()
        object_id = f"/admin/{kind.collection}/{stored_name}"
        document = {
            "id": object_id,
            "name": stored_name,
            "type": kind.type,
            "etag": etag,
            "tags": body.tags or {},
            "properties": {
                **props.model_dump(exclude_none=True, exclude=READ_ONLY),
                **derived,
                "provisioningState": "Succeeded",
            },
        }
        doc = tx.put(
            key(kind.collection, name),
            scope=SCOPE,
            resource_group=None,
            type=kind.type,
            name=stored_name,
            body=document,
            etag=etag,
            refs=refs,
        )
        verb = "updated" if existing else "created"
        tx.event(SCOPE, f"{kind.collection}.{verb}", object_id, f"{kind.collection} {stored_name} {verb}")
    return JSONResponse(render(doc), status_code=200 if existing else 201)


def add_routes(kind: AdminKind) -> None:
    model = kind.model
    item = f"/{kind.collection}/{{name}}"

    async def put_object(
        name: str = Path(pattern=NAME_PATTERN),
        body: model = Body(),  # type: ignore[valid-type]
        conditions: Preconditions = Depends(preconditions),
        _who: Principal = Depends(operator),
        st: State = Depends(state),
    ) -> JSONResponse:
        return await st.in_writer(lambda: _put(kind, name, body, conditions, st))

    async def get_object(name: str, _who: Principal = Depends(operator), st: State = Depends(state)) -> JSONResponse:
        with read(st) as tx:
            doc = tx.get(key(kind.collection, name))
        if doc is None:
            raise not_found("ResourceNotFound", f"{kind.collection} '{name}' was not found.")
        return JSONResponse(render(doc))

    async def delete_object(
        name: str,
        force: bool = Query(default=False, description="gateways: delete even if not drained (M+N not kept)"),
        conditions: Preconditions = Depends(preconditions),
        _who: Principal = Depends(operator),
        st: State = Depends(state),
    ) -> Response:
        def work() -> Response:
            with write(st) as tx:
                doc = tx.get(key(kind.collection, name))
                conditions.check(doc.etag if doc is not None else None)
                if doc is None:
                    return Response(status_code=204)
                kind.check_delete(tx, doc, force)
                tx.delete(doc)
                kind.after_delete(tx, doc)
                tx.event(SCOPE, f"{kind.collection}.deleted", doc.body["id"], f"{kind.collection} {doc.name} deleted")
            return Response(status_code=200)

        return await st.in_writer(work)

    async def list_objects(_who: Principal = Depends(operator), st: State = Depends(state)) -> JSONResponse:
        with read(st) as tx:
            return JSONResponse({"value": [render(d) for d in tx.list_docs(SCOPE, kind.type)]})

    router.add_api_route(item, put_object, methods=["PUT"], name=f"admin_{kind.collection}_put")
    router.add_api_route(item, get_object, methods=["GET"], name=f"admin_{kind.collection}_get")
    router.add_api_route(item, delete_object, methods=["DELETE"], name=f"admin_{kind.collection}_delete")
    router.add_api_route(f"/{kind.collection}", list_objects, methods=["GET"], name=f"admin_{kind.collection}_list")


for _kind in KINDS.values():
    add_routes(_kind)
router.include_router(moves_router)


@router.get("/placement")
async def get_placement(_who: Principal = Depends(operator), st: State = Depends(state)) -> JSONResponse:
    """Which gateway carries each virtual network gateway, and why anything is left unplaced."""

    def work() -> JSONResponse:  # a whole snapshot and a placement: not on the event loop
        with read(st) as tx:
            snapshot = load_snapshot(tx.conn)
        return JSONResponse(placement.place(snapshot).as_json())

    return await run_in_threadpool(work)


@router.get("/events")
async def get_events(
    request: Request,
    after: int | None = Query(
        default=None, ge=0, le=MAX_REVISION, description="events after this id; by default the latest"
    ),
    limit: int = Query(default=100, ge=1, le=1000),
    scope: str | None = Query(default=None, max_length=64),
    _who: Principal = Depends(operator),
    st: State = Depends(state),
) -> JSONResponse:
    with read(st) as tx:
        events = tx.events(after=after, limit=limit, scope=scope.lower() if scope else None)
    return JSONResponse({"value": events})


@router.get("/nodes")
async def get_nodes(_who: Principal = Depends(operator), st: State = Depends(state)) -> JSONResponse:
    with read(st) as tx:
        nodes = tx.nodes()
    now = datetime.now(UTC)
    for node in nodes:
        node["status"] = json.loads(node["status"])
        # {} for both while a node's capabilities are unknown (it registered without probing)
        node["capabilities"] = json.loads(node["capabilities"])
        node["datapath"] = node["capabilities"].pop("datapath", {})
        node["live"] = (now - datetime.fromisoformat(node["lastSeen"])).total_seconds() <= LIVE_SECONDS
    return JSONResponse({"value": nodes})
