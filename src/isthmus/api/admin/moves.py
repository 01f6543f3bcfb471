"""Planned moves: drain and undrain a gateway, the failover drill; the drainer that moves a drain along.

(No `from __future__ import annotations`: FastAPI reads the route signatures at runtime.)

A drain is the operator's intent stored on the gateway (serviceState Draining, and whether it was forced);
everything else is re-derived from the store, so a controller that restarts resumes it:

```
 POST .../drain ──► refused if a VNet gateway it carries would have nowhere to go (unless force)
        │            serviceState Draining: it keeps what it carries, is given nothing new
        ▼
 drainer (one asyncio task, each pass in the writer thread)
   ├─ the VNet gateway moved last: Connected on its new gateway (connection_status), or STEP_WAIT_SECONDS?
   ├─ drain_step (compile/placement.py): the next one, where a takeover would send it; one assignment
   │   entry written (persist), the target's role with it                                 ─► drain.step
   └─ nothing left (or, forced, nothing that can go anywhere) ─► serviceState OutOfService ─► drain.done
```

Every replica has a drainer, but only the leader's moves anything (api/replica.py); steps are deterministic
and written conditionally (`persist`), so a leader that has just lost the lock and the new one make the same
step, and the later one's write is dropped.
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from isthmus.api.admin.objects import SCOPE, key
from isthmus.api.deps import operator, state, write
from isthmus.api.errors import conflict, not_found
from isthmus.api.placement import persist
from isthmus.api.state import State
from isthmus.compile.placement import drain_step, failover_target, plan
from isthmus.model.admin import DRAINING, NAME_PATTERN, FailoverRequest
from isthmus.model.ids import normalize
from isthmus.model.placement import IN_SERVICE, OUT_OF_SERVICE
from isthmus.model.snapshot import CONNECTION, GATEWAYS, VNET_GATEWAY, Snapshot
from isthmus.store import tables as t
from isthmus.store.repo import Doc, Tx, new_etag
from isthmus.store.tokens import Principal

log = logging.getLogger("isthmus.drain")
router = APIRouter()

STEP_WAIT_SECONDS = 15.0  # the longest a step waits for the moved VNet gateway's connections to be Connected
POLL_SECONDS = 0.25  # how often a running drain looks at what the gateways report
IDLE_SECONDS = 5.0  # without a drain: how often the drainer looks for one (a POST wakes it at once)


# --- the drainer ---------------------------------------------------------------------------------------------


@dataclass
class _Drain:
    """What one running drain remembers between passes (all of it re-derivable: see `Drainer._advance`)."""

    started: float  # monotonic
    step_at: float
    deadline: float  # when the pending VNet gateways are waited for no longer
    pending: dict[str, tuple[str, ...]] = field(default_factory=dict)  # VNet gateway key -> its connections
    moved: int = 0
    blocked: str = ""  # the reason last told in drain.blocked


class Drainer:
    """Moves every Draining gateway's load away, one VNet gateway at a time. `tick` runs in the writer thread
    (as every write here does), so the drains' state needs no lock."""

    def __init__(self, st: State) -> None:
        self.st = st
        self.drains: dict[str, _Drain] = {}  # gateway name (lower) -> its drain
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self.task = self._loop.create_task(self.run(), name="isthmus-drainer")

    def wake(self) -> None:
        self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        while True:
            try:
                busy = await self.st.in_writer(self.tick)
            except RuntimeError:  # the writer is shut down: the controller is stopping
                return
            except Exception:
                log.exception("a drain pass failed; retrying")
                busy = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS if busy else IDLE_SECONDS)
            self._wake.clear()

    def started(self, gateway: str) -> None:
        """A drain asked just now: its first step goes at once (a resumed one first waits for what moved)."""
        now = time.monotonic()
        self.drains[gateway.lower()] = _Drain(started=now, step_at=now, deadline=now)

    def tick(self) -> bool:
        """One pass over the Draining gateways; whether any is still running (a follower's: none)."""
        if not self.st.replica.leading:
            self.drains.clear()
            return False
        snapshot = self.st.documents.snapshot()
        draining = {
            doc["name"].lower(): doc
            for _key, doc in snapshot.of_type(GATEWAYS)
            if doc["properties"].get("serviceState") == DRAINING
        }
        for gone in set(self.drains) - set(draining):
            del self.drains[gone]
        for name in sorted(draining):
            self._advance(snapshot, draining[name])
        return bool(self.drains)

    def _advance(self, snapshot: Snapshot, doc: Any) -> None:
        name, now = doc["name"].lower(), time.monotonic()
        drain = self.drains.get(name)
        if drain is None:  # resumed after a restart: what moved from it may still be coming up
            drain = self.drains[name] = _Drain(started=now, step_at=now, deadline=now + STEP_WAIT_SECONDS)
            for vgw, a in snapshot.assignment.items():
                if (a.moved_from or "").lower() == name and a.gateway.lower() != name:
                    drain.pending[vgw] = _connections(snapshot, vgw)
        if drain.pending and not self._settled(snapshot, doc, drain, now):
            return
        step = drain_step(snapshot, snapshot.assignment, snapshot.gateway_states, doc["name"])
        if step.move is not None:
            self._step(snapshot, doc, drain, step.move, step.assignment, now)
        elif not step.carried or doc["properties"].get("drainForced"):
            self._done(doc, drain, [u.virtual_network_gateway for u in step.stranded], now)
        elif step.stranded and drain.blocked != step.stranded[0].reason:
            drain.blocked = step.stranded[0].reason
            with write(self.st) as tx:
                tx.event(SCOPE, "drain.blocked", doc["id"],
                         f"drain of {doc['name']} waits: {step.stranded[0].virtual_network_gateway} has nowhere to "
                         f"go ({drain.blocked}); undrain it, add room, or drain again with force=true",
                         {"node": doc["properties"]["node"],
                          "virtualNetworkGateway": step.stranded[0].virtual_network_gateway})  # fmt: skip

    def _settled(self, snapshot: Snapshot, doc: Any, drain: _Drain, now: float) -> bool:
        """Whether the VNet gateways moved last are Connected where they went (or waited for long enough)."""
        connected = [vgw for vgw, conns in sorted(drain.pending.items()) if _connected(self.st, snapshot, vgw, conns)]
        late = now >= drain.deadline
        if not connected and not late:
            return False
        with write(self.st) as tx:
            for vgw in connected if not late else sorted(drain.pending):
                a = snapshot.assignment.get(vgw)
                ok = vgw in connected
                details = {"node": a.node if a else None, "virtualNetworkGateway": _id(snapshot, vgw),
                           "ms": round((now - drain.step_at) * 1000)}  # fmt: skip
                message = (f"{details['virtualNetworkGateway']} is Connected on {a.gateway if a else '?'}" if ok else
                           f"{details['virtualNetworkGateway']} is not Connected after {STEP_WAIT_SECONDS:g} s: the "
                           f"drain of {doc['name']} goes on")  # fmt: skip
                tx.event(SCOPE, "drain.connected" if ok else "drain.timeout", doc["id"], message, details)
                del drain.pending[vgw]
        return not drain.pending

    def _step(self, snapshot: Snapshot, doc: Any, drain: _Drain, move: Any, stepped: Any, now: float) -> None:
        vgw = normalize(move.virtual_network_gateway)
        result = plan(snapshot, stepped, snapshot.gateway_states)
        with write(self.st) as tx:
            if not persist(tx, snapshot, result):  # placement changed meanwhile: the next pass steps again
                return
            target = result.assignment[vgw]
            details = {
                "node": target.node,
                "virtualNetworkGateway": move.virtual_network_gateway,
                "from": move.source,
                "to": move.target,
                "fromNode": doc["properties"]["node"],
                "step": drain.moved + 1,
                "ms": round((now - drain.started) * 1000),  # since the drain began (or resumed)
            }
            tx.event(SCOPE, "drain.step", doc["id"], move.reason, details)
        drain.moved += 1
        drain.pending = {vgw: _connections(snapshot, vgw)}
        drain.step_at, drain.deadline, drain.blocked = now, now + STEP_WAIT_SECONDS, ""

    def _done(self, doc: Any, drain: _Drain, stranded: list[str], now: float) -> None:
        with write(self.st) as tx:
            current = tx.get(key("gateways", doc["name"]))
            if current is None or current.body["properties"].get("serviceState") != DRAINING:
                return
            set_service_state(tx, current, OUT_OF_SERVICE)
            details = {"node": doc["properties"]["node"], "gateway": doc["name"], "moved": drain.moved,
                       "ms": round((now - drain.started) * 1000), "stranded": stranded}  # fmt: skip
            left = f"; forced, {len(stranded)} left with nowhere to go" if stranded else ""
            tx.event(SCOPE, "drain.done", doc["id"], f"gateway {doc['name']} is drained: OutOfService{left}", details)
        self.drains.pop(doc["name"].lower(), None)


