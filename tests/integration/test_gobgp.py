"""The BGP speaker against a real FRR ToR: gobgpd in one namespace, FRR zebra+bgpd in another.

announce(desired) must leave exactly `desired` in the ToR's kernel FIB, next hop the MUX, and correct drift.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from ipaddress import ip_network

import pytest

from isthmus._generated.gobgp import gobgp_pb2
from isthmus.lab.tor import BgpPair, bgp_pair, fib_routes
from isthmus.linux.gobgp import Peer, _family, path_message
from tests.support import require_root, wait_for

require_root()

TOR, MUX = "198.18.0.1", "198.18.0.11"


@pytest.fixture(scope="module")
def pair() -> Iterator[BgpPair]:
    with bgp_pair(f"bg{os.getpid() % 100000}", TOR, MUX) as made:
        yield made


def test_announce_the_desired_set_and_correct_drift(pair: BgpPair) -> None:
    tor, speaker = pair.tor, pair.speaker
    assert speaker.configure(65010, MUX, [Peer(TOR, 65000)]) == 0  # idempotent (bgp_pair configured it)
    assert speaker.sessions() == {TOR: "Established"}
    vips = {ip_network(f"203.0.113.{i}/32") for i in (5, 6, 7)}
    assert speaker.announce(vips) == (3, 0)
    assert speaker.announce(vips) == (0, 0)
    wait_for(lambda: fib_routes(tor) == {f"203.0.113.{i}": [MUX] for i in (5, 6, 7)}, 20)

    assert speaker.announce(vips - {ip_network("203.0.113.5/32")}, verify=False) == (0, 1)
    wait_for(lambda: set(fib_routes(tor)) == {"203.0.113.6", "203.0.113.7"}, 20)

    # Drift: a path withdrawn behind the speaker's back (another gRPC client) comes back on a verified announce.
    request = gobgp_pb2.DeletePathRequest(table_type=gobgp_pb2.GLOBAL, family=_family(4),
                                          path=path_message(ip_network("203.0.113.6/32")))  # fmt: skip
    speaker.stub.DeletePath(request, timeout=5)
    assert ip_network("203.0.113.6/32") not in speaker.announced()
    assert speaker.announce(vips - {ip_network("203.0.113.5/32")}, verify=False) == (0, 0)  # trusts its memory
    assert speaker.announce(vips - {ip_network("203.0.113.5/32")}) == (1, 0)
    wait_for(lambda: set(fib_routes(tor)) == {"203.0.113.6", "203.0.113.7"}, 20)
