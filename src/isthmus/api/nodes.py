"""The agent protocol: nodes register, long-poll their desired state, and report what they applied.

(No `from __future__ import annotations`: FastAPI reads the signatures at runtime.)
"""

import asyncio
import functools
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, field_validator

from isthmus.api import bgp_reports
from isthmus.api.bgp_reports import BgpReport
from isthmus.api.deps import principal, read, state, write
from isthmus.api.documents import Answer
from isthmus.api.errors import ArmError, bad_request, conflict, not_found
from isthmus.api.state import State
from isthmus.model import limits
from isthmus.model.admin import NAME_PATTERN
from isthmus.model.ids import normalize
from isthmus.store.db import MAX_REVISION, current_revision
from isthmus.store.repo import Tx, dumps
from isthmus.store.tokens import Principal

router = APIRouter(prefix="/v1/nodes", tags=["agents"])
NODE = Path(pattern=NAME_PATTERN)


DatapathWord = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+$", max_length=limits.DATAPATH_WORD_LENGTH)]


class NodeCapabilities(BaseModel):
    """linux/capabilities.py's Capabilities as a node sends them, with the datapath it chose from them
    (linux/datapath.py). Strict booleans: a node that sends "yes" has a bug worth a 400."""

    model_config = ConfigDict(extra="forbid")
    kernel: str = Field(max_length=limits.KERNEL_RELEASE_LENGTH)
    esp: StrictBool
    gre: StrictBool
    vlan: StrictBool
    vrf: StrictBool
    netem: StrictBool
    vxlan: StrictBool
    nft: StrictBool
    nft_flowtable: StrictBool
    datapath: dict[DatapathWord, DatapathWord] = Field(default_factory=dict, max_length=limits.DATAPATH_FUNCTIONS)


class Registration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["host", "mux", "gateway"]
    address: str | None = Field(default=None, max_length=64)
    capabilities: NodeCapabilities | None = None  # None: an agent that does not probe (older ones)


class ResourceStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["Succeeded", "Failed"]
    message: str = Field(default="", max_length=2000)


ResourceKey = Annotated[str, StringConstraints(min_length=1, max_length=limits.REPORT_RESOURCE_ID_LENGTH)]
DaemonText = Annotated[str, StringConstraints(max_length=limits.REPORT_DAEMON_TEXT_LENGTH)]
PeerAddress = Annotated[str, StringConstraints(min_length=1, max_length=limits.REPORT_BGP_PEER_LENGTH)]
SessionState = Annotated[str, StringConstraints(max_length=limits.REPORT_BGP_STATE_LENGTH)]


ConnectionStatus = Literal["Unknown", "Connecting", "Connected", "NotConnected"]
Counter = Annotated[int, Field(ge=0, le=2**63 - 1)]


class TunnelReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tunnel: str = Field(max_length=limits.REPORT_DAEMON_TEXT_LENGTH)
    connectionStatus: ConnectionStatus
    ingressBytesTransferred: Counter = 0
    egressBytesTransferred: Counter = 0
    lastConnectionEstablishedUtcTime: str | None = Field(default=None, max_length=40)


IkeText = Annotated[str, StringConstraints(max_length=64)]


class ChildSaReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: IkeText = ""
    encapsulation: IkeText = ""
    encryption: IkeText = ""
    encryptionKeySize: IkeText = ""
    integrity: IkeText = ""
    bytesIn: IkeText = ""
    bytesOut: IkeText = ""
    packetsIn: IkeText = ""
    packetsOut: IkeText = ""
    rekeyInSeconds: IkeText = ""
    lifetimeSeconds: IkeText = ""
    localTrafficSelectors: list[IkeText] = Field(default_factory=list, max_length=limits.TRAFFIC_SELECTOR_RANGES)
    remoteTrafficSelectors: list[IkeText] = Field(default_factory=list, max_length=limits.TRAFFIC_SELECTOR_RANGES)


class IkeSaReport(BaseModel):
    """One IKE SA as charon reports it (what getikesas returns): algorithms, endpoints, never SPIs or keys."""

    model_config = ConfigDict(extra="forbid")
    localEndpoint: IkeText = ""
    localPort: IkeText = ""
    remoteEndpoint: IkeText = ""
    remotePort: IkeText = ""
    state: IkeText = ""
    encryption: IkeText = ""
    encryptionKeySize: IkeText = ""
    integrity: IkeText = ""
    prf: IkeText = ""
    dhGroup: IkeText = ""
    establishedSeconds: IkeText = ""
    rekeyInSeconds: IkeText = ""
    childSas: list[ChildSaReport] = Field(default_factory=list, max_length=4)


