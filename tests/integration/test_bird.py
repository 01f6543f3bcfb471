"""The BIRD speaker against a real FRR ToR: BIRD in one namespace, FRR zebra+bgpd in another.

announce(desired) must leave exactly `desired` in the ToR's kernel FIB, next hop the MUX, and correct drift; the
agent's forwarding routes (proto 77) and the speaker's announce routes (proto 78) never disturb each other.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from ipaddress import IPv4Network, IPv6Network

import pytest

from isthmus.lab import tor
from isthmus.lab.tor import BgpPair, bgp_pair, established, fib_routes
from isthmus.linux.bird import BirdError, BirdSpeaker, bird_daemon
from isthmus.linux.routes import Route, ensure_routes
from isthmus.linux.run import add_netns, delete_netns, ip_batch, ip_json
from isthmus.linux.speaker import Peer
from isthmus.linux.supervisor import Backoff, Supervisor
from tests.support import require_root, wait_for

require_root()

TOR, MUX = "198.18.0.1", "198.18.0.11"


@pytest.fixture(scope="module")
def pair() -> Iterator[BgpPair]:
    with bgp_pair(f"bd{os.getpid() % 100000}", TOR, MUX, speaker="bird") as made:
        yield made


def vips(*last: int) -> set[IPv4Network]:
    return {IPv4Network(f"203.0.113.{i}/32") for i in last}


def test_announce_the_desired_set_and_correct_drift(pair: BgpPair) -> None:
    tor, speaker = pair.tor, pair.speaker
    assert isinstance(speaker, BirdSpeaker)
    assert speaker.configure(65010, MUX, [Peer(TOR, 65000)]) == 0  # idempotent (bgp_pair configured it)
    assert speaker.sessions() == {TOR: "Established"}
    assert speaker.announce(vips(5, 6, 7)) == (3, 0)
    assert speaker.announce(vips(5, 6, 7)) == (0, 0)
    wait_for(lambda: fib_routes(tor) == {f"203.0.113.{i}": [MUX] for i in (5, 6, 7)}, 20)
    assert speaker.announced() == vips(5, 6, 7) and speaker.count() == 3

    assert speaker.announce(vips(6, 7), verify=False) == (0, 1)
    wait_for(lambda: set(fib_routes(tor)) == {"203.0.113.6", "203.0.113.7"}, 20)

    # Drift: an announce route removed behind the speaker's back comes back on a verified announce.
    ip_batch(pair.mux, ["route del blackhole 203.0.113.6/32 proto 78 metric 4000"])
    wait_for(lambda: set(fib_routes(tor)) == {"203.0.113.7"}, 20)
    assert speaker.announce(vips(6, 7), verify=False) == (0, 0)  # trusts its memory
    assert speaker.announce(vips(6, 7)) == (1, 0)
    wait_for(lambda: set(fib_routes(tor)) == {"203.0.113.6", "203.0.113.7"}, 20)

    # A route it would remove is already gone: no failure, and it ends where it should.
    ip_batch(pair.mux, ["route del blackhole 203.0.113.7/32 proto 78 metric 4000"])
    assert speaker.announce(vips(6), verify=False) == (0, 1)
    wait_for(lambda: set(fib_routes(tor)) == {"203.0.113.6"}, 20)
    assert speaker.announce(set()) == (0, 1)
    wait_for(lambda: not fib_routes(tor), 20)


def test_only_the_changed_networks_are_looked_at(pair: BgpPair) -> None:
    """With `changed` (the VIPs a delta named) the rest of `desired` is trusted, as GobgpSpeaker does."""
    speaker = pair.speaker
    assert isinstance(speaker, BirdSpeaker)
    assert speaker.announce(vips(10, 11)) == (2, 0)
    assert speaker.announce(vips(11, 12), verify=False, changed=vips(10, 12)) == (1, 1)
    assert speaker.originated() == vips(11, 12)
    assert speaker.announce(vips(11, 12), verify=False, changed=vips(11)) == (0, 0)
    wait_for(lambda: set(fib_routes(pair.tor)) == {"203.0.113.11", "203.0.113.12"}, 20)
    assert speaker.announce(set()) == (0, 2)
    wait_for(lambda: not fib_routes(pair.tor), 20)


def test_forwarding_routes_and_announce_routes_keep_to_their_owners(pair: BgpPair) -> None:
    """A VIP with a backend is forwarded by the agent's route, one without is dropped by the speaker's; the
    agent's ensure_routes and the speaker's announce() each change only their own, and the ToR keeps the VIP
    while its backend comes and goes."""
    speaker, mux = pair.speaker, pair.mux
    assert speaker.announce(vips(8)) == (1, 0)
    wait_for(lambda: fib_routes(pair.tor) == {"203.0.113.8": [MUX]}, 20)
    backend = Route("203.0.113.8", "eth0", TOR)  # the ToR's address stands in for a host
    assert ensure_routes(mux, [backend]) == 1
    [chosen] = ip_json(mux, "route", "get", "203.0.113.8")
    assert chosen.get("gateway") == TOR  # the forwarding route wins over the blackhole
    assert speaker.announce(vips(8)) == (0, 0) and ensure_routes(mux, [backend]) == 0
    assert ensure_routes(mux, []) == 1  # the backend goes: the speaker's route stays, and so does the VIP
    assert ip_json(mux, "route", "show", "203.0.113.8/32")[0]["type"] == "blackhole"
    assert fib_routes(pair.tor) == {"203.0.113.8": [MUX]}
    assert speaker.announce(set()) == (0, 1)
    wait_for(lambda: not fib_routes(pair.tor), 20)


def test_peers_change_without_a_restart(pair: BgpPair) -> None:
    speaker = pair.speaker
    assert isinstance(speaker, BirdSpeaker)
    pid = (speaker.run_dir / "bird.pid").read_text()
    assert speaker.set_peers([Peer(TOR, 65000), Peer("198.18.0.2", 65000)]) == 1
    assert "peer_198_18_0_2" in "".join(speaker.command("show protocols"))
    assert established(pair.frr_dir) == {MUX: True}  # the existing session was left alone
    sessions = speaker.sessions()  # nothing answers at 198.18.0.2
    assert sessions[TOR] == "Established" and sessions["198.18.0.2"] in ("Idle", "Connect", "Active")
    assert speaker.set_peers([Peer(TOR, 65000)]) == 1
    assert "peer_198_18_0_2" not in "".join(speaker.command("show protocols"))
    assert (speaker.run_dir / "bird.pid").read_text() == pid
    assert BirdSpeaker(speaker.run_dir, pair.mux).configure(65010, MUX, [Peer(TOR, 65000)]) == 0  # a new object


def test_a_config_bird_refuses_changes_nothing(pair: BgpPair) -> None:
    speaker = pair.speaker
    assert isinstance(speaker, BirdSpeaker)
    before = speaker.config.read_text()
    with pytest.raises(BirdError):
        speaker.start(0, MUX)  # BIRD: the local AS must be set
    assert speaker.config.read_text() == before and speaker.state().asn == 65010
    assert established(pair.frr_dir) == {MUX: True}


def test_ipv6_vips_are_kernel_blackholes_too(pair: BgpPair) -> None:
    """A /128 is announced like a /32 (BIRD's table has it), to IPv6 peers only: this session is IPv4, as with
    gobgpd, whose IPv4 neighbours get IPv4 unicast alone."""
    speaker = pair.speaker
    vip6 = IPv6Network("2001:db8::5/128")
    assert speaker.announce({vip6}) == (1, 0)
    assert speaker.originated() == {vip6}
    assert wait_for(lambda: speaker.announced() == {vip6})
    assert ip_json(pair.mux, "-6", "route", "show", "2001:db8::5/128")[0]["type"] == "blackhole"
    assert speaker.announce(set()) == (0, 1)
    assert wait_for(lambda: not speaker.announced())


def test_the_agents_bird_is_adopted_restarted_and_replaced_when_hung() -> None:
    """BIRD under the supervisor, as the MUX agent runs it: adopted by a restarted agent, restarted when it
    dies, replaced when it hangs (alive, not answering)."""
    netns = f"bp{os.getpid() % 100000}"
    run_dir = tor.run_dir(netns) / "bird"
    supervisors: list[Supervisor] = []
    add_netns(netns)
    try:
        speaker = BirdSpeaker(run_dir, netns)
        first = Supervisor(bird_daemon(run_dir, netns, probe=speaker.ready), backoff=Backoff(initial=0.05))
        supervisors.append(first)
        assert first.ensure() is True and first.pid is not None
        assert first.ensure() is False  # running and answering
        adopter = Supervisor(bird_daemon(run_dir, netns, probe=speaker.ready), backoff=Backoff(initial=0.05))
        supervisors.append(adopter)
        assert adopter.ensure() is False and adopter.pid == first.pid  # an agent restarted after -9
        hung = adopter.pid
        os.kill(hung, signal.SIGSTOP)
        assert wait_for(lambda: adopter.ensure() is True, 20) and adopter.pid != hung and speaker.ready()
        os.kill(adopter.pid, signal.SIGKILL)
        assert wait_for(lambda: adopter.ensure() is True, 20) and adopter.restarts >= 1 and speaker.ready()
    finally:
        for supervisor in supervisors:
            supervisor.stop()
        delete_netns(netns)
        shutil.rmtree(run_dir.parent, ignore_errors=True)
