"""After a write that can move placement: plan from the stored assignment and persist what changes.

Several controller replicas may share the store. Planning is deterministic, and the write is conditional:
it is dropped when anything planning reads changed after the snapshot it planned from, because the writer
of that change plans again once it has committed (so replicas never undo each other; the newest plan wins).
"""

from __future__ import annotations

import logging

from isthmus.api.state import State
from isthmus.compile.placement import Plan, plan
from isthmus.model.snapshot import Snapshot
from isthmus.store import placements
from isthmus.store.db import writing
from isthmus.store.repo import Tx

log = logging.getLogger("isthmus.placement")
SCOPE = "admin"


def replan(st: State) -> int | None:
    """Persist the plan of the store's current state if it changes anything; the revision it took, if any."""
    snapshot = st.documents.snapshot()
    result = plan(snapshot, snapshot.assignment, snapshot.gateway_states)
    if not result.changes(snapshot.assignment, snapshot.gateway_states):
        return None
    with writing(st.engine) as conn:
        tx = Tx(conn)
        if not persist(tx, snapshot, result):
            return None
    st.notifier.notify(tx.revision)
    return tx.revision


def persist(tx: Tx, snapshot: Snapshot, result: Plan) -> bool:
    """Write `result`, planned from `snapshot`, unless what it read has changed since (then: False)."""
    if placements.changed_since(tx.conn, snapshot.revision, snapshot.placement_version):
        return False
    placements.save(tx, snapshot.assignment, result.assignment, snapshot.gateway_states, result.states)
    for move in result.moves:
        tx.event(SCOPE, "placement.moved", move.virtual_network_gateway, move.reason)
    moved = {move.virtual_network_gateway for move in result.moves}
    for placed in result.placement.placed:
        key = placed.virtual_network_gateway.lower()
        if key not in snapshot.assignment and placed.virtual_network_gateway not in moved:
            tx.event(SCOPE, "placement.placed", placed.virtual_network_gateway, placed.reason)
    for change in result.roles:
        message = f"gateway {change.gateway} is {change.role}: {change.reason}"
        tx.event(SCOPE, "placement.role", f"/admin/gateways/{change.gateway}", message)
    return True


def replan_logged(st: State, after: str) -> None:
    """`replan` once `after` (a committed write, start-up) happened; a failure is logged, not the caller's:
    documents stay right (compile/ plans from the stored state too) and the next write plans again."""
    try:
        replan(st)
    except Exception:
        log.exception("placement after %s was not persisted", after)
