"""The routes each BGP connection's site last advertised: observed state, written by the controller from the
status reports of the gateway carrying the connection, never by an API PUT.

A connection's row is written only when its set of routes changes, and takes that transaction's revision, so
the snapshot's `learned_routes` (what compile/ routes on the VNet's hosts) follows it and nothing else moves.
A report without the routes (a new carrier whose BGP session is not up yet) keeps the row; a move to another
node keeps it; the connection's delete, or its enableBgp turned off, removes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from isthmus.model.snapshot import Snapshot, learned_key
from isthmus.store import tables as t
from isthmus.store.repo import Tx, dumps

TABLE = t.learned_routes
LEARNED_ROUTES = "learnedRoutes"  # what a write of learned routes touches (next to resource types)


def version(conn: Connection) -> tuple[int, ...]:
    """Changes whenever the table does: every write stamps a newer revision, and a delete lowers the count."""
    count, newest = conn.execute(select(func.count(), func.coalesce(func.max(TABLE.c.revision), 0))).one()
    return int(count), int(newest)


def load(conn: Connection) -> dict[str, tuple[str, ...]]:
    """connection key -> its learned prefixes (canonical text)."""
    return {row.connection: _split(row.prefixes) for row in conn.execute(select(TABLE.c.connection, TABLE.c.prefixes))}


def refresh(conn: Connection, old: Snapshot) -> tuple[dict[str, tuple[str, ...]], tuple[int, ...], set[str]]:
    """`old`'s learned routes brought to the store: (the routes, their version, the changed keys — see
    model.snapshot.learned_key). Reads only the rows written after `old`, and every key only when some row
    was removed."""
    now = version(conn)
    if now == old.learned_version:
        return dict(old.learned_routes), now, set()
    routes = dict(old.learned_routes)
    written = {
        row.connection: _split(row.prefixes)
        for row in conn.execute(select(TABLE.c.connection, TABLE.c.prefixes).where(TABLE.c.revision > old.revision))
    }
    changed = {k for k, prefixes in written.items() if routes.get(k) != prefixes}
    routes.update(written)
    if now[0] != len(routes):  # rows were removed: only a count of every key tells which
        kept = set(conn.execute(select(TABLE.c.connection)).scalars())
        for key in set(routes) - kept:
            del routes[key]
            changed.add(key)
    return routes, now, {learned_key(k) for k in changed}


def routes_of(tx: Tx, keys: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """connection key -> its learned routes as reported (Azure's GatewayRoute fields), for `keys`."""
    if not keys:
        return {}
    query = select(TABLE.c.connection, TABLE.c.routes).where(TABLE.c.connection.in_(sorted(set(keys))))
    return {row.connection: json.loads(row.routes) for row in tx.conn.execute(query)}


def record(tx: Tx, node: str, reports: Mapping[str, Sequence[Mapping[str, Any]]]) -> set[str]:
    """Store what `node` reported each connection's site advertises (key -> its routes, the whole set), where
    it differs from what is stored; returns the keys written."""
    if not reports:
        return set()
    query = select(TABLE.c.connection, TABLE.c.routes).where(TABLE.c.connection.in_(sorted(reports)))
    held = {row.connection: row.routes for row in tx.conn.execute(query)}
    written = set()
    for key, routes in sorted(reports.items()):
        ordered = sorted((dict(r) for r in routes), key=lambda r: (r["network"], dumps(r)))
        text = json.dumps(ordered, separators=(",", ":"), sort_keys=True)
        if held.get(key) == text:
            continue  # the same routes (from whichever node): no revision, no document moves
        values = {"node": node, "prefixes": _join(r["network"] for r in ordered), "routes": text,
                  "revision": tx.revision}  # fmt: skip
        if key in held:
            tx.conn.execute(update(TABLE).where(TABLE.c.connection == key).values(values))
        else:
            tx.conn.execute(insert(TABLE).values(connection=key, **values))
        written.add(key)
    if written:
        tx.touched.add(LEARNED_ROUTES)
    return written


def forget(tx: Tx, key: str) -> None:
    """The connection is gone or no longer speaks BGP: its learned routes go with it."""
    if tx.conn.execute(delete(TABLE).where(TABLE.c.connection == key)).rowcount:
        tx.revision  # noqa: B018  # a removal too takes a revision: that is how snapshots see it
        tx.touched.add(LEARNED_ROUTES)


def _join(prefixes: Any) -> str:
    return " ".join(sorted(set(prefixes)))


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split()) if text else ()
