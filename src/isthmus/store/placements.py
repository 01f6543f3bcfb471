"""The stored M+N state: the assignment of virtual network gateways, gateway roles and liveness.

Written by the controller only (after planning, and liveness when it learns it), never by an API PUT;
each change takes the transaction's revision like any write, so agents see it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy import Connection, delete, func, insert, select, update

from isthmus.model.placement import GATEWAY_STATES, INPUTS, STANDBY, Assigned, GatewayState
from isthmus.store import tables as t
from isthmus.store.repo import Tx


def load(conn: Connection) -> tuple[dict[str, Assigned], dict[str, GatewayState]]:
    """(VNet gateway key -> where it runs, gateway name (lower) -> its state)."""
    assignment = {
        row.virtual_network_gateway: Assigned(row.gateway, row.pool, row.node, row.kbps, row.reason, row.moved_from)
        for row in conn.execute(select(t.placements))
    }
    states = {
        row.gateway: GatewayState(row.role, row.liveness, bool(row.available), int(row.epoch))
        for row in conn.execute(select(t.gateway_states))
    }
    return assignment, states


def version(conn: Connection) -> tuple[int, ...]:
    """Changes whenever either table does: every write stamps a newer revision, and a delete lowers a count."""
    marks: list[int] = []
    for table in (t.placements, t.gateway_states):
        count, newest = conn.execute(select(func.count(), func.coalesce(func.max(table.c.revision), 0))).one()
        marks += [int(count), int(newest)]
    return tuple(marks)


def changed_since(conn: Connection, revision: int, seen: tuple[int, ...]) -> bool:
    """Whether anything planning reads changed after `revision` (whose placement version was `seen`)."""
    types = sorted(INPUTS - {GATEWAY_STATES})
    for table in (t.resources, t.tombstones):
        query = select(table.c.id).where(table.c.revision > revision, table.c.type.in_(types)).limit(1)
        if conn.execute(query).first() is not None:
            return True
    return version(conn) != seen


def save(
    tx: Tx,
    old: Mapping[str, Assigned],
    new: Mapping[str, Assigned],
    old_states: Mapping[str, GatewayState],
    new_states: Mapping[str, GatewayState],
) -> None:
    """Write the difference between the stored (`old`) and planned (`new`) assignment and gateway states."""
    tx.revision  # noqa: B018  # deletes too take a revision: that is how snapshots see them

    def assigned(a: Assigned) -> dict[str, Any]:
        return {"gateway": a.gateway, "pool": a.pool, "node": a.node, "kbps": a.kbps, "reason": a.reason,
                "moved_from": a.moved_from}  # fmt: skip

    def state(s: GatewayState) -> dict[str, Any]:
        return {"role": s.role, "liveness": s.liveness, "available": s.available, "epoch": s.epoch}

    _write_difference(tx, t.placements.c.virtual_network_gateway, old, new, assigned)
    _write_difference(tx, t.gateway_states.c.gateway, old_states, new_states, state)


V = TypeVar("V")


def _write_difference(
    tx: Tx, key: Any, old: Mapping[str, V], new: Mapping[str, V], columns: Callable[[V], dict[str, Any]]
) -> None:
    """Rows of `key`'s table from `old` to `new`: deleted, updated or inserted, each at this revision."""
    table = key.table
    gone = sorted(set(old) - set(new))
    if gone:
        tx.conn.execute(delete(table).where(key.in_(gone)))
    for name in sorted(new):
        if old.get(name) == new[name]:
            continue
        values = {**columns(new[name]), "revision": tx.revision}
        if name in old:
            tx.conn.execute(update(table).where(key == name).values(values))
        else:
            tx.conn.execute(insert(table).values({key.name: name, **values}))


def set_liveness(tx: Tx, gateway: str, liveness: str, epoch: int | None = None) -> None:
    """Record what the controller learnt of a gateway's lease (Up | Failed, and its epoch if given);
    planning moves what that affects."""
    name = gateway.lower()
    stamp: dict[str, Any] = {"liveness": liveness, "revision": tx.revision}
    if epoch is not None:
        stamp["epoch"] = epoch
    updated = tx.conn.execute(update(t.gateway_states).where(t.gateway_states.c.gateway == name).values(stamp))
    if updated.rowcount == 0:  # never planned yet: it joins its pool when it is next planned
        tx.conn.execute(insert(t.gateway_states).values(gateway=name, role=STANDBY, available=False, **stamp))
    tx.touched.add(GATEWAY_STATES)
