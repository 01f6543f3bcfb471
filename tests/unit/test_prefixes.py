"""The O(n log n) prefix questions answer as comparing every pair would."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network

from hypothesis import given
from hypothesis import strategies as st

from isthmus.model.prefixes import Holders, first_overlap, overlap_between, reserved_range_in

Network = IPv4Network | IPv6Network


@st.composite
def networks(draw: st.DrawFn) -> Network:
    """Prefixes packed into a small range, so overlaps are common; IPv4 and IPv6 both."""
    if draw(st.booleans()):
        length = draw(st.integers(24, 32))
        offset = draw(st.integers(0, 255)) & ~((1 << (32 - length)) - 1)
        return ip_network((int(ip_network("198.18.0.0/24").network_address) + offset, length))
    length = draw(st.integers(120, 128))
    offset = draw(st.integers(0, 255)) & ~((1 << (128 - length)) - 1)
    return ip_network((int(ip_network("2001:db8::/120").network_address) + offset, length))


def pairs(items: list[Network]) -> set[tuple[int, int]]:
    return {
        (i, j)
        for j in range(len(items))
        for i in range(j)
        if items[i].version == items[j].version and items[i].overlaps(items[j])  # type: ignore[arg-type]
    }


@given(st.lists(networks(), max_size=12))
def test_first_overlap_finds_an_overlapping_pair_exactly_when_one_exists(items: list[Network]) -> None:
    found = first_overlap(items)
    expected = pairs(items)
    assert (found is None) == (not expected)
    if found is not None:
        assert found in expected


@given(st.lists(networks(), max_size=12), networks())
def test_holder_is_the_prefix_that_contains(items: list[Network], prefix: Network) -> None:
    apart: list[Network] = []
    for item in items:  # Holders takes prefixes that do not overlap one another
        if first_overlap([*apart, item]) is None:
            apart.append(item)
    holders = [n for n in apart if n.version == prefix.version and prefix.subnet_of(n)]  # type: ignore[arg-type]
    assert Holders(apart).holder(prefix) == (holders[0] if holders else None)


@given(st.lists(networks(), max_size=8), st.lists(networks(), max_size=8))
def test_overlap_between_two_lists(mine: list[Network], theirs: list[Network]) -> None:
    mine = [n for i, n in enumerate(mine) if first_overlap(mine[: i + 1]) is None]
    theirs = [n for i, n in enumerate(theirs) if first_overlap(theirs[: i + 1]) is None]
    across = {
        (i, j)
        for i, a in enumerate(mine)
        for j, b in enumerate(theirs)
        if a.version == b.version and a.overlaps(b)  # type: ignore[arg-type]
    }
    found = overlap_between(mine, theirs)
    assert (found is None) == (not across)
    if found is not None:
        assert found in across


def test_reserved_ranges() -> None:
    assert reserved_range_in(ip_network("100.64.0.0/10")) is None
    assert reserved_range_in(ip_network("2001:db8::/32")) is None
    assert reserved_range_in(ip_network("0.0.0.0/0")) is not None
    assert reserved_range_in(ip_network("168.63.128.0/17")) == ip_network("168.63.129.16/32")
    assert reserved_range_in(ip_network("127.0.0.0/24")) == ip_network("127.0.0.0/8")
