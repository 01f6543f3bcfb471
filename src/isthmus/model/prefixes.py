"""Questions about sets of prefixes, answered in O(n log n): which two overlap, which one holds another.

A tenant may send thousands of prefixes in one request; comparing every pair (what `ipaddress` offers) is
quadratic and took seconds. Prefixes are intervals of integers per IP version: sorted by start, two
overlap exactly when one starts before the furthest end seen so far.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_network

Network = IPv4Network | IPv6Network


def _span(network: Network) -> tuple[int, int, int]:
    start = int(network.network_address)
    return network.version, start, start + network.num_addresses - 1


def first_overlap(networks: Sequence[Network]) -> tuple[int, int] | None:
    """Indexes (i, j), i < j, of two overlapping prefixes, or None. Among several overlapping pairs, the
    one whose later member comes first in the sweep (not necessarily in the list)."""
    order = sorted(range(len(networks)), key=lambda i: (*_span(networks[i])[:2], -networks[i].num_addresses))
    widest: dict[int, tuple[int, int]] = {}  # version -> (furthest end so far, index of its prefix)
    for index in order:
        version, start, end = _span(networks[index])
        seen = widest.get(version)
        if seen is not None and start <= seen[0]:
            return min(seen[1], index), max(seen[1], index)
        if seen is None or end > seen[0]:
            widest[version] = (end, index)
    return None


class Holders:
    """Prefixes that do not overlap one another, asked which of them holds a given prefix."""

    def __init__(self, networks: Sequence[Network]) -> None:
        spans = sorted((_span(network), network) for network in networks)
        self._starts = [(version, start) for (version, start, _end), _n in spans]
        self._spans = spans

    def holder(self, prefix: Network) -> Network | None:
        version, start, end = _span(prefix)
        at = bisect_right(self._starts, (version, start)) - 1
        if at < 0:
            return None
        (held_version, _held_start, held_end), network = self._spans[at]
        return network if held_version == version and end <= held_end else None


def overlap_between(mine: Sequence[Network], theirs: Sequence[Network]) -> tuple[int, int] | None:
    """(index in `mine`, index in `theirs`) of a prefix of one overlapping a prefix of the other, where
    neither list overlaps itself."""
    tagged = [*mine, *theirs]
    order = sorted(range(len(tagged)), key=lambda i: _span(tagged[i])[:2])
    last: dict[int, tuple[int, int]] = {}  # version -> (end, index) of the previous prefix in the sweep
    for index in order:
        version, start, end = _span(tagged[index])
        seen = last.get(version)
        if seen is not None and start <= seen[0] and (seen[1] < len(mine)) != (index < len(mine)):
            a, b = sorted((seen[1], index))
            return a, b - len(mine)
        if seen is None or end > seen[0]:
            last[version] = (end, index)
    return None


# Ranges a virtual network cannot use (Azure's list: multicast, broadcast, loopback, link-local and the
# platform's DNS/metadata address), with "this network" and IPv6's counterparts.
RESERVED_FOR_THE_PLATFORM: tuple[Network, ...] = tuple(
    ip_network(text)
    for text in (
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "168.63.129.16/32",
        "224.0.0.0/4",
        "255.255.255.255/32",
        "::/128",
        "::1/128",
        "fe80::/10",
        "ff00::/8",
    )
)
_RESERVED = Holders(RESERVED_FOR_THE_PLATFORM)


def reserved_range_in(prefix: Network) -> Network | None:
    """The reserved range `prefix` overlaps (holds or lies in), if any."""
    inside = _RESERVED.holder(prefix)
    if inside is not None:
        return inside
    for reserved in RESERVED_FOR_THE_PLATFORM:
        if reserved.version == prefix.version and reserved.subnet_of(prefix):  # type: ignore[arg-type]
            return reserved
    return None
