"""Whole nftables tables, replaced atomically and only when their content changed.

A table carries the digest of the text it was built from as its comment, so an agent that restarts
recognises what it loaded before and leaves it (and the flows it carries) alone.
"""

from __future__ import annotations

import hashlib
import re

from isthmus.linux.run import LinuxError, in_netns, run

_COMMENT = re.compile(r'^\s*comment "([0-9a-f]+)"', re.MULTILINE)


def digest_of(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:24]


def loaded_digest(netns: str | None, family: str, table: str) -> str | None:
    try:
        text = run(in_netns(netns, ["nft", "-t", "list", "table", family, table]))
    except LinuxError:
        return None
    match = _COMMENT.search(text)
    return match.group(1) if match else None


def ensure_table(netns: str | None, family: str, table: str, body: str) -> bool:
    """Make `table` hold exactly `body` (chains, sets, rules), in one transaction; False if it already did.
    A body nft rejects raises LinuxError and leaves the loaded table as it was."""
    digest = digest_of(body)
    if loaded_digest(netns, family, table) == digest:
        return False
    name = f"{family} {table}"
    script = f'table {name}\ndelete table {name}\ntable {name} {{\ncomment "{digest}"\n{body}\n}}\n'
    run(in_netns(netns, ["nft", "-f", "-"]), stdin=script)
    return True


def delete_table(netns: str | None, family: str, table: str) -> None:
    run(in_netns(netns, ["nft", "delete", "table", family, table]), check=False)
