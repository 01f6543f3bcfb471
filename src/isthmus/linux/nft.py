"""nftables tables made to hold a body, in one transaction, changing only what differs.

A table carries the digest of the body it holds (as the comment of its chain `digest`: a table's own
comment cannot be changed in place), so an agent that restarts recognises what it loaded before and leaves
it, and the flows it carries, alone.

From a body this process loaded to the next, only the difference is sent, still as ONE transaction, so a
packet is judged by the old table or by the new one, never by a mix: new sets and chains are added, chains
whose rules differ are flushed and refilled, set elements are deleted and added one by one, what is gone
is deleted. A table is loaded whole (deleted and re-created, in one transaction) when nothing is known of
what it holds, when the difference would be larger than the body, when the bodies cannot be matched up
object by object (a base chain's hook or a set's type changed), or when the kernel refuses the update
(the table was changed behind this process's back).

Bodies are what linux/nsg_nft.py, linux/nat_nft.py and linux/steering.py render: `set NAME {`, `map NAME {`
and `chain NAME {` blocks, one line per statement, a set's or map's elements on one `elements = { ... }`
line. Scripts run through libnftables (linux/libnft.py), not an nft process per call.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from isthmus.linux import libnft
from isthmus.linux.run import NETNS_DIR, LinuxError

MARKER = "digest"  # the chain whose comment is the digest; bodies do not name a chain or set so
_COMMENT = re.compile(r'^\s*comment "([0-9a-f]+)"', re.MULTILINE)
_BLOCK = re.compile(r"(set|map|chain) (\S+) \{")
_SET_HEADER = ("type ", "typeof ", "flags ", "policy ", "size ", "timeout ", "auto-merge", "comment ")
_CHAIN_HEADER = ("type ", "policy ", "comment ")
_ELEMENTS = "elements = { "


def digest_of(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:24]


def _path(netns: str | None) -> str | None:
    return f"{NETNS_DIR}/{netns}" if netns else None


def nft(netns: str | None, script: str, *, terse: bool = False) -> str:
    """Run an nft script in `netns` (one transaction); LinuxError with nft's message if it is refused."""
    try:
        return libnft.run(_path(netns), script, terse=terse)
    except (libnft.NftError, OSError) as error:
        first = script.split("\n", 1)[0][:80]
        raise LinuxError(f"nft in {netns or 'host'} ({first}…): {error}") from None


def loaded_digest(netns: str | None, family: str, table: str) -> str | None:
    try:
        text = nft(netns, f"list chain {family} {table} {MARKER}", terse=True)
    except LinuxError:
        return None
    match = _COMMENT.search(text)
    return match.group(1) if match else None


@dataclass(frozen=True)
class Block:
    """A set or map (header: type and flags; items: elements) or chain (header: a base chain's hook; items:
    rules)."""

    kind: str
    header: tuple[str, ...]
    items: tuple[str, ...]


def blocks_of(body: str) -> dict[str, Block] | None:
    """The body's sets and chains by name, or None if it holds anything else (it is then loaded whole)."""
    out: dict[str, Block] = {}
    lines = iter(body.split("\n"))
    for line in lines:
        if not line:
            continue
        opening = _BLOCK.fullmatch(line)
        if opening is None:
            return None
        kind, name = opening.groups()
        header: list[str] = []
        items: list[str] = []
        for statement in lines:
            if statement == "}":
                break
            if kind != "chain" and statement.startswith(_ELEMENTS) and statement.endswith(" }"):
                text = statement[len(_ELEMENTS) : -2]
                if '"' in text or "{" in text:  # a comma inside an element: not split here
                    return None
                items.extend(text.split(", "))
            elif statement.startswith(_SET_HEADER if kind != "chain" else _CHAIN_HEADER):
                header.append(statement)
            elif kind == "chain":
                items.append(statement)
            else:
                return None
        else:
            return None  # no closing brace
        if name in out or name == MARKER:
            return None
        out[name] = Block(kind, tuple(header), tuple(items))
    return out


