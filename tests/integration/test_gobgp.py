"""The BGP speaker against a real FRR ToR: gobgpd in one namespace, FRR zebra+bgpd in another.

announce(desired) must leave exactly `desired` in the ToR's kernel FIB, next hop the MUX, and correct drift.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest

from isthmus._generated.gobgp import gobgp_pb2
from isthmus.lab.tor import start_frr
from isthmus.linux.gobgp import GobgpSpeaker, Peer, _family
from isthmus.linux.run import add_netns, delete_netns, in_netns, ip_batch, ip_json

if os.geteuid() != 0:
    pytest.skip("needs root (network namespaces)", allow_module_level=True)

TOR, MUX = "198.18.0.1", "198.18.0.11"
TOR_BGP = """hostname tor
router bgp 65000
 bgp router-id 198.18.0.1
 no bgp ebgp-requires-policy
 neighbor 198.18.0.11 remote-as 65010
 neighbor 198.18.0.11 timers 1 3
 address-family ipv4 unicast
  maximum-paths 8
 exit-address-family
"""


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s")


@pytest.fixture(scope="module")
def fabric() -> Iterator[tuple[str, GobgpSpeaker]]:
    tag = f"bg{os.getpid() % 100000}"
    tor, mux = f"{tag}-tor", f"{tag}-mux"
    frr_dir = Path("/run/isthmus") / tor
    processes: list[subprocess.Popen[bytes]] = []
    frr_pids: list[int] = []
    speaker = None
    try:
        add_netns(tor)
        add_netns(mux)
        ip_batch(tor, [f"link add eth0 type veth peer name eth0 netns {mux}", f"addr add {TOR}/24 dev eth0",
                       "link set eth0 up"])  # fmt: skip
        ip_batch(mux, [f"addr add {MUX}/24 dev eth0", "link set eth0 up"])
        frr_pids = start_frr(tor, frr_dir, {"zebra": "hostname tor\n", "bgpd": TOR_BGP})
        api = f"unix://{frr_dir}/gobgpd.sock"  # gRPC over a unix socket: reachable from any namespace
        processes.append(
            subprocess.Popen(
                in_netns(mux, ["gobgpd", "--api-hosts", api, "-l", "warn"]),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        speaker = GobgpSpeaker(api=api)
        wait_for(speaker.ready, 10)
        yield tor, speaker
    finally:
        if speaker is not None:
            speaker.close()
        for process in processes:
            process.kill()
            process.wait()
        for pid in frr_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        delete_netns(tor)
        delete_netns(mux)
        shutil.rmtree(frr_dir, ignore_errors=True)


def tor_routes(tor: str) -> dict[str, list[str]]:
    """Prefix -> next hops of the BGP routes in the ToR's kernel FIB."""
    out = {}
    for route in ip_json(tor, "route", "show", "proto", "bgp"):
        hops = [h["gateway"] for h in route.get("nexthops", [])] or [route.get("gateway", "")]
        out[route["dst"]] = sorted(hops)
    return out


def test_announce_the_desired_set_and_correct_drift(fabric: tuple[str, GobgpSpeaker]) -> None:
    tor, speaker = fabric
    assert speaker.configure(65010, MUX, [Peer(TOR, 65000)]) >= 2
    assert speaker.configure(65010, MUX, [Peer(TOR, 65000)]) == 0  # idempotent
    vips = {ip_network(f"203.0.113.{i}/32") for i in (5, 6, 7)}
    assert speaker.announce(vips) == (3, 0)
    assert speaker.announce(vips) == (0, 0)
    wait_for(lambda: tor_routes(tor) == {f"203.0.113.{i}": [MUX] for i in (5, 6, 7)})

    assert speaker.announce(vips - {ip_network("203.0.113.5/32")}) == (0, 1)
    wait_for(lambda: set(tor_routes(tor)) == {"203.0.113.6", "203.0.113.7"})

    # Drift: a path withdrawn behind the speaker's back (another gRPC client) comes back on the next announce.
    request = gobgp_pb2.DeletePathRequest(table_type=gobgp_pb2.GLOBAL, family=_family(4),
                                          path=GobgpSpeaker._path(ip_network("203.0.113.6/32")))  # fmt: skip
    speaker.stub.DeletePath(request, timeout=5)
    assert ip_network("203.0.113.6/32") not in speaker.announced()
    assert speaker.announce(vips - {ip_network("203.0.113.5/32")}) == (1, 0)
    wait_for(lambda: set(tor_routes(tor)) == {"203.0.113.6", "203.0.113.7"})