def _id(snapshot: Snapshot, vgw: str) -> str:
    doc = snapshot.get(vgw)
    return str(doc["id"]) if doc is not None else vgw


def _connections(snapshot: Snapshot, vgw: str) -> tuple[str, ...]:
    """The store keys of the connections of VNet gateway `vgw` (its key)."""
    return tuple(
        sorted(
            k
            for k, doc in snapshot.of_type(CONNECTION)
            if doc["properties"]["virtualNetworkGateway1"]["id"].lower() == vgw
        )
    )


def _connected(st: State, snapshot: Snapshot, vgw: str, connections: tuple[str, ...]) -> bool:
    """Whether every connection of `vgw` is reported Connected by the node it is now assigned to (observed
    state: connection_status). A VNet gateway without connections, or gone, has nothing to wait for."""
    a = snapshot.assignment.get(vgw)
    if a is None or not connections:
        return True
    c = t.connection_status.c
    with st.engine.connect() as conn:
        rows = conn.execute(select(c.connection, c.node, c.status).where(c.connection.in_(connections))).all()
    seen = {row.connection: (row.node, row.status) for row in rows}
    return all(seen.get(k) == (a.node, "Connected") for k in connections)


def drainer_of(request: Request) -> Drainer | None:
    """The app's drainer (None before start-up, e.g. an app without its lifespan)."""
    found: Drainer | None = getattr(request.app.state, "drainer", None)
    return found


