"""Pre-shared keys at rest: a connection's body keeps `sharedKeySealed` (see isthmus.sealing), never the
key itself. Clear keys from a store written before sealing are sealed when a controller starts
(`seal_stored`); `rotate` moves every sealed value to a new key in one transaction.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy import Connection, Engine, select, update

from isthmus.model.snapshot import CONNECTION
from isthmus.sealing import Keyring, pending, write_key
from isthmus.store import tables as t
from isthmus.store.db import reading, writing
from isthmus.store.repo import Tx, dumps, now

CLEAR = "sharedKey"  # as a tenant sends it, and as stores from before sealing kept it
SEALED = "sharedKeySealed"


def _reseal(conn: Connection, keyring: Keyring, *, rekey: bool) -> int:
    """Seal every clear key, and with `rekey` move every sealed one to the keyring's current key; every
    sealed value must open (a SealError otherwise). Returns how many rows were rewritten. Rewritten rows
    take a new revision, so controllers' snapshots read them again; their etag stays (the intent is the same)."""
    tx = Tx(conn)
    rows = conn.execute(select(t.resources.c.id, t.resources.c.body).where(t.resources.c.type == CONNECTION))
    rewritten = 0
    for row in list(rows):
        body = json.loads(row.body)
        props = body.get("properties", {})
        if CLEAR in props:
            props[SEALED] = keyring.seal(str(props.pop(CLEAR)), row.id)
        elif SEALED in props:
            clear = keyring.open(props[SEALED], row.id)
            if not rekey or props[SEALED].split(":")[1] == keyring.current:
                continue
            props[SEALED] = keyring.seal(clear, row.id)
        else:
            continue
        values = {"body": dumps(body), "revision": tx.revision, "updated_at": now()}
        conn.execute(update(t.resources).where(t.resources.c.id == row.id).values(**values))
        rewritten += 1
    return rewritten


def seal_stored(engine: Engine, keyring: Keyring) -> int:
    """At start-up: seal the clear keys a store from before sealing holds, and check every sealed one opens
    under `keyring` (a controller given the wrong key stops here, not at its first gateway document)."""
    with writing(engine) as conn:
        return _reseal(conn, keyring, rekey=False)


def holds_sealed(engine: Engine) -> bool:
    """Whether the store holds a secret sealed under some key (a controller must then be given that key)."""
    with reading(engine) as conn:
        bodies = conn.execute(select(t.resources.c.body).where(t.resources.c.type == CONNECTION))
        return any(SEALED in json.loads(body).get("properties", {}) for (body,) in bodies)


def rotate(engine: Engine, path: Path) -> tuple[str, int]:
    """A new key for the one in `path`: written beside it, every stored secret re-sealed under it in one
    transaction, then moved over the old file (so the old key exists only until the store no longer needs
    it). A rotation that stopped half-way is finished with the key it had written. Returns the new key's
    id and how many secrets were re-sealed."""
    if not pending(path).exists():
        write_key(pending(path))
    keyring = Keyring.load(path)
    with writing(engine) as conn:
        count = _reseal(conn, keyring, rekey=True)
    os.replace(pending(path), path)
    return keyring.current, count
