"""Blackhole host routes over rtnetlink in a real namespace: what the kernel holds afterwards is exactly what
`ip` would have made, IPv4 and IPv6, and a refused request is reported with its errno."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from ipaddress import ip_network

import pytest

from isthmus.linux.blackholes import PER_SEND, change_blackholes
from isthmus.linux.run import add_netns, delete_netns, ip_json
from tests.support import require_root

require_root()


@pytest.fixture()
def netns() -> Iterator[str]:
    name = f"blk{os.getpid() % 100000}"
    add_netns(name)
    try:
        yield name
    finally:
        delete_netns(name)


def blackholes(netns: str, family: str) -> dict[str, tuple[str, str, int]]:
    routes = ip_json(netns, family, "route", "show", "table", "main")
    return {r["dst"]: (r["type"], str(r["protocol"]), r["metric"]) for r in routes if r.get("type") == "blackhole"}


def test_add_replace_remove(netns: str) -> None:
    v4 = [ip_network(f"198.18.{i // 256}.{i % 256}/32") for i in range(PER_SEND * 2 + 3)]  # three sends
    v6 = [ip_network("2001:db8::5/128"), ip_network("2001:db8::6/128")]
    assert change_blackholes(netns, v4 + v6, [], protocol=78, metric=4000) == []
    assert blackholes(netns, "-4") == {str(n.network_address): ("blackhole", "78", 4000) for n in v4}
    assert blackholes(netns, "-6") == {str(n.network_address): ("blackhole", "78", 4000) for n in v6}
    assert change_blackholes(netns, v4[:2], [], protocol=78, metric=4000) == []  # replace: no duplicates
    assert len(blackholes(netns, "-4")) == len(v4)

    gone = ip_network("203.0.113.9/32")
    failed = change_blackholes(netns, [], [*v4[1:], v6[0], gone], protocol=78, metric=4000)
    assert failed == [(gone, errno.ESRCH)]
    assert set(blackholes(netns, "-4")) == {str(v4[0].network_address)}
    assert set(blackholes(netns, "-6")) == {"2001:db8::6"}
    # A route of another metric is another route: not removed by this one's request.
    assert change_blackholes(netns, [], [v4[0]], protocol=78, metric=4001) == [(v4[0], errno.ESRCH)]
