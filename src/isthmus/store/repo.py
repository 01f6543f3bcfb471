"""Reads and writes of intent inside one transaction. api/ is the only writer.

A `Tx` wraps a connection in a write (or read) transaction. The first change takes the next global
revision; every row it writes carries it, so agents and snapshots can ask "what changed after R".
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, insert, or_, select, update

from isthmus.sealing import Keyring
from isthmus.store import tables as t
from isthmus.store.db import bump_revision


def now() -> datetime:
    return datetime.now(UTC)


def iso(stamp: datetime) -> str:
    """ISO 8601 in UTC (SQLite hands timestamps back without their zone; they are all UTC)."""
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).isoformat()


def new_etag() -> str:
    return f'W/"{uuid.uuid4()}"'


def dumps(body: Mapping[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class Doc:
    key: str
    scope: str
    resource_group: str | None
    type: str
    name: str
    body: dict[str, Any]
    etag: str
    revision: int


def _doc(row: Any) -> Doc:
    return Doc(
        key=row.id,
        scope=row.scope,
        resource_group=row.resource_group,
        type=row.type,
        name=row.name,
        body=json.loads(row.body),
        etag=row.etag,
        revision=row.revision,
    )


def _under(column: Any, key: str) -> Any:
    """`column` is `key` itself or an id below it (a child resource)."""
    return or_(column == key, column.like(_below(key), escape="\\"))


def _below(key: str) -> str:
    return key.replace("%", r"\%").replace("_", r"\_") + "/%"


# The statements every request runs, built once: building a statement costs more than running it here.
_GET = select(t.resources).where(t.resources.c.id == bindparam("id"))
_UPDATE = update(t.resources).where(t.resources.c.id == bindparam("key"))
_UNTOMB = delete(t.tombstones).where(t.tombstones.c.id == bindparam("id"))
_DROP_REFS = delete(t.refs).where(t.refs.c.source == bindparam("source"))
_REFS_TO = select(t.refs).where(t.refs.c.target == bindparam("target")).order_by(t.refs.c.source, t.refs.c.path)
_REFS_UNDER = (
    select(t.refs)
    .where(or_(t.refs.c.target == bindparam("target"), t.refs.c.target.like(bindparam("below"), escape="\\")))
    .order_by(t.refs.c.source, t.refs.c.path)
)
_OWNER_OF = select(t.allocations.c.owner).where(
    t.allocations.c.space == bindparam("space"), t.allocations.c.address == bindparam("address")
)
_HELD_BY = select(t.allocations).where(t.allocations.c.owner == bindparam("owner"))
_FAILURE_OF = (
    select(t.resource_status.c.node, t.resource_status.c.message)
    .where(t.resource_status.c.resource == bindparam("key"), t.resource_status.c.state == "Failed")
    .order_by(t.resource_status.c.node)
    .limit(1)
)


def nodes_seen_since(conn: Connection, cutoff: datetime) -> dict[str, int]:
    """node -> applied revision of every node that reported after `cutoff`."""
    rows = conn.execute(select(t.nodes.c.name, t.nodes.c.applied_revision).where(t.nodes.c.last_seen >= cutoff))
    return {row.name: int(row.applied_revision) for row in rows}


class Tx:
    def __init__(self, conn: Connection, keyring: Keyring | None = None) -> None:
        self.conn = conn
        self.keyring = keyring  # seals and opens stored secrets (isthmus.sealing); None: this Tx handles none
        self._revision: int | None = None
        self.touched: set[str] = set()  # types of what this transaction wrote (the write's caller reacts)

    @property
    def revision(self) -> int:
        if self._revision is None:
            self._revision = bump_revision(self.conn)
        return self._revision

    @property
    def changed(self) -> bool:
        return self._revision is not None

    def seal(self, clear: str, key: str) -> str:
        """`clear`, a secret of the resource `key`, as the store keeps it."""
        if self.keyring is None:
            raise RuntimeError("this transaction has no keyring: it cannot store secrets")
        return self.keyring.seal(clear, key)

    def unseal(self, sealed: str, key: str) -> str:
        if self.keyring is None:
            raise RuntimeError("this transaction has no keyring: it cannot read secrets")
        return self.keyring.open(sealed, key)

    # --- documents ---------------------------------------------------------------------------------

    def get(self, key: str) -> Doc | None:
        row = self.conn.execute(_GET, {"id": key}).first()
        return _doc(row) if row else None

    def get_many(self, keys: Iterable[str]) -> dict[str, Doc]:
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        rows = self.conn.execute(select(t.resources).where(t.resources.c.id.in_(wanted)))
        return {row.id: _doc(row) for row in rows}

    def put(
        self,
        key: str,
        *,
        scope: str,
        resource_group: str | None,
        type: str,
        name: str,
        body: dict[str, Any],
        etag: str,
        refs: Mapping[str, str] | None = None,
    ) -> Doc:
        stamp = now()
        self.touched.add(type)
        values = {
            "scope": scope,
            "resource_group": resource_group,
            "type": type,
            "name": name,
            "body": dumps(body),
            "etag": etag,
            "revision": self.revision,
            "updated_at": stamp,
        }
        updated = self.conn.execute(_UPDATE, {"key": key, **values})
        if updated.rowcount == 0:
            self.conn.execute(insert(t.resources), {"id": key, "created_at": stamp, **values})
            self.conn.execute(_UNTOMB, {"id": key})
        if refs is not None:
            self.set_refs(key, refs)
        return Doc(key, scope, resource_group, type, name, body, etag, self.revision)

    def delete(self, doc: Doc) -> None:
        self.touched.add(doc.type)
        self.conn.execute(delete(t.resources).where(t.resources.c.id == doc.key))
        self.conn.execute(delete(t.refs).where(t.refs.c.source == doc.key))
        self.release(doc.key)
        self.conn.execute(delete(t.tombstones).where(t.tombstones.c.id == doc.key))
        self.conn.execute(insert(t.tombstones).values(id=doc.key, type=doc.type, revision=self.revision))

    def list_docs(
        self,
        scope: str,
        type: str,
        resource_group: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[Doc]:
        query = select(t.resources).where(t.resources.c.scope == scope, t.resources.c.type == type)
        if resource_group is not None:
            query = query.where(t.resources.c.resource_group == resource_group)
        if after is not None:
            query = query.where(t.resources.c.id > after)
        query = query.order_by(t.resources.c.id)
        if limit is not None:
            query = query.limit(limit)
        return [_doc(row) for row in self.conn.execute(query)]

    def of_type(self, type: str) -> list[Doc]:
        """Every resource of `type`, in every scope, by key."""
        query = select(t.resources).where(t.resources.c.type == type).order_by(t.resources.c.id)
        return [_doc(row) for row in self.conn.execute(query)]

    def in_group(self, scope: str, resource_group: str) -> list[Doc]:
        query = select(t.resources).where(t.resources.c.scope == scope, t.resources.c.resource_group == resource_group)
        return [_doc(row) for row in self.conn.execute(query.order_by(t.resources.c.id))]

    # --- references ----------------------------------------------------------------------------------

    def set_refs(self, source: str, refs: Mapping[str, str]) -> None:
        self.conn.execute(_DROP_REFS, {"source": source})
        if refs:
            rows = [{"source": source, "path": path, "target": target} for path, target in refs.items()]
            self.conn.execute(insert(t.refs), rows)

    def referrers(self, target: str, *, below: bool = True) -> list[tuple[str, str, str]]:
        """(source, path, target) of every reference to `target` (and, with `below`, to its children)."""
        if below:
            rows = self.conn.execute(_REFS_UNDER, {"target": target, "below": _below(target)})
        else:
            rows = self.conn.execute(_REFS_TO, {"target": target})
        return [(row.source, row.path, row.target) for row in rows]

    # --- address allocation --------------------------------------------------------------------------

    def allocated(self, space: str, owner: str | None = None) -> dict[str, str]:
        query = select(t.allocations.c.address, t.allocations.c.owner).where(t.allocations.c.space == space)
        if owner is not None:
            query = query.where(_under(t.allocations.c.owner, owner))
        return {row.address: row.owner for row in self.conn.execute(query)}

    def owner_of(self, space: str, address: str) -> str | None:
        owner: str | None = self.conn.execute(_OWNER_OF, {"space": space, "address": address}).scalar_one_or_none()
        return owner

    def addresses_of(self, owner: str) -> dict[str, str]:
        """address -> space of everything `owner` (exactly) holds."""
        return {row.address: row.space for row in self.conn.execute(_HELD_BY, {"owner": owner})}

    def claim(self, space: str, address: str, owner: str, pool: str | None = None) -> None:
        self.conn.execute(insert(t.allocations).values(space=space, address=address, owner=owner, pool=pool))

    def release(self, owner: str, space: str | None = None, *, below: bool = True) -> None:
        condition = _under(t.allocations.c.owner, owner) if below else t.allocations.c.owner == owner
        if space is not None:
            condition = and_(condition, t.allocations.c.space == space)
        self.conn.execute(delete(t.allocations).where(condition))

    def release_address(self, space: str, address: str) -> None:
        self.conn.execute(
            delete(t.allocations).where(t.allocations.c.space == space, t.allocations.c.address == address)
        )

    def pool_addresses(self, pool: str, space: str) -> list[str]:
        query = select(t.allocations.c.address).where(t.allocations.c.pool == pool, t.allocations.c.space == space)
        return [row.address for row in self.conn.execute(query)]

    def pool_usage(self, pool: str) -> int:
        query = select(func.count()).select_from(t.allocations).where(t.allocations.c.pool == pool)
        return int(self.conn.execute(query).scalar_one())

    def first_free(self, space: str, network: IPv4Network | IPv6Network, reserved: set[str]) -> str | None:
        """Lowest free address of `network` (not in `reserved`)."""
        taken = set(self.allocated(space)) | reserved
        first = int(network.network_address)
        for offset in range(network.num_addresses):
            candidate = str(ip_address(first + offset))
            if candidate not in taken:
                return candidate
        return None

    def vni(self, owner: str) -> int:
        """The VNI of `owner`, allocating the lowest free one (from 4096) the first time."""
        current = self.conn.execute(select(t.vnis.c.vni).where(t.vnis.c.owner == owner)).scalar_one_or_none()
        if current is not None:
            return int(current)
        highest = self.conn.execute(select(func.max(t.vnis.c.vni))).scalar_one_or_none()
        value = max(4096, int(highest or 0) + 1)
        self.conn.execute(insert(t.vnis).values(vni=value, owner=owner))
        return value

    def release_vni(self, owner: str) -> None:
        self.conn.execute(delete(t.vnis).where(t.vnis.c.owner == owner))

    # --- events and operations ----------------------------------------------------------------------

    def event(self, scope: str, kind: str, subject: str, message: str, details: dict[str, Any] | None = None) -> None:
        """`details`: what a story of several events is told by (node, virtualNetworkGateway, epoch, ms)."""
        self.conn.execute(
            insert(t.events).values(
                at=now(),
                revision=self.revision,
                scope=scope,
                kind=kind,
                subject=subject,
                message=message,
                details=dumps(details) if details else None,
            )
        )

    def operation(self, scope: str, resource: str, status: str = "Succeeded") -> str:
        op_id = str(uuid.uuid4())
        self.conn.execute(
            insert(t.operations).values(id=op_id, scope=scope, resource=resource, status=status, created_at=now())
        )
        return op_id

    def operation_status(self, scope: str, op_id: str) -> str | None:
        query = select(t.operations.c.status).where(t.operations.c.id == op_id, t.operations.c.scope == scope)
        status = self.conn.execute(query).scalar_one_or_none()
        return str(status) if status is not None else None

    def events(self, *, after: int | None = None, limit: int = 100, scope: str | None = None) -> list[dict[str, Any]]:
        """Events in order: the first `limit` after id `after`, or without `after` the latest `limit`."""
        query = select(t.events)
        if scope is not None:
            query = query.where(t.events.c.scope == scope)
        if after is None:
            latest = query.order_by(t.events.c.id.desc()).limit(limit).subquery()
            query = select(latest)
        else:
            query = query.where(t.events.c.id > after)
        rows = self.conn.execute(query.order_by("id").limit(limit))
        return [
            {
                "id": r.id,
                "at": iso(r.at),
                "revision": r.revision,
                "scope": r.scope,
                "kind": r.kind,
                "subject": r.subject,
                "message": r.message,
                **({"details": json.loads(r.details)} if r.details else {}),
            }
            for r in rows
        ]

    # --- nodes ----------------------------------------------------------------------------------------

    def nodes(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(select(t.nodes).order_by(t.nodes.c.name))
        return [
            {
                "name": r.name,
                "role": r.role,
                "address": r.address,
                "registeredAt": iso(r.registered_at),
                "lastSeen": iso(r.last_seen),
                "appliedRevision": r.applied_revision,
                "status": r.status,
                "capabilities": r.capabilities,
            }
            for r in rows
        ]

    def register_node(
        self, name: str, role: str, address: str | None, capabilities: Mapping[str, Any] | None = None
    ) -> None:
        """Record a registration; `capabilities` None (an agent that does not probe) stores them as unknown."""
        stamp = now()
        known = dumps(capabilities or {})
        updated = self.conn.execute(
            update(t.nodes)
            .where(t.nodes.c.name == name)
            .values(role=role, address=address, last_seen=stamp, capabilities=known)
        )
        if updated.rowcount == 0:
            self.conn.execute(
                insert(t.nodes).values(
                    name=name,
                    role=role,
                    address=address,
                    registered_at=stamp,
                    last_seen=stamp,
                    applied_revision=0,
                    status="{}",
                    capabilities=known,
                )
            )

    def node_status(self, name: str) -> dict[str, Any]:
        """The last status report of node `name` ({} if none)."""
        row = self.conn.execute(select(t.nodes.c.status).where(t.nodes.c.name == name)).first()
        return json.loads(row.status) if row and row.status else {}

    def report_status(self, name: str, applied_revision: int, status: Mapping[str, Any]) -> bool:
        """Record a node's status report; False if the node never registered."""
        updated = self.conn.execute(
            update(t.nodes)
            .where(t.nodes.c.name == name)
            .values(last_seen=now(), applied_revision=applied_revision, status=dumps(status))
        )
        return updated.rowcount > 0

    def failures(self, node: str) -> dict[str, str]:
        """resource key -> message of what `node` last reported it could not apply."""
        query = select(t.resource_status).where(t.resource_status.c.node == node, t.resource_status.c.state == "Failed")
        return {row.resource: row.message for row in self.conn.execute(query)}

    def set_resource_status(self, node: str, states: Mapping[str, tuple[str, str]]) -> None:
        """Replace what `node` says of the resources it carries: key -> (state, message)."""
        self.conn.execute(delete(t.resource_status).where(t.resource_status.c.node == node))
        rows = [{"resource": k, "node": node, "state": st, "message": msg} for k, (st, msg) in states.items()]
        if rows:
            self.conn.execute(insert(t.resource_status), rows)

    def set_connection_status(self, node: str, reports: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str, str]]:
        """Record what `node` observed of the connections it carries (key -> report); returns (key, status
        before, status now) of those whose connectionStatus changed, or that another node reported before (a
        move: "Connected on gw1" -> "Connected")."""
        keys = list(reports)
        columns = (t.connection_status.c.connection, t.connection_status.c.status, t.connection_status.c.node)
        held = {
            row.connection: row.status if row.node == node else f"{row.status} on {row.node}"
            for row in self.conn.execute(select(*columns).where(t.connection_status.c.connection.in_(keys)))
        } if keys else {}  # fmt: skip
        changed = []
        for key, report in reports.items():
            status = str(report.get("connectionStatus", "Unknown"))
            row = {"node": node, "status": status, "body": dumps(report)}
            if key in held:
                where = t.connection_status.c.connection == key
                self.conn.execute(update(t.connection_status).where(where).values(row))
            else:
                self.conn.execute(insert(t.connection_status).values(connection=key, **row))
            if held.get(key, "Unknown") != status:
                changed.append((key, held.get(key, "Unknown"), status))
        return changed

    def connection_statuses(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Every connection's last report: key -> (the node that sent it, the report)."""
        columns = (t.connection_status.c.connection, t.connection_status.c.node, t.connection_status.c.body)
        return {row.connection: (row.node, json.loads(row.body)) for row in self.conn.execute(select(*columns))}

    def connection_carriers(self) -> dict[str, tuple[str, str]]:
        """Every reported connection's node and connectionStatus (without the reports)."""
        columns = (t.connection_status.c.connection, t.connection_status.c.node, t.connection_status.c.status)
        return {row.connection: (row.node, row.status) for row in self.conn.execute(select(*columns))}

    def connection_reports(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The last report of each of `keys` that has one."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        columns = (t.connection_status.c.connection, t.connection_status.c.body)
        rows = self.conn.execute(select(*columns).where(t.connection_status.c.connection.in_(wanted)))
        return {row.connection: json.loads(row.body) for row in rows}

    def connection_status(self, key: str) -> dict[str, Any] | None:
        found = self.connection_report(key)
        return found[1] if found else None

    def connection_report(self, key: str) -> tuple[str, dict[str, Any]] | None:
        """The node that last reported connection `key`, and its report."""
        where = t.connection_status.c.connection == key
        row = self.conn.execute(select(t.connection_status.c.node, t.connection_status.c.body).where(where)).first()
        return (row.node, json.loads(row.body)) if row else None

    def forget_connection_status(self, key: str) -> None:
        self.conn.execute(delete(t.connection_status).where(t.connection_status.c.connection == key))

    def failure_of(self, key: str) -> tuple[str, str] | None:
        """(node, message) of a node that failed to apply the resource `key`, if any."""
        row = self.conn.execute(_FAILURE_OF, {"key": key}).first()
        return (row.node, row.message) if row else None
