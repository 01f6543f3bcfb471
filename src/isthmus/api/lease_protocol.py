"""The lease half of the agent protocol: renewals (`POST /v1/nodes/{node}/lease`) and what the controller
does when a gateway's lease ends (api/leases.py says what a lease is).

(No `from __future__ import annotations`: FastAPI reads the signatures at runtime.)
"""

import asyncio
import logging
import time

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from isthmus.api.deps import state as app_state
from isthmus.api.deps import write
from isthmus.api.errors import ArmError, conflict
from isthmus.api.leases import Held, stored_lease
from isthmus.api.nodes import NODE, node_principal
from isthmus.api.placement import replan_logged
from isthmus.api.replica import NotLeading
from isthmus.api.state import State
from isthmus.model.placement import FAILED, UP
from isthmus.store import placements
from isthmus.store.tokens import Principal

router = APIRouter(prefix="/v1/nodes", tags=["agents"])
log = logging.getLogger("isthmus.leases")
SCOPE = "admin"


class Renewal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epoch: int | None = Field(default=None, ge=0, le=2**62)  # None: acquire (or learn the epoch held)
    sequence: int = Field(ge=0, le=2**62)  # the renewer's monotonic clock at sending, in ms: only ever grows


@router.post("/{node}/lease")
async def lease(
    node: str = NODE,
    body: Renewal = Body(),
    _who: Principal = Depends(node_principal),
    st: State = Depends(app_state),
) -> JSONResponse:
    """Renew (or acquire) `node`'s lease. A renewal of the epoch held is answered from memory; anything else
    is decided from the store, in the writer. Only the leading replica holds leases: the others send the
    renewer on to the next controller it knows (503 NotLeader). So does a replica on its way out: a MUX that
    heard a stopping replica would vouch for a controller that is about to be gone (agents/witness.py), and a
    follower elected while it shuts down must not be one."""
    if not st.replica.leading or st.leases.stopped:
        raise not_leader(st)
    held = st.leases.renew(node, body.epoch, body.sequence)
    if held is not None and held.sequence == body.sequence:
        return _answer(st, held)
    if held is not None:  # a renewal older than one already taken: the renewer's clock went back
        await st.in_writer(lambda: _record_once(st, node, held.epoch, "lease.ignored",
                                                f"{node} sent a renewal older than its last: not taken"))  # fmt: skip
        raise conflict("LeaseRenewalStale", f"Renewal {body.sequence} of {node} is older than the last.", "sequence")
    try:
        return await st.in_writer(lambda: _decide(st, node, body))
    except NotLeading:
        raise not_leader(st) from None


def not_leader(st: State) -> ArmError:
    return ArmError(503, "NotLeader", f"Controller replica {st.name} does not lead: renew the lease with another.")


def _answer(st: State, held: Held) -> JSONResponse:
    return JSONResponse({"epoch": held.epoch, "durationMs": round(st.leases.duration * 1000),
                         "intervalMs": round(st.leases.interval * 1000), "document": held.document})  # fmt: skip


def _decide(st: State, node: str, body: Renewal) -> JSONResponse:
    stored = stored_lease(st.documents.snapshot(), node)
    if stored is None:  # a MUX's (or any node that is no gateway's): held, nothing stored
        return _answer(st, st.leases.hold(node, 0, sequence=body.sequence))
    if stored.liveness == UP and stored.epoch > 0 and body.epoch in (None, stored.epoch):  # held again (a restart)
        return _answer(st, st.leases.hold(node, stored.epoch, sequence=body.sequence))
    if body.epoch is not None:
        message = (f"{node} renewed lease epoch {body.epoch}, which has ended (gateway {stored.gateway} is "
                   f"{stored.liveness} at epoch {stored.epoch}): refused until it acquires a new one")  # fmt: skip
        _record_once(st, node, body.epoch, "lease.stale", message, stored.gateway)
        raise conflict("LeaseEpochStale", f"Lease epoch {body.epoch} of {node} has ended: fence and acquire anew.",
                       "epoch")  # fmt: skip
    epoch = stored.epoch + 1
    with write(st) as tx:
        st.replica.check_leading(tx.conn)
        placements.set_liveness(tx, stored.gateway, UP, epoch)
        tx.event(SCOPE, "lease.acquired", f"/admin/gateways/{stored.gateway}",
                 f"gateway {stored.gateway} on {node} acquired lease epoch {epoch}",
                 {"node": node, "gateway": stored.gateway, "epoch": epoch})  # fmt: skip
    # Its document once placement followed (it joins as a standby): the node acts on no older one, since an
    # older one may still assign it what moved away while its lease had ended.
    document = st.documents.revisions().get(node, 0)
    return _answer(st, st.leases.hold(node, epoch, sequence=body.sequence, document=document))