class ConnectionReport(BaseModel):
    """What a gateway observed of one connection it carries: Azure's connection status fields."""

    model_config = ConfigDict(extra="forbid")
    connectionStatus: ConnectionStatus
    ingressBytesTransferred: Counter = 0
    egressBytesTransferred: Counter = 0
    tunnelConnectionStatus: list[TunnelReport] = Field(default_factory=list, max_length=limits.REPORT_TUNNELS)
    lastConnectionEstablishedUtcTime: str | None = Field(default=None, max_length=40)
    reason: str = Field(default="", max_length=500)
    ikeSas: list[IkeSaReport] = Field(default_factory=list, max_length=4)
    shapingDroppedPackets: Counter = 0  # dropped by its tier, both ways
    ingressPackets: Counter = 0  # isthmus: packets from the site (the metrics' packet counters)
    egressPackets: Counter = 0
    bgp: BgpReport | None = None  # a BGP connection's session and routes (api/bgp_reports.py)


class StatusReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    appliedRevision: int = Field(ge=0, le=MAX_REVISION)
    resources: dict[ResourceKey, ResourceStatus] = Field(default_factory=dict, max_length=limits.REPORT_RESOURCES)
    daemons: dict[DaemonText, DaemonText] = Field(default_factory=dict, max_length=limits.REPORT_DAEMONS)
    details: dict[str, Any] = Field(default_factory=dict)
    connections: dict[ResourceKey, ConnectionReport] | None = Field(
        default=None, max_length=limits.REPORT_RESOURCES
    )  # a gateway's; None: the node observes none
    sessions: dict[PeerAddress, SessionState] | None = Field(
        default=None,
        max_length=limits.REPORT_BGP_SESSIONS,
        description="a MUX's BGP sessions: peer address -> state",
    )  # Idle Connect Active OpenSent OpenConfirm Established, or Down (linux/speaker.py)

    @field_validator("details")
    @classmethod
    def _bounded(cls, details: dict[str, Any]) -> dict[str, Any]:
        if len(dumps(details).encode()) > limits.REPORT_DETAILS_BYTES:
            raise ValueError(f"details may take at most {limits.REPORT_DETAILS_BYTES} bytes as JSON")
        return details