# --- the operator's requests ---------------------------------------------------------------------------------


def set_service_state(tx: Tx, doc: Doc, service_state: str, *, forced: bool = False) -> Doc:
    """Store gateway `doc` with `service_state` (a new etag; its references kept)."""
    props = {k: v for k, v in doc.body["properties"].items() if k != "drainForced"}
    props["serviceState"] = service_state
    if forced:
        props["drainForced"] = True
    etag = new_etag()
    body = {**doc.body, "etag": etag, "properties": props}
    return tx.put(doc.key, scope=SCOPE, resource_group=None, type=doc.type, name=doc.name, body=body, etag=etag)


def _gateway(tx: Tx, name: str) -> Doc:
    doc = tx.get(key("gateways", name))
    if doc is None:
        raise not_found("ResourceNotFound", f"gateways '{name}' was not found.")
    return doc


def drain(st: State, name: str, force: bool, drainer: Drainer | None) -> Doc:
    with write(st) as tx:
        doc = _gateway(tx, name)
        props = doc.body["properties"]
        if props.get("serviceState") == OUT_OF_SERVICE:
            return doc  # carries nothing already
        snapshot = st.documents.snapshot()
        step = drain_step(snapshot, snapshot.assignment, snapshot.gateway_states, doc.name)
        if step.stranded and not force:
            first = step.stranded[0]
            more = f" (and {len(step.stranded) - 1} more)" if len(step.stranded) > 1 else ""
            raise conflict(
                "DrainWouldStrandConnections",
                f"Draining gateway {doc.name} would leave virtual network gateway {first.virtual_network_gateway}"
                f"{more} with nowhere to go: {first.reason}. Add a gateway or room first, or drain with force=true.",
                "name",
            )
        if props.get("serviceState") == DRAINING and (props.get("drainForced") or not force):
            return doc  # already draining
        resumed = props.get("serviceState") == DRAINING
        doc = set_service_state(tx, doc, DRAINING, forced=force)
        details = {"node": props["node"], "gateway": doc.name, "carries": len(step.carried), "force": force}
        message = f"gateway {doc.name} drains: {len(step.carried)} virtual network gateways to move one at a time"
        tx.event(SCOPE, "drain.started", doc.body["id"], message + (" (now forced)" if resumed else ""), details)
    if drainer is not None:
        if not resumed:
            drainer.started(doc.name)
        drainer.wake()
    return doc