def _record_once(st: State, node: str, epoch: int, kind: str, message: str, gateway: str | None = None) -> None:
    if st.leases.first_time(node, epoch, kind):
        with write(st) as tx:
            tx.event(SCOPE, kind, f"/admin/gateways/{gateway}" if gateway else f"/admin/nodes/{node}", message,
                     {"node": node, "epoch": epoch})  # fmt: skip


def fail_expired(st: State) -> list[str]:
    """Write Failed for every gateway whose lease ran out (at the epoch it held); the nodes failed. Runs in
    the writer; planning follows the write (`write` replans)."""
    gone = st.leases.expired()
    if not gone:
        return []
    snapshot = st.documents.snapshot()
    failed = []
    with write(st) as tx:
        st.replica.check_leading(tx.conn)
        for held in gone:
            stored = stored_lease(snapshot, held.node)
            if stored is None or stored.liveness != UP or stored.epoch != held.epoch:
                continue
            silent_ms = round((time.monotonic() - held.received) * 1000)
            placements.set_liveness(tx, stored.gateway, FAILED, held.epoch)
            story = {"node": held.node, "gateway": stored.gateway, "epoch": held.epoch, "silentMs": silent_ms}
            tx.event(SCOPE, "lease.lost", f"/admin/gateways/{stored.gateway}",
                     f"gateway {stored.gateway} on {held.node}: lease epoch {held.epoch} ended, {silent_ms} ms after "
                     "its last renewal reached the controller", story)  # fmt: skip
            failed.append(held.node)
    for node in failed:
        log.warning("lease of %s ended: failed", node)
    return failed


async def expire_forever(st: State) -> None:
    """The controller's lease clock: every CHECK seconds, fail what ran out (until cancelled). A tick that
    comes later than a lease lasts means this controller itself was not running (stopped, starved): it did
    not see the renewals of that time, so it cannot say anyone was silent, and holds every lease anew for the
    grace instead."""
    last = time.monotonic()
    while True:
        await asyncio.sleep(st.leases.check)
        now = time.monotonic()
        late, last = now - last, now
        if not st.replica.leading:
            continue
        if late > st.leases.duration:
            held = st.leases.extend_all(st.leases.grace)
            log.warning("the lease clock did not run for %.1f s: %d leases held anew for the grace", late, held)
            continue
        try:
            await st.in_writer(lambda: fail_expired(st))
        except asyncio.CancelledError:
            raise
        except NotLeading:
            log.warning("lease expiry: %s no longer leads", st.name)
        except Exception:
            log.exception("lease expiry failed; retrying")


def take_over(st: State) -> None:
    """What a replica does on becoming the leader: hold every stored lease for the grace (the renewers are
    moving over from the old leader), record the change, and plan (the old leader may have died between a
    judgement and its plan)."""
    try:
        held = st.leases.restore(st.documents.snapshot())
        if st.replica.shared:
            with write(st) as tx:
                message = (f"controller replica {st.name} leads; {len(held)} gateway leases held for "
                           f"{st.leases.grace:g} s while their renewers move over")  # fmt: skip
                tx.event(SCOPE, "leader.elected", "/admin/controllers", message,
                         {"replica": st.name, "leases": len(held)})  # fmt: skip
    except Exception:
        log.exception("taking over as the leader")
    replan_logged(st, "election")
