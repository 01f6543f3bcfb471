"""What every BGP speaker of a MUX offers (gobgpd in linux/gobgp.py, BIRD in linux/bird.py): the caller states
the session set and the whole set of /32 (/128) the node originates; the speaker works out the difference."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Protocol

Network = IPv4Network | IPv6Network
SPEAKERS = ("bird", "gobgp")
# The BGP FSM's states (RFC 4271 8.2.2) as sessions() spells them, and DOWN: administratively down or not answering.
SESSION_STATES = ("Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established")
DOWN = "Down"
SESSIONS_TIMEOUT = 1.0  # seconds a speaker is given to list its sessions
DEFAULT_SPEAKER = "bird"  # the MUX agent's: it packs a live session's changes (bench/bgp.py compares them)


@dataclass(frozen=True)
class Peer:
    address: str
    asn: int


class Speaker(Protocol):
    def ready(self) -> bool:
        """The daemon answers."""
        ...

    def configure(self, asn: int, router_id: str, peers: Sequence[Peer]) -> int:
        """start + set_peers; returns the number of changes (0: already so)."""
        ...

    def start(self, asn: int, router_id: str) -> int: ...

    def set_peers(self, peers: Sequence[Peer]) -> int: ...

    def announce(
        self, desired: Collection[Network], *, verify: bool = True, changed: Iterable[Network] | None = None
    ) -> tuple[int, int]:
        """Make the originated set exactly `desired`; returns (added, withdrawn). verify=False diffs against
        what this object announced last instead of reading the daemon's state; `changed` (the networks that
        may differ since the last call) narrows that to them."""
        ...

    def announced(self) -> set[Network]:
        """What the speaker originates now, as the daemon reports it."""
        ...

    def sessions(self) -> dict[str, str]:
        """Each configured peer's address -> its session's state (SESSION_STATES or DOWN), asked of the daemon
        with a short timeout (cheap: called every quarter second). TimeoutError if the daemon is there but too
        busy to answer in time; another exception if it does not answer at all."""
        ...

    def close(self) -> None: ...
