"""Reading a Snapshot out of the store: whole, or brought forward by what changed since."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, select

from isthmus.model.addresses import parse_address
from isthmus.model.snapshot import Snapshot, build, evolve, public_ip_keys, shared_address_owners
from isthmus.store import learned_routes, placements
from isthmus.store import tables as t
from isthmus.store.db import current_revision

PUBLIC = "public"


def load_snapshot(conn: Connection) -> Snapshot:
    revision = current_revision(conn)
    documents: dict[str, Any] = {}
    types: dict[str, str] = {}
    for row in conn.execute(select(t.resources.c.id, t.resources.c.type, t.resources.c.body)):
        documents[row.id] = json.loads(row.body)
        types[row.id] = row.type
    vnis = {row.owner: row.vni for row in conn.execute(select(t.vnis))}
    public = {
        row.owner: parse_address(row.address)
        for row in conn.execute(
            select(t.allocations.c.owner, t.allocations.c.address).where(t.allocations.c.space == PUBLIC)
        )
    }
    assignment, states = placements.load(conn)
    return build(revision, documents, types, vnis, public, _nodes(conn), assignment, states, placements.version(conn),
                 learned_routes.load(conn), learned_routes.version(conn))  # fmt: skip


def _nodes(conn: Connection) -> dict[str, Any]:
    """Registered nodes as compile/ sees them: role and address (not their changing status)."""
    return {
        row.name: {"role": row.role, "address": row.address}
        for row in conn.execute(select(t.nodes.c.name, t.nodes.c.role, t.nodes.c.address))
    }


def refresh(conn: Connection, old: Snapshot) -> tuple[Snapshot, set[str]]:
    """`old` brought to the store's current revision, reading only what changed; and the changed keys (a
    connection's learned routes: model.snapshot.learned_key of it)."""
    revision = current_revision(conn)
    if revision == old.revision:
        return old, set()
    documents = dict(old.documents)
    types = dict(old.types)
    changed: set[str] = set()
    for row in conn.execute(
        select(t.resources.c.id, t.resources.c.type, t.resources.c.body).where(t.resources.c.revision > old.revision)
    ):
        documents[row.id] = json.loads(row.body)
        types[row.id] = row.type
        changed.add(row.id)
    for row in conn.execute(select(t.tombstones.c.id).where(t.tombstones.c.revision > old.revision)):
        documents.pop(row.id, None)
        types.pop(row.id, None)
        changed.add(row.id)
    # Addresses and VNIs move only with a write of a resource that changed; re-read those owners.
    owners = set(changed)
    for key in changed:
        for body in (old.documents.get(key), documents.get(key)):
            owners.update(public_ip_keys(body))
            owners.update(shared_address_owners(body))  # a gateway pool's shared public IP
    vnis = dict(old.vnis)
    public = dict(old.public_ips)
    for owner in owners:
        vnis.pop(owner, None)
        public.pop(owner, None)
    wanted = sorted(owners)
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for vni in conn.execute(select(t.vnis).where(t.vnis.c.owner.in_(chunk))):
            vnis[vni.owner] = vni.vni
        query = select(t.allocations.c.owner, t.allocations.c.address).where(
            t.allocations.c.space == PUBLIC, t.allocations.c.owner.in_(chunk)
        )
        for allocation in conn.execute(query):
            public[allocation.owner] = parse_address(allocation.address)
    snapshot = evolve(old, revision, documents, types, vnis, public, _nodes(conn), changed)
    version = placements.version(conn)
    if version != old.placement_version:  # the controller planned again, or learnt a gateway's liveness
        assignment, states = placements.load(conn)
        snapshot = replace(snapshot, assignment=assignment, gateway_states=states, placement_version=version)
    learned, learned_version, relearned = learned_routes.refresh(conn, old)
    if learned_version != old.learned_version:  # observed: what the sites of BGP connections advertise
        snapshot = replace(snapshot, learned_routes=learned, learned_version=learned_version)
        changed |= relearned
    return snapshot, changed