def undrain(st: State, name: str, drainer: Drainer | None) -> Doc:
    with write(st) as tx:
        doc = _gateway(tx, name)
        was = doc.body["properties"].get("serviceState", IN_SERVICE)
        if was == IN_SERVICE:
            return doc
        carried = sum(1 for a in st.documents.snapshot().assignment.values() if a.gateway.lower() == doc.name.lower())
        doc = set_service_state(tx, doc, IN_SERVICE)
        details = {"node": doc.body["properties"]["node"], "gateway": doc.name, "was": was, "carries": carried}
        message = f"gateway {doc.name} is InService again (was {was}); it takes nothing back"
        tx.event(SCOPE, "drain.stopped", doc.body["id"], message, details)
    if drainer is not None:
        drainer.wake()
    return doc


def failover(st: State, request: FailoverRequest) -> dict[str, Any]:
    vgw = normalize(request.virtualNetworkGateway)
    with write(st) as tx:
        snapshot = st.documents.snapshot()
        doc = snapshot.get(vgw)
        if doc is None or snapshot.types.get(vgw) != VNET_GATEWAY:
            raise not_found("ResourceNotFound", f"Virtual network gateway {request.virtualNetworkGateway} was not "
                            "found.", "virtualNetworkGateway")  # fmt: skip
        drill = failover_target(snapshot, snapshot.assignment, snapshot.gateway_states, vgw)
        if isinstance(drill, str):
            raise conflict("FailoverNotPossible", f"Virtual network gateway {doc['id']} cannot fail over: {drill}.",
                           "virtualNetworkGateway")  # fmt: skip
        move, moved = drill
        result = plan(snapshot, moved, snapshot.gateway_states)
        if not persist(tx, snapshot, result):
            raise conflict("PlacementChanged", "Placement changed while the failover was planned: try again.")
        source, target = snapshot.assignment[vgw], result.assignment[vgw]
        details = {"node": target.node, "virtualNetworkGateway": doc["id"], "from": move.source, "to": move.target,
                   "fromNode": source.node}  # fmt: skip
        tx.event(SCOPE, "placement.failover", doc["id"], move.reason, details)
    return {**details, "reason": move.reason}


@router.post("/gateways/{name}/drain", status_code=202)
async def post_drain(
    request: Request,
    name: str = Path(pattern=NAME_PATTERN),
    force: bool = Query(default=False, description="drain even if some of its load would have nowhere to go"),
    _who: Principal = Depends(operator),
    st: State = Depends(state),
) -> JSONResponse:
    """Move what the gateway carries to others one virtual network gateway at a time, then OutOfService."""
    drainer = drainer_of(request)
    doc = await st.in_writer(lambda: drain(st, name, force, drainer))
    return JSONResponse(doc.body, status_code=202)


@router.post("/gateways/{name}/undrain")
async def post_undrain(
    request: Request,
    name: str = Path(pattern=NAME_PATTERN),
    _who: Principal = Depends(operator),
    st: State = Depends(state),
) -> JSONResponse:
    """InService again: a running drain stops; it takes nothing back (it rejoins as standby or active)."""
    drainer = drainer_of(request)
    doc = await st.in_writer(lambda: undrain(st, name, drainer))
    return JSONResponse(doc.body)


@router.post("/placement/failover")
async def post_failover(
    body: FailoverRequest = Body(), _who: Principal = Depends(operator), st: State = Depends(state)
) -> JSONResponse:
    """A drill: one virtual network gateway to its pool's standby (else the active with most room)."""
    return JSONResponse(await st.in_writer(lambda: failover(st, body)))


def start(app: Any, st: State) -> Drainer:
    """The drainer of `app`, started on the running loop: drains stored as Draining resume at once."""
    drainer = Drainer(st)
    app.state.drainer = drainer
    return drainer