def update_script(table: str, old: dict[str, Block], new: dict[str, Block]) -> list[str] | None:
    """The commands that turn `old` into `new` in place, or None if they cannot (or a whole load is smaller)."""
    adds: list[str] = []
    fills: list[str] = []
    elements: list[str] = []
    work = 0
    for name, block in new.items():
        before = old.get(name)
        if before is not None and (before.kind, before.header) != (block.kind, block.header):
            return None
        if block.kind != "chain":
            if before is None:
                adds.append(f"add {block.kind} {table} {name} {{ {'; '.join(block.header)}; }}")
                added, removed = list(block.items), []
            else:
                had, has = set(before.items), set(block.items)
                added = [e for e in block.items if e not in had]
                removed = [e for e in before.items if e not in has]
            if removed:
                elements.append(f"delete element {table} {name} {{ {', '.join(removed)} }}")
            if added:
                elements.append(f"add element {table} {name} {{ {', '.join(added)} }}")
            work += len(added) + len(removed)
        elif before is None or before.items != block.items:
            if before is None:
                hook = f" {{ {' '.join(block.header)} }}" if block.header else ""
                adds.append(f"add chain {table} {name}{hook}")
            else:
                fills.append(f"flush chain {table} {name}")
            fills += [f"add rule {table} {name} {rule}" for rule in block.items]
            work += len(block.items) + (len(before.items) if before else 0)
    gone = [name for name in old if name not in new]
    removals = [f"flush chain {table} {name}" for name in gone if old[name].kind == "chain"]
    removals += [f"delete {old[name].kind} {table} {name}" for name in gone]
    work += len(gone)
    if work > sum(len(block.items) for block in new.values()):
        return None
    # New objects first (rules may name them), then rules, elements, and last what nothing refers to any more.
    return adds + fills + elements + removals


@dataclass(frozen=True)
class _Loaded:
    digest: str
    blocks: dict[str, Block] | None


def ensure_table(
    netns: str | None, family: str, table: str, body: str, *, verify: bool = True, in_place: bool = True
) -> bool:
    """Make `table` hold exactly `body` (chains, sets, rules), in one transaction; False if it already did.
    With verify=False a table this process loaded is trusted to hold what it loaded, without asking the
    kernel; full passes verify. in_place=False loads it whole even where an update in place would do.
    A body nft rejects raises LinuxError and leaves the loaded table as it was."""
    digest = digest_of(body)
    try:
        loaded = libnft.memo(_path(netns))  # what this process loaded last into this namespace, by table
    except OSError as error:
        raise LinuxError(f"nft in {netns}: {error}") from None
    where = (family, table)
    known: _Loaded | None = loaded.get(where)
    if not verify and known is not None and known.digest == digest:
        return False
    if verify or known is None:
        actual = loaded_digest(netns, family, table)
        if actual == digest:
            loaded[where] = _Loaded(digest, blocks_of(body))
            return False
        if known is not None and known.digest != actual:
            known = None  # changed behind this process's back: what it holds is unknown
    name = f"{family} {table}"
    blocks = blocks_of(body)
    update = None
    if in_place and known is not None and known.blocks is not None and blocks is not None:
        update = update_script(name, known.blocks, blocks)
    loaded.pop(where, None)
    if update is not None:
        marking = [f"delete chain {name} {MARKER}", f'add chain {name} {MARKER} {{ comment "{digest}"; }}']
        try:
            nft(netns, "\n".join([*update, *marking]) + "\n")
        except LinuxError:
            update = None  # refused, so nothing changed: load it whole
    if update is None:
        marker = f'chain {MARKER} {{\ncomment "{digest}"\n}}'
        nft(netns, f"table {name}\ndelete table {name}\ntable {name} {{\n{body}\n{marker}\n}}\n")
    loaded[where] = _Loaded(digest, blocks)
    return True
