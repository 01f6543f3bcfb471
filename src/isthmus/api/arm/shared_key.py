"""A connection's pre-shared key, for its owner: GET and PUT …/connections/{name}/sharedkey and POST
…/sharedkey/reset (Azure's VirtualNetworkGatewayConnections_GetSharedKey, _SetSharedKey, _ResetSharedKey:
a new random key of keyLength characters). The key is stored sealed; these calls and the carrying
gateway's document are the only places it is opened. A new key re-keys the tunnel.

(No `from __future__ import annotations`: FastAPI reads the signatures at runtime.)
"""

import secrets
import string
from typing import Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from isthmus.api.arm import service
from isthmus.api.arm.gateways import check_shared_key
from isthmus.api.arm.kinds import BY_COLLECTION
from isthmus.api.deps import network_api_version, read, state, tenant, write
from isthmus.api.errors import bad_request, not_found
from isthmus.api.state import State
from isthmus.model import limits
from isthmus.model.ids import ResourceId
from isthmus.store.repo import Doc, Tx, new_etag
from isthmus.store.sealed import SEALED
from isthmus.store.tokens import Principal

router = APIRouter()
PATH = (
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network"
    "/connections/{name}/sharedkey"
)
CONNECTIONS = BY_COLLECTION["connections"]
NO_STORE = {"Cache-Control": "no-store"}
KEY_ALPHABET = string.ascii_letters + string.digits


class ConnectionSharedKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, max_length=1024)
    value: str = Field(min_length=1, max_length=128)


def update_properties(tx: Tx, doc: Doc, changes: dict[str, Any]) -> None:
    """Store `doc` with `changes` over its properties and a new etag: the actions on a connection that are
    not PUTs of it (its key, a reset)."""
    etag = new_etag()
    body = {**doc.body, "etag": etag, "properties": {**doc.body["properties"], **changes}}
    tx.put(doc.key, scope=doc.scope, resource_group=doc.resource_group, type=doc.type, name=doc.name, body=body,
           etag=etag)  # fmt: skip


def _connection(tx: Tx, subscription: str, group: str, name: str) -> Doc:
    service.check_name(name, "name")
    doc = service.get(tx, CONNECTIONS, ResourceId(subscription, group, "connections", name))
    if SEALED not in doc.body["properties"]:
        raise not_found("SharedKeyNotFound", f"Connection {doc.name} has no shared key (it is not IPsec).")
    return doc


@router.get(PATH, tags=["connections"], name="VirtualNetworkGatewayConnections_GetSharedKey")
async def get_shared_key(
    subscriptionId: str,
    resourceGroupName: str,
    name: str,
    _v: str = Depends(network_api_version),
    _who: Principal = Depends(tenant),
    st: State = Depends(state),
) -> JSONResponse:
    with read(st) as tx:
        doc = _connection(tx, subscriptionId, resourceGroupName, name)
        value = tx.unseal(doc.body["properties"][SEALED], doc.key)
    return JSONResponse({"value": value}, headers=NO_STORE)


@router.put(PATH, tags=["connections"], name="VirtualNetworkGatewayConnections_SetSharedKey")
async def set_shared_key(
    subscriptionId: str,
    resourceGroupName: str,
    name: str,
    body: ConnectionSharedKey = Body(),
    _v: str = Depends(network_api_version),
    _who: Principal = Depends(tenant),
    st: State = Depends(state),
) -> JSONResponse:
    if (
        body.id is not None
        and body.id.lower() != ResourceId(subscriptionId, resourceGroupName, "connections", name).key
    ):
        raise bad_request("InvalidRequestFormat", "id is not this connection's.", "id")

    check_shared_key(body.value, "value")

    return await _store_key(st, subscriptionId, resourceGroupName, name, body.value, {"value": body.value})


class ConnectionResetSharedKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keyLength: int = Field(ge=1, le=limits.SHARED_KEY_LENGTH)


@router.post(PATH + "/reset", tags=["connections"], name="VirtualNetworkGatewayConnections_ResetSharedKey")
async def reset_shared_key(
    subscriptionId: str,
    resourceGroupName: str,
    name: str,
    body: ConnectionResetSharedKey = Body(),
    _v: str = Depends(network_api_version),
    _who: Principal = Depends(tenant),
    st: State = Depends(state),
) -> JSONResponse:
    """A new random key of keyLength letters and digits; the answer is the length, as Azure's (read the key
    with getSharedKey)."""
    value = "".join(secrets.choice(KEY_ALPHABET) for _ in range(body.keyLength))
    return await _store_key(st, subscriptionId, resourceGroupName, name, value, {"keyLength": body.keyLength})


async def _store_key(
    st: State, subscription: str, group: str, name: str, value: str, answer: dict[str, Any]
) -> JSONResponse:
    def work() -> JSONResponse:
        with write(st) as tx:
            doc = _connection(tx, subscription, group, name)
            update_properties(tx, doc, {SEALED: tx.seal(value, doc.key)})
            tx.event(doc.scope, "connections.sharedKeySet", doc.body["id"], f"shared key of {doc.name} set")
        return JSONResponse(answer, headers=NO_STORE)

    return await st.in_writer(work)