def _kept(connections: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The connection reports as connection_status keeps them: learned routes live in their own table."""
    out = {}
    for key, report in connections.items():
        bgp = report.get("bgp")
        out[key] = {**report, "bgp": {k: v for k, v in bgp.items() if k != "learnedRoutes"}} if bgp else report
    return out


def _restarts(text: str) -> int:
    """The restart count in a daemon's reported state ("up pid=7 restarts=2")."""
    for word in text.split():
        if word.startswith("restarts=") and word[9:].isdigit():
            return int(word[9:])
    return 0


def _connection_event(tx: Tx, node: str, key: str, was: str, now_: str, reason: str) -> None:
    """A connection's status changed: one event in its owner's scope (the key's subscription)."""
    doc = tx.get(key)
    if doc is None:
        return
    because = f": {reason}" if reason and now_ != "Connected" else ""
    tx.event(doc.scope, f"connections.{now_[0].lower()}{now_[1:]}", doc.body["id"],
             f"connection {doc.name} on {node}: {was} -> {now_}{because}")  # fmt: skip


async def node_principal(node: str = NODE, who: Principal = Depends(principal)) -> Principal:
    if not who.may_act_as_node(node):
        raise ArmError(403, "AuthorizationFailed", f"This token may not act as node {node}.")
    return who


@router.post("/{node}/register")
async def register(
    node: str = NODE,
    body: Registration = Body(),
    _who: Principal = Depends(node_principal),
    st: State = Depends(state),
) -> JSONResponse:
    declared = st.documents.roles().get(node)
    if declared is not None and declared != body.role:
        raise conflict("NodeRoleMismatch", f"Node {node} is declared as a {declared}, not a {body.role}.", "role")

    def work() -> None:
        with write(st) as tx:
            capabilities = body.capabilities.model_dump() if body.capabilities is not None else None
            tx.register_node(node, body.role, body.address, capabilities)
            tx.event("admin", "node.registered", node, f"{body.role} {node} registered")

    await st.in_writer(work)
    return JSONResponse({"node": node, "role": body.role})


@router.get("/{node}/desired")
async def desired(
    node: str = NODE,
    after: int = Query(default=0, ge=0, le=MAX_REVISION),
    timeout: float = Query(default=25.0, ge=0, le=60),
    deltas: bool = Query(default=False, description="answer {revision, deltas | document} instead of the document"),
    _who: Principal = Depends(node_principal),
    st: State = Depends(state),
) -> Response:
    """The node's document once its revision (the store revision at which it last changed) is past
    `after`; 304 if that does not happen within `timeout` seconds. Other nodes' changes do not return it.
    With `deltas`, a node that holds revision `after` may get the deltas from there instead."""
    role = await run_in_threadpool(_role, st, node)
    deadline = time.monotonic() + timeout
    while True:
        seen, revision, answer = await run_in_threadpool(
            functools.partial(st.documents.poll, node, role, after, deltas=deltas)
        )
        if answer is not None:
            return Response(_body(answer, deltas), media_type="application/json",
                            headers={REVISION_HEADER: str(answer.revision)})  # fmt: skip
        left = deadline - time.monotonic()
        if left <= 0:
            return Response(status_code=304, headers={REVISION_HEADER: str(revision)})
        # Writers in this process wake us at once; the timeout also catches writes by other replicas.
        await st.notifier.wait(min(left, 1.0), seen)
        await asyncio.sleep(0)


def _last_fence(report: dict[str, Any]) -> dict[str, Any] | None:
    fence = ((report.get("details") or {}).get("lease") or {}).get("lastFence")
    return fence if isinstance(fence, dict) else None


def _fence_event(tx: Tx, node: str, before: dict[str, Any] | None, now: dict[str, Any] | None) -> None:
    """`gateway.fenced`, once per fence a gateway's watchdog made (reported when the node can, often after)."""
    if now is None or now == before:
        return
    try:
        epoch, reason, at = int(now["epoch"]), str(now["reason"])[:500], float(now["at"])
        when = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return  # not a fence this controller can tell of
    tx.event("admin", "gateway.fenced", f"/admin/nodes/{node}", f"{node} fenced itself at lease epoch {epoch} "
             f"({when}): {reason}", {"node": node, "epoch": epoch, "reason": reason, "at": when})  # fmt: skip


REVISION_HEADER = "X-Isthmus-Revision"


def _body(answer: Answer, framed: bool) -> bytes:
    """The document as it is, or (framed) {"revision", "document"} / {"revision", "deltas"}; the parts are
    encoded once by the document cache and only joined here."""
    if not framed:
        assert answer.document is not None
        return answer.document
    head = b'{"revision":%d,' % answer.revision
    if answer.document is not None:
        return head + b'"document":' + answer.document + b"}"
    return head + b'"deltas":[' + b",".join(answer.deltas) + b"]}"


def _role(st: State, node: str) -> str:
    with read(st) as tx:
        for info in tx.nodes():
            if info["name"] == node:
                return str(info["role"])
    raise not_found("NodeNotRegistered", f"Node {node} has not registered.")


@router.post("/{node}/status")
async def status(
    node: str = NODE,
    body: StatusReport = Body(),
    _who: Principal = Depends(node_principal),
    st: State = Depends(state),
) -> JSONResponse:
    """Heartbeat and observed state. A resource the node reports Failed shows provisioningState Failed
    until the node reports it applied.

    A report speaks only of the node's own resources (see `DocumentCache.foreign`) and of a revision the
    store has reached; otherwise it is refused whole (400), and nothing of it is recorded.

    Events are coalesced per (node, resource): one `apply.failed` when a resource starts failing, one
    `apply.recovered` when it stops; a failure whose message changes from report to report updates the
    message shown in provisioningState but adds no event. So a resource failing for a day with a changing
    reason (a counter, a timestamp) costs two events, not one per heartbeat, and a report's events are at most
    two per resource the node carries."""
    role = await run_in_threadpool(_role, st, node)
    states = {normalize(rid): (r.state, r.message) for rid, r in body.resources.items()}
    connections = {normalize(rid): r.model_dump(exclude_none=True) for rid, r in (body.connections or {}).items()}
    foreign = await run_in_threadpool(st.documents.foreign, node, role, sorted(set(states) | set(connections)))
    if foreign is not None:
        raise bad_request("ResourceNotCarriedByNode", f"Node {node} does not carry {foreign}.", "resources")
    # Learned routes are taken only from the node that carries the connection now (not one it just left).
    carried = await run_in_threadpool(st.documents.carried, node, role) if connections else frozenset()

    def work() -> None:
        with write(st) as tx:
            reached = current_revision(tx.conn)
            if body.appliedRevision > reached:
                raise bad_request(
                    "InvalidAppliedRevision",
                    f"appliedRevision {body.appliedRevision} is past the store's revision {reached}.",
                    "appliedRevision",
                )
            before_report = tx.node_status(node)
            before_daemons = before_report.get("daemons") or {}
            if not tx.report_status(node, body.appliedRevision, bgp_reports.without_bgp(body.model_dump())):
                raise not_found("NodeNotRegistered", f"Node {node} has not registered.")
            before = tx.failures(node)
            tx.set_resource_status(node, states)
            for key, (state_, message) in sorted(states.items()):
                if state_ == "Failed" and key not in before:
                    tx.event("admin", "apply.failed", key, f"{node} could not apply {key}: {message}")
            for key in sorted(set(before) - {k for k, (s_, _m) in states.items() if s_ == "Failed"}):
                tx.event("admin", "apply.recovered", key, f"{node} applied {key}")
            for name, text in sorted(body.daemons.items()):
                restarts, held = _restarts(text), _restarts(str(before_daemons.get(name, "")))
                if restarts > held and name in before_daemons:
                    tx.event("admin", "daemon.restarted", f"/admin/nodes/{node}",
                             f"{name} on {node} was restarted ({text})")  # fmt: skip
            reported = tx.connection_reports(sorted(connections))
            for key, was, now_ in tx.set_connection_status(node, _kept(connections)):
                _connection_event(tx, node, key, was, now_, connections[key].get("reason", ""))
            bgp_reports.record(tx, node, connections, reported, carried)
            _fence_event(tx, node, _last_fence(before_report), _last_fence(body.model_dump()))

    await st.in_writer(work)
    st.throughput.record(connections)
    return JSONResponse({"node": node, "appliedRevision": body.appliedRevision})
